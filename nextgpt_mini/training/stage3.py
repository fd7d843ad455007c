"""Stage 3, modality-switching instruction tuning (MosIT): the whole system learns to converse.

Data: dialogues in our MosIT format (`data/mosit.py`; other formats via `data/formats.py`). User
turns may carry media (soft tokens through the input projector); assistant turns may ask for
media, and then end in the modality's signal tokens, whose projected states are pulled towards
the decoder's text-encoder embedding of the turn's caption (as in stage 2).

Loss = NLL on every assistant turn + the weighted alignment distance on turns that end in signal
tokens (video weighted 2x in the paper). Trains LoRA, the input projector, the output projectors
and the signal-token rows; the encoder, the LLM's own weights and the decoders stay frozen.

Batches come from the modality-blended sampler: each batch holds one task (T->I, I->T, ...),
tasks taken round-robin, smaller tasks re-sampled until the largest has been seen (as the
original's sampler does), deterministic given the seed and the step, split across processes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from nextgpt_mini.data import mosit
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.prompts import STOP, collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.trainer import epoch_order

MODALITIES = ("image", "video", "audio")


# --------------------------------------------------------------------------------------------
# Media and targets, computed once
# --------------------------------------------------------------------------------------------
def media_key(m: dict) -> str:
    if "item" in m:
        return "item:" + repr(m["item"])
    return "path:" + str(m["path"])


def encode_media(model, dialogues: list[dict], cache_dir: str | None = None, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """{media key: unit-norm encoder embedding} for every input item of `dialogues`."""
    from nextgpt_mini.encode import encode, encoder_cache
    from nextgpt_mini.tiny.pretrain.encoder import audio_tensor, image_tensor, video_tensor

    cfg = model.profile.encoder
    items = {}
    for d in dialogues:
        for t in d["turns"]:
            for m in t.get("media", []):
                items.setdefault(media_key(m), m)
    out: dict[str, torch.Tensor] = {}
    render = {"image": lambda it: image_tensor(it, 64, cfg), "video": lambda it: video_tensor(it, 64, 2.0, 8, cfg),
              "audio": lambda it: audio_tensor(it, 2.0, cfg)}
    run = {"image": model.encoder.encode_image, "video": model.encoder.encode_video, "audio": model.encoder.encode_audio}
    by_modality = defaultdict(list)
    files = []
    for key, m in items.items():
        (by_modality[m["modality"]] if "item" in m else files).append((key, m))
    with torch.no_grad():
        for modality, rows in by_modality.items():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                x = torch.stack([render[modality](m["item"]) for _, m in chunk])
                emb = torch.nn.functional.normalize(run[modality](x).float(), dim=-1)
                out.update({key: e for (key, _), e in zip(chunk, emb)})
    if files:
        cache = encoder_cache(cache_dir, cfg, model.encoder) if cache_dir else None
        emb = encode([m["path"] for _, m in files], encoder=model.encoder, cfg=cfg, cache=cache, progress=False)
        out.update({key: e for (key, _), e in zip(files, emb)})
    return out


@dataclass
class DialogueSet:
    """Dialogues with their input embeddings and decoder targets, ready for batching."""

    dialogues: list[dict]
    media: dict[str, torch.Tensor]  # media key -> embedding
    targets: dict[tuple[str, str], torch.Tensor]  # (modality, caption) -> decoder target

    def tasks(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for k, d in enumerate(self.dialogues):
            groups[d.get("task", "any")].append(k)
        return dict(sorted(groups.items()))


def prepare_dialogues(model, decoders, dialogues: list[dict], cache_dir: str | None = None) -> DialogueSet:
    media = encode_media(model, dialogues, cache_dir)
    wanted = defaultdict(list)
    for d in dialogues:
        for t in d["turns"]:
            if "output" in t:
                wanted[t["output"]["modality"]].append(t["output"]["caption"])
    targets = {}
    for m, captions in wanted.items():
        captions = list(dict.fromkeys(captions))
        for c, tgt in zip(captions, decoders[m].targets(captions)):
            targets[(m, c)] = tgt
    return DialogueSet(dialogues, media, targets)


def toy_data(model, decoders, n_train: int = 660, n_test: int = 66, seed: int = 0, cache_dir: str | None = None):
    """Toy-world dialogues of every task (train and held-out splits), prepared."""
    train = mosit.toy_dialogues(n_train, seed=seed, split="train")
    return prepare_dialogues(model, decoders, train, cache_dir), heldout_dialogues(model, decoders, n_test, seed, cache_dir)


def heldout_dialogues(model, decoders, n: int = 66, seed: int = 0, cache_dir: str | None = None,
                      tasks: tuple[str, ...] = mosit.TASKS):
    """The held-out (test split) half of `toy_data`, prepared: for evaluating a trained system."""
    return prepare_dialogues(model, decoders, mosit.toy_dialogues(n, seed=seed + 1, split="test", tasks=tasks), cache_dir)


MEDIA_TO_TEXT = ("I->T", "V->T", "A->T")


def reading_report(model, decoders, n: int = 90, seed: int = 0) -> dict[str, float]:
    """Media -> text on `n` held-out I->T / V->T / A->T questions (half of their objects are
    held-out colour+shape pairs): attributes named right next to chance, per attribute and whole
    answers. The 66 dialogues of `toy_data` hold only 18 such questions, too few to tell 1 % from 5 %."""
    return behaviour_report(model, heldout_dialogues(model, decoders, n, seed, tasks=MEDIA_TO_TEXT))


# --------------------------------------------------------------------------------------------
# Batches: the modality-blended sampler
# --------------------------------------------------------------------------------------------
def dialogue_example(model, dialogue: dict, max_length: int | None = None):
    p = model.profile
    segments = dialogue_segments(dialogue["turns"], p.llm.template, model.signal.tokens, model.tokenizer)
    return tokenize_segments(segments, model.tokenizer, max_length or p.llm.max_length, signal_ids=model.signal.ids)


class BlendedBatches:
    """`batch(step)`: one task per batch, tasks round-robin; each task's dialogues by a seeded
    permutation per epoch, so small tasks repeat while large ones are still being read."""

    def __init__(self, model, data: DialogueSet, batch_size: int, seed: int = 0):
        self.model, self.data, self.batch_size, self.seed = model, data, batch_size, seed
        self.groups = data.tasks()
        self.order = list(self.groups)

    def indices(self, step: int) -> tuple[str, list[int]]:
        task = self.order[step % len(self.order)]
        members = self.groups[task]
        turn = step // len(self.order)
        picks = epoch_order(len(members), turn * self.batch_size, self.batch_size, [self.seed, 3, self.order.index(task)])
        return task, [members[i] for i in picks]

    def examples(self, indices: list[int]) -> dict:
        exs, media, targets = [], [], []
        for i in indices:
            d = self.data.dialogues[i]
            ex = dialogue_example(self.model, d)
            exs.append(ex)
            items = [m for t in d["turns"] if t["role"] == "user" for m in t.get("media", [])]
            media.append(torch.stack([self.data.media[media_key(m)] for m in items]) if items else None)
            outputs = [t["output"] for t in d["turns"] if "output" in t]
            targets.append([self.data.targets[(o["modality"], o["caption"])] for o in outputs[: len(ex.signal_spans)]])
        batch = collate(exs, self.model.tokenizer.pad_token_id)
        # a truncated prompt can lose media slots at its end: keep the soft tokens that have a slot
        for b, ex in enumerate(exs):
            if media[b] is not None:
                media[b] = media[b][: len(ex.media_positions)] if ex.media_positions else None
        batch["media"] = media
        batch["signal_spans"] = [ex.signal_spans for ex in exs]
        batch["signal_targets"] = targets
        return batch

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        task, idx = self.indices(step)
        batch = self.examples(idx[rank::world])
        batch["task"] = task
        return batch


# --------------------------------------------------------------------------------------------
# Evaluation: does the model ask for media when, and only when, it is asked to?
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def respond(model, turns: list[dict], media: list[torch.Tensor] | None, max_new_tokens: int = 40) -> list[int]:
    """Greedy reply ids to `turns` (ending with a user turn); `media` = that prompt's soft-token inputs."""
    from nextgpt_mini.prompts import embed_with_media

    ex = dialogue_example(model, {"turns": turns})
    batch = collate([ex], model.tokenizer.pad_token_id)
    soft = model.soft_tokens([torch.stack(media) if media else None])
    embeds = embed_with_media(model.llm.get_input_embeddings(), batch["input_ids"], soft)
    # the template's stop string ends the turn; it is several tokens in some tokenizers, hence a string
    ids = model.llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=model.tokenizer.pad_token_id,
                             eos_token_id=model.tokenizer.eos_token_id, stop_strings=[STOP], tokenizer=model.tokenizer)
    return cut_at_stop(ids[0].tolist(), model.tokenizer)


