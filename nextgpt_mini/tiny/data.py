"""Chapters 02, 04 and 06: the toy world's data for the three stages, and the stages as the
tiny profile (and the CLI without --data) runs them.

The stages themselves (`training/stage1-3.py`) take whatever data they are given; this module is
where the default, the toy world, is chosen.
"""

from __future__ import annotations

import json

import torch

from nextgpt_mini.cache import text_key
from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.pairs import PairSet, TargetSet
from nextgpt_mini.encode import encode_rendered, encoder_cache
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.tiny import render as tr
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import TASKS, toy_dialogues
from nextgpt_mini.training import stage1, stage2, stage3


# --------------------------------------------------------------------------------------------
# Stage 1: toy media, rendered as files would be and encoded (cached)
# --------------------------------------------------------------------------------------------
def toy_pairs(modality: str, n: int, split: str, encoder, cfg, seed: int = 0, cache=None, batch_size: int = 64) -> PairSet:
    """`n` toy-world items of one modality, rendered as files would be and encoded (cached)."""
    items = tw.sample_items(modality, n, seed=seed, split=split)
    keys = [text_key(json.dumps(it.to_dict(), sort_keys=True), prefix="toyitem") for it in items]
    found = cache.get_many(keys) if cache is not None else {}
    missing = [k for k, key in enumerate(keys) if key not in found]
    emb = encode_rendered(encoder, modality, [items[k] for k in missing], tr.encoder_input, cfg, batch_size)
    new = {keys[k]: emb[j] for j, k in enumerate(missing)}
    found.update(new)
    if cache is not None and new:
        cache.put_many(new)
    embeddings = torch.stack([found[key] for key in keys])
    return PairSet(modality, embeddings, [it.caption for it in items], items)


def stage1_data(model, data_dir: str | None = None, n_train: int = 1200, n_test: int = 48, cache_dir: str | None = None,
                seed: int = 0):
    """Train and held-out PairSets: the toy world by default, or NExT-GPT pair files in `data_dir`."""
    if data_dir:
        return stage1.file_data(model, data_dir, cache_dir)
    cfg, encoder = model.profile.encoder, model.encoder
    cache = encoder_cache(cache_dir, cfg, encoder) if cache_dir else None
    train = {m: toy_pairs(m, n_train, "train", encoder, cfg, seed, cache) for m in MODALITIES}
    test = {m: toy_pairs(m, n_test, "test", encoder, cfg, seed, cache) for m in MODALITIES}
    return train, test


def run_stage1(model, out_dir: str | None = None, steps: int | None = None, data_dir: str | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True, eval_captions: bool = True):
    """Stage 1 on the toy world (or `data_dir`'s pair files); returns the TrainResult."""
    train, test = stage1_data(model, data_dir, cache_dir=cache_dir, seed=model.profile.seed)
    return stage1.run(model, train, test, out_dir=out_dir, steps=steps, resume=resume, progress=progress,
                      eval_captions=eval_captions)


# --------------------------------------------------------------------------------------------
# Stage 2: toy captions (and, for the optional denoising loss, their media's latents)
# --------------------------------------------------------------------------------------------
def toy_captions(modality: str, n: int, split: str, seed: int = 0) -> tuple[list[str], list[tw.ToyItem]]:
    items = tw.sample_items(modality, n, seed=seed + 17, split=split)  # +17: a walk apart from stage 1's items
    return [it.caption for it in items], items


def stage2_data(decoders, data_dir: str | None = None, n_train: int = 400, n_test: int = 48, seed: int = 0):
    """(train, test) dicts of TargetSets: the toy world by default, or the captions in `data_dir`."""
    if data_dir:
        return stage2.file_data(decoders, data_dir)
    train, test = {}, {}
    for m in MODALITIES:
        for split, n, out in (("train", n_train, train), ("test", n_test, test)):
            captions, items = toy_captions(m, n, split, seed)
            out[m] = TargetSet(m, captions, decoders[m].targets(captions), items)
    return train, test


def attach_latents(sets: dict[str, TargetSet], decoders, batch_size: int = 32) -> None:
    """Render each toy item at the decoder's size and store its VAE latents (image and video sets)."""
    for m, data in sets.items():
        if m == "audio" or not data.items:
            continue
        dec = decoders[m]
        chunks = [dec.clean_latents([tr.for_decoder(it, dec.cfg) for it in data.items[k : k + batch_size]])
                  for k in range(0, len(data.items), batch_size)]
        data.latents = torch.cat(chunks).float().cpu()


def run_stage2(model, decoders=None, out_dir: str | None = None, steps: int | None = None, data_dir: str | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True):
    """Stage 2 on the toy world's captions (or `data_dir`'s); returns the TrainResult."""
    p = model.profile
    decoders = decoders or Decoders(p, cache_dir=cache_dir)
    train, test = stage2_data(decoders, data_dir, seed=p.seed)
    if p.train.for_stage("2").denoising_loss:
        attach_latents(train, decoders)
    return stage2.run(model, train, test, decoders, out_dir=out_dir, steps=steps, resume=resume, progress=progress)


# --------------------------------------------------------------------------------------------
# Stage 3: toy dialogues of every task
# --------------------------------------------------------------------------------------------
def stage3_data(model, decoders, n_train: int = 1400, n_test: int = 70, seed: int = 0, cache_dir: str | None = None):
    """Toy-world dialogues of every task (train and held-out splits), prepared."""
    train = toy_dialogues(n_train, seed=seed, split="train", varied_conversions=True)
    return (stage3.prepare_dialogues(model, decoders, train, cache_dir, render=tr.encoder_input),
            heldout_dialogues(model, decoders, n_test, seed, cache_dir))


def heldout_dialogues(model, decoders, n: int = 70, seed: int = 0, cache_dir: str | None = None,
                      tasks: tuple[str, ...] = TASKS, phrasing: str = "train"):
    """The held-out (test split) half of `stage3_data`, prepared: for evaluating a trained system
    (`phrasing="held-out"`: worded in the phrasing families no training text uses)."""
    dialogues = toy_dialogues(n, seed=seed + 1, split="test", tasks=tasks, phrasing=phrasing, varied_conversions=True)
    return stage3.prepare_dialogues(model, decoders, dialogues, cache_dir, render=tr.encoder_input)


def reading_report(model, decoders, n: int = 90, seed: int = 0) -> dict[str, float]:
    """Media -> text on `n` held-out I->T / V->T / A->T questions (half of their objects are
    held-out colour+shape pairs): attributes named right next to chance, per attribute and whole
    answers. The 70 dialogues of `stage3_data` hold only 15 such questions, too few to tell 1 % from 5 %."""
    return stage3.behaviour_report(model, heldout_dialogues(model, decoders, n, seed, tasks=stage3.MEDIA_TO_TEXT))


def run_stage3(model, decoders=None, out_dir: str | None = None, steps: int | None = None, data_files: list[str] | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True):
    """Stage 3 on toy dialogues (or `data_files`); returns the TrainResult."""
    p = model.profile
    model.enable_lora()  # before the decoders are built: the order of random draws is part of the recipe
    decoders = decoders or Decoders(p, cache_dir=cache_dir)
    if data_files:
        train, test = stage3.file_data(model, decoders, data_files, cache_dir)
    else:
        train, test = stage3_data(model, decoders, seed=p.seed, cache_dir=cache_dir)
    return stage3.run(model, train, test, out_dir=out_dir, steps=steps, resume=resume, progress=progress)
