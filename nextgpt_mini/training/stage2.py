"""Stage 2, decoding-side alignment: teach the output projectors to speak each decoder's language.

Data: captions only (no media). For a caption, the frozen decoder's own text encoder gives the
conditioning it would generate from (the *target*: CLIP's 77 x 768 for Stable Diffusion). The
LLM sees a request and answers with the caption followed by the modality's signal tokens,

    ### Human: Show me a big red circle on the left.\\n### Assistant: Here is a big red circle
    on the left. [IMG0][IMG1][IMG2][IMG3]\\n###

and the output projector maps the states at [IMG0..3] (last hidden state + input embedding)
towards the target. Loss = NLL of the answer (the LLM must learn to emit the signal tokens: their
embedding rows train) + lambda x distance(projected, target). The LLM itself stays frozen.
One modality per batch, round-robin, as in stage 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini.tiny import world as tw
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.trainer import epoch_order

MODALITIES = ("image", "video", "audio")
# The requests of the toy world's T->I / T->V / T->A dialogues (data/mosit.py), and their answers.
REQUESTS = {
    "image": ["Show me {c}.", "Draw {c}.", "Can you make a picture of {c}?"],
    "video": ["Make a video of {c}.", "Show me a clip of {c}."],
    "audio": ["Play {c}."],
}
ANSWERS = {"image": "Here is {c}.", "video": "Here is a video of {c}.", "audio": "Here is {c}."}


@dataclass
class TargetSet:
    """Captions of one modality with their decoder's conditioning targets."""

    modality: str
    captions: list[str]
    targets: torch.Tensor  # [N, *target_shape]
    items: list[tw.ToyItem] | None = None
    names: list[str] = field(default_factory=list)
    latents: torch.Tensor | None = None  # the media's VAE latents, for the optional denoising loss

    def __len__(self) -> int:
        return len(self.captions)


def render_for_decoder(item: tw.ToyItem, cfg) -> np.ndarray:
    """A toy item at its decoder's size: an image [H, W, 3], or a video [F, H, W, 3] at its fps."""
    if item.modality == "image":
        return tw.render_image(item, cfg.height)
    return tw.render_video(item, cfg.height, cfg.num_frames / cfg.fps, cfg.fps)[: cfg.num_frames]


def attach_latents(sets: dict[str, TargetSet], decoders, batch_size: int = 32) -> None:
    """Render each toy item at the decoder's size and store its VAE latents (image and video sets)."""
    for m, data in sets.items():
        if m == "audio" or not data.items:
            continue
        dec = decoders[m]
        chunks = [dec.clean_latents([render_for_decoder(it, dec.cfg) for it in data.items[k : k + batch_size]])
                  for k in range(0, len(data.items), batch_size)]
        data.latents = torch.cat(chunks).float().cpu()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def toy_captions(modality: str, n: int, split: str, seed: int = 0) -> tuple[list[str], list[tw.ToyItem]]:
    items = tw.sample_items(modality, n, seed=seed + 17, split=split)
    return [it.caption for it in items], items


def file_captions(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Captions of NExT-GPT pair files in `folder` (images.json / videos.json / audio.json).

    Stage 2 needs no media: CC3M, WebVid and AudioCaps captions alone are its data.
    """
    from nextgpt_mini.data.pairs import read_pairs

    folder = Path(folder)
    out = {}
    for name in ("images.json", "videos.json", "audio.json"):
        if (folder / name).is_file():
            modality, _, captions = read_pairs(folder / name)
            out[modality] = captions
    if not out:
        raise FileNotFoundError(f"{folder}: no images.json, videos.json or audio.json (NExT-GPT caption pair files)")
    return out


def prepare_data(decoders, data_dir: str | None = None, n_train: int = 400, n_test: int = 48, seed: int = 0):
    """(train, test) dicts of TargetSets: the toy world by default, or the captions in `data_dir`."""
    train, test = {}, {}
    if data_dir:
        for m, captions in file_captions(data_dir).items():
            n_held = max(1, int(round(0.25 * len(captions))))
            targets = decoders[m].targets(captions)
            train[m] = TargetSet(m, captions[:-n_held], targets[:-n_held])
            test[m] = TargetSet(m, captions[-n_held:], targets[-n_held:])
        return train, test
    for m in MODALITIES:
        for split, n, out in (("train", n_train, train), ("test", n_test, test)):
            captions, items = toy_captions(m, n, split, seed)
            out[m] = TargetSet(m, captions, decoders[m].targets(captions), items)
    return train, test


def request_example(tokenizer, signal, template: str, modality: str, caption: str, k: int, max_length: int,
                    with_answer: bool = True):
    """The k-th request form for `caption`; with its answer "<caption> [SIG0..]" if with_answer."""
    turns = [{"role": "user", "text": REQUESTS[modality][k % len(REQUESTS[modality])].format(c=caption)}]
    if with_answer:
        turns.append({"role": "assistant", "text": ANSWERS[modality].format(c=caption),
                      "output": {"modality": modality, "caption": caption}})
    segments = dialogue_segments(turns, template, signal.tokens, tokenizer)
    return tokenize_segments(segments, tokenizer, max_length, signal_ids=signal.ids)


class SignalBatches:
    """`batch(step)`: one modality per step, round-robin; captions by a seeded permutation per epoch."""

    def __init__(self, sets: dict[str, TargetSet], tokenizer, signal, template: str, batch_size: int,
                 max_length: int, seed: int = 0):
        self.sets = {m: s for m, s in sets.items() if len(s)}
        self.order = [m for m in MODALITIES if m in self.sets]
        self.tokenizer, self.signal, self.template = tokenizer, signal, template
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed

    def _indices(self, modality: str, step: int) -> list[int]:
        turn = step // len(self.order)
        return epoch_order(len(self.sets[modality]), turn * self.batch_size, self.batch_size,
                           [self.seed, 2, MODALITIES.index(modality)])

    def examples(self, modality: str, indices: list[int]) -> dict:
        data = self.sets[modality]
        exs = [request_example(self.tokenizer, self.signal, self.template, modality, data.captions[i], i,
                               self.max_length) for i in indices]
        batch = collate(exs, self.tokenizer.pad_token_id)
        batch["signal_spans"] = [e.signal_spans for e in exs]
        batch["signal_targets"] = [[data.targets[i]] * len(e.signal_spans) for i, e in zip(indices, exs)]
        batch["signal_latents"] = [data.latents[i] for i in indices] if data.latents is not None else None
        batch["modality"] = modality
        return batch

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict:
        modality = self.order[step % len(self.order)]
        return self.examples(modality, self._indices(modality, step)[rank::world])


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def project_captions(model, data: TargetSet, template: str | None = None, batch_size: int = 64) -> torch.Tensor:
    """Teacher-forced: the output projector's conditioning for each caption of `data` [N, ...]."""
    p = model.profile
    source = SignalBatches({data.modality: data}, model.tokenizer, model.signal, template or p.llm.template,
                           batch_size, p.llm.max_length)
    outs = []
    for start in range(0, len(data), batch_size):
        batch = model._on_device(source.examples(data.modality, list(range(start, min(start + batch_size, len(data))))))
        embeds = model.embed(batch)
        out = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], output_hidden_states=True)
        projected = model.project_signals(out.hidden_states[-1], embeds, batch["signal_spans"])
        pred, index = projected[data.modality]
        if [b for b, _ in index] != list(range(len(batch["signal_spans"]))):
            raise ValueError(f"{data.modality}: some captions lost their signal tokens to truncation (max_length {p.llm.max_length})")
        outs.append(pred.float().cpu())
    return torch.cat(outs)


