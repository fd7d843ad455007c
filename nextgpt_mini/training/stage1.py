"""Stage 1, encoding-side alignment: teach the input projector to speak the frozen LLM's language.

Data: (media embedding, caption) pairs. The encoder is frozen, so each item is encoded once and
read from the embedding cache afterwards. Each batch holds one modality, taken round-robin
(image, video, audio, image, ...), as in NExT-GPT. The prompt is

    ### Human: <Img>[soft token]</Img> Describe this image.\\n### Assistant: <caption>\\n###

and only the answer (and the closing ###) is in the loss. Only the input projector trains.

NExT-GPT's answer is the bare caption; Vicuna takes any answer style. The tiny LLM was pretrained
on the toy world's dialogues, where the assistant describes media as "It shows <caption>." or
"I hear <caption>.", so stage 1 asks for that form: the projector's job is then only to say
*what* is there, not to also fight the LLM's habits about *how* to say it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini.tiny import world as tw
from nextgpt_mini.data.mosit import describe_answer, strip_answer
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.trainer import epoch_order

MODALITIES = ("image", "video", "audio")
INSTRUCTIONS = {
    "image": ["Describe this image.", "What is in this picture?", "Write a caption for this image."],
    "video": ["Describe this video.", "What happens in this video?", "Write a caption for this video."],
    "audio": ["Describe this sound.", "What do you hear?", "Write a caption for this audio."],
}


@dataclass
class PairSet:
    """Captioned media of one modality, as encoder embeddings."""

    modality: str
    embeddings: torch.Tensor  # [N, D], unit norm
    captions: list[str]
    items: list[tw.ToyItem] | None = None  # toy-world items (for attribute scoring), if any
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


# --------------------------------------------------------------------------------------------
# Data: the toy world, or NExT-GPT pair files (images.json / videos.json / audio.json)
# --------------------------------------------------------------------------------------------
def toy_pairs(modality: str, n: int, split: str, encoder, cfg, seed: int = 0, cache=None, batch_size: int = 64) -> PairSet:
    """`n` toy-world items of one modality, rendered as files would be and encoded (cached)."""
    from nextgpt_mini.cache import text_key
    from nextgpt_mini.tiny.pretrain.encoder import audio_tensor, image_tensor, video_tensor

    items = tw.sample_items(modality, n, seed=seed, split=split)
    keys = [text_key(json.dumps(it.to_dict(), sort_keys=True), prefix="toyitem") for it in items]
    found = cache.get_many(keys) if cache is not None else {}
    missing = [k for k, key in enumerate(keys) if key not in found]
    render = {
        "image": lambda it: image_tensor(it, 64, cfg),
        "video": lambda it: video_tensor(it, 64, 2.0, 8, cfg),
        "audio": lambda it: audio_tensor(it, 2.0, cfg),
    }[modality]
    encode = {"image": encoder.encode_image, "video": encoder.encode_video, "audio": encoder.encode_audio}[modality]
    with torch.no_grad():
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            x = torch.stack([render(items[k]) for k in chunk])
            emb = torch.nn.functional.normalize(encode(x).float(), dim=-1)
            new = {keys[k]: emb[j] for j, k in enumerate(chunk)}
            found.update(new)
            if cache is not None:
                cache.put_many(new)
    embeddings = torch.stack([found[key] for key in keys])
    return PairSet(modality, embeddings, [it.caption for it in items], items)


def file_pairs(pairs_json: str | os.PathLike, encoder, cfg, cache=None) -> PairSet:
    """A NExT-GPT pair file and its media folder, encoded (cached)."""
    from nextgpt_mini.encode import encode_dataset

    enc = encode_dataset(pairs_json, encoder=encoder, cfg=cfg, cache=cache, progress=False)
    return PairSet(enc.modality, enc.embeddings, list(enc.captions), None, [str(f) for f in enc.files])


def folder_pairs(folder: str | os.PathLike, encoder, cfg, cache=None) -> dict[str, PairSet]:
    """Every pair file in `folder` (images.json, videos.json, audio.json)."""
    folder = Path(folder)
    sets = {}
    for name in ("images.json", "videos.json", "audio.json"):
        if (folder / name).is_file():
            ps = file_pairs(folder / name, encoder, cfg, cache)
            sets[ps.modality] = ps
    if not sets:
        raise FileNotFoundError(f"{folder}: no images.json, videos.json or audio.json (NExT-GPT pair files)")
    return sets


def split_pairs(ps: PairSet, held_out: float = 0.25) -> tuple[PairSet, PairSet]:
    """Last `held_out` of a file's pairs for evaluation (at least one), the rest for training."""
    n_test = max(1, int(round(len(ps) * held_out)))
    cut = len(ps) - n_test

    def part(sl):
        return PairSet(ps.modality, ps.embeddings[sl], ps.captions[sl], ps.items[sl] if ps.items else None, ps.names[sl])

    return part(slice(0, cut)), part(slice(cut, None))


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------
def caption_example(tokenizer, signal, template: str, modality: str, caption: str | None, instruction: str, max_length: int):
    turns = [{"role": "user", "text": instruction, "media": [{"modality": modality}]}]
    if caption is not None:
        turns.append({"role": "assistant", "text": describe_answer(modality, caption)})
    return tokenize_segments(dialogue_segments(turns, template, signal.tokens, tokenizer), tokenizer, max_length)


