"""Chapter 02: stage 1, encoding-side alignment: teach the input projector to speak the frozen LLM's language.

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

import os
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini.data.mosit import describe_answer, strip_answer
from nextgpt_mini.data.pairs import PairSet
from nextgpt_mini.encode import encode_dataset, encoder_cache
from nextgpt_mini.generation import reply_ids
from nextgpt_mini.losses import answer_nll
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.sampling import RoundRobinBatches
from nextgpt_mini.training.trainer import Trainer

INSTRUCTIONS = {
    "image": ["Describe this image.", "What is in this picture?", "Write a caption for this image."],
    "video": ["Describe this video.", "What happens in this video?", "Write a caption for this video."],
    "audio": ["Describe this sound.", "What do you hear?", "Write a caption for this audio."],
}


# --------------------------------------------------------------------------------------------
# Data: NExT-GPT pair files (images.json / videos.json / audio.json); the toy world's are in tiny/data.py
# --------------------------------------------------------------------------------------------
def file_pairs(pairs_json: str | os.PathLike, encoder, cfg, cache=None) -> PairSet:
    """A NExT-GPT pair file and its media folder, encoded (cached)."""
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


class CaptionBatches(RoundRobinBatches):
    """`batch(step)`: one modality per step, round-robin; items by a seeded permutation per epoch."""

    def __init__(self, sets: dict[str, PairSet], tokenizer, signal, template: str, batch_size: int, max_length: int, seed: int = 0):
        super().__init__(sets, batch_size, seed)
        self.tokenizer, self.signal, self.template, self.max_length = tokenizer, signal, template, max_length

    def examples(self, modality: str, indices: list[int], instruction: int | None = None) -> dict:
        """The batch of `indices`; instruction k of the modality's list, or each item's own (i mod 3)."""
        data, forms = self.sets[modality], INSTRUCTIONS[modality]
        examples = []
        for i in indices:
            form = forms[i % len(forms) if instruction is None else instruction]
            examples.append(self.tokenized.get_or_make((modality, i, form), lambda i=i, form=form: caption_example(
                self.tokenizer, self.signal, self.template, modality, data.captions[i], form, self.max_length)))
        batch = collate(examples, self.tokenizer.pad_token_id)
        batch["media"] = [data.embeddings[i : i + 1] for i in indices]
        batch["modality"] = modality
        return batch


# --------------------------------------------------------------------------------------------
# Evaluation: held-out caption loss and the attributes greedy captions name
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def caption_loss(model, sets: dict[str, PairSet], batch_size: int = 32) -> dict[str, float]:
    """Held-out NLL of each modality's captions (the first instruction form for all)."""
    p = model.profile
    source = CaptionBatches(sets, model.tokenizer, model.signal, p.llm.template, batch_size, p.llm.max_length)
    return {m: float(answer_nll(model, (source.examples(m, idx, instruction=0) for idx in _chunks(len(data), batch_size))).mean())
            for m, data in source.sets.items()}


def _chunks(n: int, size: int):
    return (list(range(start, min(start + size, n))) for start in range(0, n, size))


@torch.no_grad()
def greedy_captions(model, modality: str, embeddings: torch.Tensor, max_new_tokens: int = 24) -> list[str]:
    """Greedy captions for a batch of one modality (same prompt for all: no padding needed)."""
    ex = caption_example(model.tokenizer, model.signal, model.profile.llm.template, modality, None, INSTRUCTIONS[modality][0], model.profile.llm.max_length)
    batch = collate([ex] * embeddings.shape[0], model.tokenizer.pad_token_id)
    ids = reply_ids(model, batch, model.soft_tokens([e[None] for e in embeddings]), max_new_tokens, stop=False)
    texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [strip_answer(t.split("###")[0]) for t in texts]