def pairwise_distance(pred: torch.Tensor, targets: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """[N, M]: distance of each projected conditioning to each target."""
    from nextgpt_mini.losses import distance

    n, m = pred.shape[0], targets.shape[0]
    a = pred[:, None].expand(n, m, *pred.shape[1:]).reshape(n * m, *pred.shape[1:])
    b = targets[None].expand(n, m, *targets.shape[1:]).reshape(n * m, *targets.shape[1:])
    return distance(a, b, kind).reshape(n, m)


def alignment_report(model, sets: dict[str, TargetSet]) -> dict[str, float]:
    """Held-out alignment distance, and how often a caption's projection is nearest to its own target."""
    kind = model.profile.train.distance
    result, dists, hits, chance = {}, [], [], []
    for m, data in sets.items():
        pred = project_captions(model, data)
        pair = pairwise_distance(pred, data.targets.float(), kind)
        own = pair.diagonal()
        # captions may repeat: any target equal to the caption's own counts as the right one
        same = torch.tensor([[a == b for b in data.captions] for a in data.captions])
        nearest = pair.argmin(1)
        hit = same[torch.arange(len(data)), nearest].float()
        result[f"{m}_distance"] = float(own.mean())
        result[f"{m}_retrieval"] = float(hit.mean())
        result[f"{m}_retrieval_chance"] = float(same.float().mean(1).mean())
        result[f"{m}_other_distance"] = float(pair[~same].mean()) if (~same).any() else float("nan")
        dists.append(float(own.mean()))
        hits.append(float(hit.mean()))
        chance.append(result[f"{m}_retrieval_chance"])
    result.update(distance=float(np.mean(dists)), retrieval=float(np.mean(hits)), retrieval_chance=float(np.mean(chance)))
    return result


def signal_nll(model, sets: dict[str, TargetSet]) -> float:
    """Mean NLL of held-out answers "<caption> [SIG0..]": does the LLM ask for the right decoder?"""
    p = model.profile
    source = SignalBatches(sets, model.tokenizer, model.signal, p.llm.template, 64, p.llm.max_length)
    values = []
    for m, data in source.sets.items():
        for start in range(0, len(data), 64):
            batch = source.examples(m, list(range(start, min(start + 64, len(data)))))
            values.append(model.per_example_nll(batch).mean().item())
    return float(np.mean(values))


def make_eval_fn(sets: dict[str, TargetSet]):
    def evaluate(model) -> dict:
        return {"heldout_nll": signal_nll(model, sets), **alignment_report(model, sets)}

    return evaluate


def run_stage2(model, decoders=None, out_dir: str | None = None, steps: int | None = None, data_dir: str | None = None,
               resume: bool = False, cache_dir: str | None = None, progress: bool = True):
    """Train stage 2 and return the TrainResult (first/last evals hold distance and retrieval)."""
    from nextgpt_mini.models.decoders import Decoders
    from nextgpt_mini.training.trainer import Trainer

    p = model.profile
    decoders = decoders or Decoders(p, cache_dir=cache_dir)
    train, test = prepare_data(decoders, data_dir, seed=p.seed)
    cfg = p.train.for_stage("2")
    if cfg.denoising_loss:
        attach_latents(train, decoders)
        model.decoders = decoders
    source = SignalBatches(train, model.tokenizer, model.signal, p.llm.template, cfg.batch_size, p.llm.max_length, p.seed)
    trainer = Trainer(model, "2", source, p.train, out_dir=out_dir, steps=steps, eval_fn=make_eval_fn(test), progress=progress)
    return trainer.train(resume=resume)