class CaptionBatches:
    """`batch(step)`: one modality per step, round-robin; items by a seeded permutation per epoch."""

    def __init__(self, sets: dict[str, PairSet], tokenizer, signal, template: str, batch_size: int, max_length: int, seed: int = 0):
        self.sets = {m: s for m, s in sets.items() if len(s)}
        self.order = [m for m in MODALITIES if m in self.sets]
        self.tokenizer, self.signal, self.template = tokenizer, signal, template
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed

    def _indices(self, modality: str, step: int) -> list[int]:
        turn = step // len(self.order)  # how many batches of this modality came before
        return epoch_order(len(self.sets[modality]), turn * self.batch_size, self.batch_size,
                           [self.seed, MODALITIES.index(modality)])

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        modality = self.order[step % len(self.order)]
        idx = self._indices(modality, step)[rank::world]
        data = self.sets[modality]
        examples = []
        for i in idx:
            instruction = INSTRUCTIONS[modality][i % len(INSTRUCTIONS[modality])]
            examples.append(caption_example(self.tokenizer, self.signal, self.template, modality, data.captions[i], instruction, self.max_length))
        batch = collate(examples, self.tokenizer.pad_token_id)
        batch["media"] = [data.embeddings[i : i + 1] for i in idx]
        batch["modality"] = modality
        return batch


# --------------------------------------------------------------------------------------------
# Evaluation: held-out caption loss and the attributes greedy captions name
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def caption_loss(model, sets: dict[str, PairSet], batch_size: int = 32) -> dict[str, float]:
    out = {}
    for m, data in sets.items():
        source = CaptionBatches({m: data}, model.tokenizer, model.signal, model.profile.llm.template, batch_size, model.profile.llm.max_length)
        losses = []
        for start in range(0, len(data), batch_size):
            idx = list(range(start, min(start + batch_size, len(data))))
            examples = [caption_example(model.tokenizer, model.signal, source.template, m, data.captions[i], INSTRUCTIONS[m][0], source.max_length) for i in idx]
            batch = collate(examples, model.tokenizer.pad_token_id)
            batch["media"] = [data.embeddings[i : i + 1] for i in idx]
            losses.append(model.per_example_nll(batch))
        out[m] = float(torch.cat(losses).mean())
    return out


@torch.no_grad()
def greedy_captions(model, modality: str, embeddings: torch.Tensor, max_new_tokens: int = 24) -> list[str]:
    """Greedy captions for a batch of one modality (same prompt for all: no padding needed)."""
    ex = caption_example(model.tokenizer, model.signal, model.profile.llm.template, modality, None, INSTRUCTIONS[modality][0], model.profile.llm.max_length)
    n = embeddings.shape[0]
    batch = collate([ex] * n, model.tokenizer.pad_token_id)
    from nextgpt_mini.prompts import embed_with_media

    embeds = embed_with_media(model.llm.get_input_embeddings(), batch["input_ids"], model.soft_tokens([e[None] for e in embeddings]))
    ids = model.llm.generate(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens, do_sample=False,
        pad_token_id=model.tokenizer.pad_token_id, eos_token_id=model.tokenizer.eos_token_id,
    )
    texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [strip_answer(t.split("###")[0]) for t in texts]


