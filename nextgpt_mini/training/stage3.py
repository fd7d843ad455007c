"""Chapter 06: stage 3, modality-switching instruction tuning (MosIT): the whole system learns to converse.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.formats import read_dialogues
from nextgpt_mini.data.mosit import strip_answer
from nextgpt_mini.encode import encode, encode_rendered, encoder_cache
from nextgpt_mini.generation import cut_at_stop, reply_ids
from nextgpt_mini.models.signal_tokens import find_runs, is_complete
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.sampling import ExampleCache, epoch_order
from nextgpt_mini.training.stage1 import add_tallies, attribute_rates, attribute_report
from nextgpt_mini.training.trainer import Trainer

MEDIA_TO_TEXT = ("I->T", "V->T", "A->T")


# --------------------------------------------------------------------------------------------
# Media and targets, computed once
# --------------------------------------------------------------------------------------------
def media_key(m: dict) -> str:
    if "item" in m:
        return "item:" + repr(m["item"])
    return "path:" + str(m["path"])


def encode_media(model, dialogues: list[dict], cache_dir: str | None = None, batch_size: int = 64,
                 render: Callable | None = None) -> dict[str, torch.Tensor]:
    """{media key: unit-norm encoder embedding} for every input item of `dialogues`.

    Media given as files (`path`) go through `encode` (cached); media given as items (`item`, the
    toy world's) are turned into encoder inputs by `render(item, encoder_cfg)` and encoded in batches."""
    items = {}
    for d in dialogues:
        for t in d["turns"]:
            for m in t.get("media", []):
                items.setdefault(media_key(m), m)
    by_modality, files = defaultdict(list), []
    for key, m in items.items():
        (by_modality[m["modality"]] if "item" in m else files).append((key, m))
    if by_modality and render is None:
        raise ValueError("these dialogues hold in-memory media items: pass render= (tiny.render.encoder_input for the toy world)")
    out: dict[str, torch.Tensor] = {}
    cfg = model.profile.encoder
    for modality, rows in by_modality.items():
        emb = encode_rendered(model.encoder, modality, [m["item"] for _, m in rows], render, cfg, batch_size)
        out.update({key: e for (key, _), e in zip(rows, emb)})
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


def prepare_dialogues(model, decoders, dialogues: list[dict], cache_dir: str | None = None,
                      render: Callable | None = None) -> DialogueSet:
    media = encode_media(model, dialogues, cache_dir, render=render)
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
        self.tokenized = ExampleCache()  # dialogue index -> its tokenized example

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
            ex = self.tokenized.get_or_make(i, lambda d=d: dialogue_example(self.model, d))
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
    return respond_many(model, [(turns, media)], max_new_tokens)[0]


@torch.no_grad()
def respond_many(model, prompts: list[tuple[list[dict], list[torch.Tensor] | None]], max_new_tokens: int = 40,
                 batch_size: int = 16) -> list[list[int]]:
    """`respond` for many (turns, media) prompts at once. Prompts of the same token length share a
    batch, so that no row is padded and every reply is the one `respond` alone would give."""
    examples = [dialogue_example(model, {"turns": turns}) for turns, _ in prompts]
    by_length: dict[int, list[int]] = defaultdict(list)
    for k, ex in enumerate(examples):
        by_length[len(ex.input_ids)].append(k)
    replies: list[list[int]] = [[] for _ in prompts]
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            rows = group[start : start + batch_size]
            batch = collate([examples[k] for k in rows], model.tokenizer.pad_token_id)
            soft = model.soft_tokens([torch.stack(prompts[k][1]) if prompts[k][1] else None for k in rows])
            for k, ids in zip(rows, reply_ids(model, batch, soft, max_new_tokens)):
                replies[k] = cut_at_stop(ids.tolist(), model.tokenizer)
    return replies


def signal_runs(ids: list[int], signal_ids: dict[str, list[int]]) -> list[tuple[str, bool]]:
    """(modality, complete?) for each run of signal tokens in `ids`."""
    return [(run[0], is_complete(ids, run, signal_ids)) for run in find_runs(ids, signal_ids)]


def behaviour_report(model, data: DialogueSet, limit: int | None = None) -> dict[str, float]:
    """On held-out dialogues: the share of first replies whose signal tokens are right (the right
    modality's complete run when media is asked for, none otherwise), and media->text attribute
    accuracy of the I->T / V->T / A->T answers about items that score a caption, next to chance
    (`training.stage1.attribute_report`)."""
    right = total = 0
    per_task: dict[str, list[bool]] = defaultdict(list)
    tally: dict = {}
    dialogues = data.dialogues[:limit]
    replies = respond_many(model, [([d["turns"][0]], [data.media[media_key(m)] for m in d["turns"][0].get("media", [])])
                                   for d in dialogues])
    for d, ids in zip(dialogues, replies):
        user, reply = d["turns"][0], d["turns"][1]
        runs = signal_runs(ids, model.signal.ids)
        wanted = reply.get("output")
        ok = runs == [(wanted["modality"], True)] if wanted else not runs
        right += ok
        total += 1
        per_task[d.get("task", "any")].append(ok)
        if d.get("task") in MEDIA_TO_TEXT and "item" in user["media"][0]:
            said = strip_answer(model.tokenizer.decode(ids, skip_special_tokens=True))
            tally = add_tallies(tally, attribute_report([said], [user["media"][0]["item"]]))
    out = {"signal_accuracy": right / max(total, 1)}
    out.update({f"signal_accuracy[{t}]": sum(v) / len(v) for t, v in sorted(per_task.items())})
    out.update(attribute_rates(tally))
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


def file_data(model, decoders, data_files: list[str], cache_dir: str | None = None) -> tuple[DialogueSet, DialogueSet]:
    """Dialogue files (our MosIT format, NExT-GPT's, LLaVA's or Alpaca's), the last tenth held out, prepared."""
    dialogues = [d for f in data_files for d in read_dialogues(f)]
    n_test = max(1, len(dialogues) // 10)
    return (prepare_dialogues(model, decoders, dialogues[:-n_test], cache_dir),
            prepare_dialogues(model, decoders, dialogues[-n_test:], cache_dir))


def run(model, train: DialogueSet, test: DialogueSet, out_dir: str | None = None, steps: int | None = None,
        resume: bool = False, progress: bool = True):
    """Train stage 3 (LoRA switched on first; it must be on before `train`'s targets are used) and
    return the TrainResult."""
    p = model.profile
    model.enable_lora()
    source = BlendedBatches(model, train, p.train.for_stage("3").batch_size, p.seed)
    trainer = Trainer(model, "3", source, p.train, out_dir=out_dir, steps=steps, eval_fn=make_eval_fn(test), progress=progress)
    return trainer.train(resume=resume)