def attribute_report(texts: list[str], items: list) -> dict[str, float]:
    """Attributes named right by `texts` of `items`, next to chance: per attribute (`attr_acc`) and
    whole answers naming every attribute right (`exact_acc`; chance = the product of the
    per-attribute chances). Items score themselves (`attribute_scores(text)`, `attribute_chance()`),
    as the toy world's do."""
    hits = [it.attribute_scores(t) for t, it in zip(texts, items)]
    odds = [it.attribute_chance() for it in items]
    n_attr = sum(len(h) for h in hits)
    return {"attr_right": sum(sum(h.values()) for h in hits), "attr_total": n_attr,
            "attr_chance_sum": sum(sum(o.values()) for o in odds), "exact": sum(all(h.values()) for h in hits),
            "exact_chance_sum": sum(float(np.prod(list(o.values()))) for o in odds), "answers": len(items)}


def attribute_rates(tally: dict[str, float]) -> dict[str, float]:
    """The rates of an `attribute_report` tally (several may be summed key by key first)."""
    if not tally.get("attr_total"):
        return {}
    return {"attr_acc": tally["attr_right"] / tally["attr_total"], "attr_chance": tally["attr_chance_sum"] / tally["attr_total"],
            "exact_acc": tally["exact"] / tally["answers"], "exact_chance": tally["exact_chance_sum"] / tally["answers"]}


def add_tallies(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def attribute_accuracy(model, sets: dict[str, PairSet]) -> dict[str, float]:
    """Share of attributes named right by greedy captions of items that can score a caption
    (the toy world's), next to chance; sets without such items are skipped."""
    total, per = {}, {}
    for m, data in sets.items():
        if not data.items:
            continue
        tally = attribute_report(greedy_captions(model, m, data.embeddings), data.items)
        per[f"{m}_attr_acc"] = tally["attr_right"] / tally["attr_total"]
        total = add_tallies(total, tally)
    rates = attribute_rates(total)
    return {**rates, **per} if rates else {}


def make_eval_fn(sets: dict[str, PairSet], with_captions: bool = True):
    def evaluate(model) -> dict:
        losses = caption_loss(model, sets)
        result = {"heldout_loss": float(np.mean(list(losses.values()))), **{f"{m}_loss": v for m, v in losses.items()}}
        if with_captions:
            result.update(attribute_accuracy(model, sets))
        return result

    return evaluate


# --------------------------------------------------------------------------------------------
# The whole stage (the toy world's data and the CLI's recipe: tiny/data.py)
# --------------------------------------------------------------------------------------------
def file_data(model, data_dir: str | os.PathLike, cache_dir: str | None = None):
    """Train and held-out PairSets from the NExT-GPT pair files in `data_dir` (encoded, cached)."""
    cfg = model.profile.encoder
    cache = encoder_cache(cache_dir, cfg, model.encoder) if cache_dir else None
    train, test = {}, {}
    for m, ps in folder_pairs(data_dir, model.encoder, cfg, cache).items():
        train[m], test[m] = split_pairs(ps)
    return train, test


def batches(model, train: dict[str, PairSet]) -> CaptionBatches:
    """The stage's batch source, at the stage's own batch size (`train.stage_overrides["1"]`)."""
    p = model.profile
    return CaptionBatches(train, model.tokenizer, model.signal, p.llm.template, p.train.for_stage("1").batch_size,
                          p.llm.max_length, p.seed)


def run(model, train: dict[str, PairSet], test: dict[str, PairSet], out_dir: str | None = None, steps: int | None = None,
        resume: bool = False, progress: bool = True, eval_captions: bool = True):
    """Train stage 1 on `train`, evaluating on `test`; returns the TrainResult (first/last evals
    hold the held-out caption loss and, for items that score captions, attribute accuracy)."""
    trainer = Trainer(model, "1", batches(model, train), model.profile.train, out_dir=out_dir, steps=steps,
                      eval_fn=make_eval_fn(test, eval_captions), progress=progress)
    return trainer.train(resume=resume)