def cut_at_stop(ids: list[int], tokenizer) -> list[int]:
    """The reply's tokens that lie wholly before the stop string ("\n###" may span several tokens)."""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1])
        if STOP in text:
            start = text.index(STOP)
            j = k
            while j > 0 and len(tokenizer.decode(ids[:j])) > start:
                j -= 1
            return ids[:j]
    return ids


def signal_runs(ids: list[int], signal_ids: dict[str, list[int]]) -> list[tuple[str, bool]]:
    """(modality, complete?) for each run of signal tokens in `ids`."""
    lookup = {i: (m, k) for m, group in signal_ids.items() for k, i in enumerate(group)}
    runs, k = [], 0
    while k < len(ids):
        if ids[k] not in lookup:
            k += 1
            continue
        m = lookup[ids[k]][0]
        got = []
        while k < len(ids) and ids[k] in lookup and lookup[ids[k]][0] == m:
            got.append(lookup[ids[k]][1])
            k += 1
        runs.append((m, got == list(range(len(signal_ids[m])))))
    return runs


def behaviour_report(model, data: DialogueSet, limit: int | None = None) -> dict[str, float]:
    """On held-out dialogues: the share of first replies whose signal tokens are right (the right
    modality's complete run when media is asked for, none otherwise), and media->text attribute
    accuracy of the I->T / V->T / A->T answers next to chance: per attribute (`attr_acc`) and whole
    answers naming every attribute of the item right (`exact_acc`; chance = the product of the
    per-attribute chances)."""
    right = total = 0
    per_task: dict[str, list[bool]] = defaultdict(list)
    attr_right = attr_total = attr_chance = exact = exact_chance = answers = 0.0
    for d in data.dialogues[:limit]:
        turns = d["turns"]
        user, reply = turns[0], turns[1]
        media = [data.media[media_key(m)] for m in user.get("media", [])]
        ids = respond(model, [user], media)
        runs = signal_runs(ids, model.signal.ids)
        wanted = reply.get("output")
        ok = runs == [(wanted["modality"], True)] if wanted else not runs
        right += ok
        total += 1
        per_task[d.get("task", "any")].append(ok)
        if d.get("task") in ("I->T", "V->T", "A->T") and "item" in user["media"][0]:
            item = user["media"][0]["item"]
            said = mosit.strip_answer(model.tokenizer.decode(ids, skip_special_tokens=True))
            scores = tw.attribute_scores(said, item)
            attr_right += sum(scores.values())
            attr_total += len(scores)
            attr_chance += sum(tw.attribute_chance(item).values())
            exact += all(scores.values())
            exact_chance += float(np.prod(list(tw.attribute_chance(item).values())))
            answers += 1
    out = {"signal_accuracy": right / max(total, 1)}
    out.update({f"signal_accuracy[{t}]": sum(v) / len(v) for t, v in sorted(per_task.items())})
    if attr_total:
        out.update(attr_acc=attr_right / attr_total, attr_chance=attr_chance / attr_total,
                   exact_acc=exact / answers, exact_chance=exact_chance / answers)
    return out