def format_attributes(ev: dict) -> str:
    """Held-out attribute naming next to chance, as the CLI and the demo print it: whole answers
    (every attribute right) and per attribute. `ev` holds attr_acc/attr_chance/exact_acc/exact_chance."""
    nan = float("nan")
    exact, exact_chance = ev.get("exact_acc", nan), ev.get("exact_chance", nan)
    return (f"every attribute right {exact:.1%} (chance {exact_chance:.2%}, {exact / exact_chance:.1f}x); "
            f"per attribute {ev.get('attr_acc', nan):.1%} (chance {ev.get('attr_chance', nan):.1%})")


def attribute_accuracy(model, sets: dict[str, PairSet]) -> dict[str, float]:
    """Share of attributes named right by greedy captions of toy items, next to chance."""
    right = total = chance = exact = exact_chance = 0.0
    per = {}
    for m, data in sets.items():
        if not data.items:
            continue
        captions = greedy_captions(model, m, data.embeddings)
        hits = [tw.attribute_scores(c, it) for c, it in zip(captions, data.items)]
        odds = [tw.attribute_chance(it) for it in data.items]
        r = sum(sum(h.values()) for h in hits)
        t = sum(len(h) for h in hits)
        per[f"{m}_attr_acc"] = r / t
        right, total = right + r, total + t
        chance += sum(sum(o.values()) for o in odds)
        exact += sum(all(h.values()) for h in hits)
        exact_chance += sum(float(np.prod(list(o.values()))) for o in odds)
    n_items = sum(len(s) for s in sets.values() if s.items)
    if not total:
        return {}
    return {"attr_acc": right / total, "attr_chance": chance / total, "exact_acc": exact / n_items,
            "exact_chance": exact_chance / n_items, **per}


def make_eval_fn(sets: dict[str, PairSet], with_captions: bool = True):
    def evaluate(model) -> dict:
        losses = caption_loss(model, sets)
        result = {"heldout_loss": float(np.mean(list(losses.values()))), **{f"{m}_loss": v for m, v in losses.items()}}
        if with_captions:
            result.update(attribute_accuracy(model, sets))
        return result

    return evaluate


# --------------------------------------------------------------------------------------------
# The whole stage, as the CLI runs it
# --------------------------------------------------------------------------------------------
def prepare_data(model, data_dir: str | None = None, n_train: int = 400, n_test: int = 48, cache_dir: str | None = None, seed: int = 0):
    """Train and held-out PairSets: the toy world by default, or NExT-GPT pair files in `data_dir`."""
    from nextgpt_mini.cache import EmbeddingCache
    from nextgpt_mini.encode import encoder_cache

    cfg = model.profile.encoder
    encoder = model.encoder
    cache = encoder_cache(cache_dir, cfg, encoder) if cache_dir else None
    if data_dir:
        train, test = {}, {}
        for m, ps in folder_pairs(data_dir, encoder, cfg, cache).items():
            train[m], test[m] = split_pairs(ps)
        return train, test
    assert cache is None or isinstance(cache, EmbeddingCache)
    train = {m: toy_pairs(m, n_train, "train", encoder, cfg, seed, cache) for m in MODALITIES}
    test = {m: toy_pairs(m, n_test, "test", encoder, cfg, seed, cache) for m in MODALITIES}
    return train, test


def run_stage1(model, out_dir: str | None = None, steps: int | None = None, data_dir: str | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True, eval_captions: bool = True):
    """Train stage 1 and return the TrainResult (first/last evals hold loss and accuracies)."""
    from nextgpt_mini.training.trainer import Trainer

    p = model.profile
    train, test = prepare_data(model, data_dir, cache_dir=cache_dir, seed=p.seed)
    source = CaptionBatches(train, model.tokenizer, model.signal, p.llm.template, p.train.batch_size, p.llm.max_length, p.seed)
    trainer = Trainer(model, "1", source, p.train, out_dir=out_dir, steps=steps, eval_fn=make_eval_fn(test, eval_captions), progress=progress)
    return trainer.train(resume=resume)