def heldout_loss(model, data: DialogueSet, batch_size: int = 32) -> dict[str, float]:
    source = BlendedBatches(model, data, batch_size)
    nll, distance = [], defaultdict(list)
    for start in range(0, len(data.dialogues), batch_size):
        batch = source.examples(list(range(start, min(start + batch_size, len(data.dialogues)))))
        out = model.stage_loss(batch, "3")
        nll.append(float(out["nll"]))
        for m in MODALITIES:
            if f"{m}_distance" in out:
                distance[m].append(float(out[f"{m}_distance"]))
    result = {"heldout_nll": float(np.mean(nll))}
    result.update({f"{m}_distance": float(np.mean(v)) for m, v in distance.items()})
    return result


def make_eval_fn(test: DialogueSet, with_behaviour: bool = True):
    def evaluate(model) -> dict:
        result = heldout_loss(model, test)
        if with_behaviour:
            result.update(behaviour_report(model, test))
        return result

    return evaluate


def run_stage3(model, decoders=None, out_dir: str | None = None, steps: int | None = None, data_files: list[str] | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True):
    """Train stage 3 (LoRA switched on first) and return the TrainResult."""
    from nextgpt_mini.data.formats import read_dialogues
    from nextgpt_mini.models.decoders import Decoders
    from nextgpt_mini.training.trainer import Trainer

    p = model.profile
    model.enable_lora()
    decoders = decoders or Decoders(p, cache_dir=cache_dir)
    if data_files:
        dialogues = [d for f in data_files for d in read_dialogues(f)]
        n_test = max(1, len(dialogues) // 10)
        train = prepare_dialogues(model, decoders, dialogues[:-n_test], cache_dir)
        test = prepare_dialogues(model, decoders, dialogues[-n_test:], cache_dir)
    else:
        train, test = toy_data(model, decoders, seed=p.seed, cache_dir=cache_dir)
    cfg = p.train.for_stage("3")
    source = BlendedBatches(model, train, cfg.batch_size, p.seed)
    trainer = Trainer(model, "3", source, p.train, out_dir=out_dir, steps=steps, eval_fn=make_eval_fn(test), progress=progress)
    return trainer.train(resume=resume)
