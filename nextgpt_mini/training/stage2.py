"""Chapter 04: stage 2, decoding-side alignment: teach the output projectors to speak each decoder's language.

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
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini.data.pairs import TargetSet, read_pairs
from nextgpt_mini.losses import answer_nll, distance
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.training.sampling import RoundRobinBatches
from nextgpt_mini.training.trainer import Trainer

# How a request for media is asked and answered (the toy world's T->I / T->V / T->A dialogues use
# the same phrasings: tiny/dialogues.py).
REQUESTS = {
    "image": ["Show me {c}.", "Draw {c}.", "Can you make a picture of {c}?"],
    "video": ["Make a video of {c}.", "Show me a clip of {c}."],
    "audio": ["Play {c}."],
}
ANSWERS = {"image": "Here is {c}.", "video": "Here is a video of {c}.", "audio": "Here is {c}."}


# --------------------------------------------------------------------------------------------
# Data: captions of NExT-GPT pair files (the toy world's: tiny/data.py)
# --------------------------------------------------------------------------------------------
def file_captions(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Captions of NExT-GPT pair files in `folder` (images.json / videos.json / audio.json).

    Stage 2 needs no media: CC3M, WebVid and AudioCaps captions alone are its data.
    """
    folder = Path(folder)
    out = {}
    for name in ("images.json", "videos.json", "audio.json"):
        if (folder / name).is_file():
            modality, _, captions = read_pairs(folder / name)
            out[modality] = captions
    if not out:
        raise FileNotFoundError(f"{folder}: no images.json, videos.json or audio.json (NExT-GPT caption pair files)")
    return out


def file_data(decoders, data_dir: str | os.PathLike):
    """(train, test) dicts of TargetSets from the captions in `data_dir` (the last quarter held out)."""
    train, test = {}, {}
    for m, captions in file_captions(data_dir).items():
        n_held = max(1, int(round(0.25 * len(captions))))
        targets = decoders[m].targets(captions)
        train[m] = TargetSet(m, captions[:-n_held], targets[:-n_held])
        test[m] = TargetSet(m, captions[-n_held:], targets[-n_held:])
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


class SignalBatches(RoundRobinBatches):
    """`batch(step)`: one modality per step, round-robin; captions by a seeded permutation per epoch."""

    def __init__(self, sets: dict[str, TargetSet], tokenizer, signal, template: str, batch_size: int,
                 max_length: int, seed: int = 0):
        super().__init__(sets, batch_size, seed, stream=(2,))
        self.tokenizer, self.signal, self.template, self.max_length = tokenizer, signal, template, max_length

    def examples(self, modality: str, indices: list[int]) -> dict:
        data = self.sets[modality]
        exs = [self.tokenized.get_or_make((modality, i), lambda i=i: request_example(
                   self.tokenizer, self.signal, self.template, modality, data.captions[i], i, self.max_length))
               for i in indices]
        batch = collate(exs, self.tokenizer.pad_token_id)
        batch["signal_spans"] = [e.signal_spans for e in exs]
        batch["signal_targets"] = [[data.targets[i]] * len(e.signal_spans) for i, e in zip(indices, exs)]
        batch["signal_latents"] = [data.latents[i] for i in indices] if data.latents is not None else None
        batch["modality"] = modality
        return batch


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
        batch = model.on_device(source.examples(data.modality, list(range(start, min(start + batch_size, len(data))))))
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


def signal_nll(model, sets: dict[str, TargetSet], batch_size: int = 64) -> float:
    """Mean NLL of held-out answers "<caption> [SIG0..]": does the LLM ask for the right decoder?"""
    p = model.profile
    source = SignalBatches(sets, model.tokenizer, model.signal, p.llm.template, batch_size, p.llm.max_length)
    values = []
    for m, data in source.sets.items():
        for start in range(0, len(data), batch_size):
            values.append(answer_nll(model, [source.examples(m, list(range(start, min(start + batch_size, len(data)))))]).mean().item())
    return float(np.mean(values))


def make_eval_fn(sets: dict[str, TargetSet]):
    def evaluate(model) -> dict:
        return {"heldout_nll": signal_nll(model, sets), **alignment_report(model, sets)}

    return evaluate


def batches(model, train: dict[str, TargetSet]) -> SignalBatches:
    """The stage's batch source, at the stage's own batch size (`train.stage_overrides["2"]`)."""
    p = model.profile
    return SignalBatches(train, model.tokenizer, model.signal, p.llm.template, p.train.for_stage("2").batch_size,
                         p.llm.max_length, p.seed)


def run(model, train: dict[str, TargetSet], test: dict[str, TargetSet], decoders=None, out_dir: str | None = None,
        steps: int | None = None, resume: bool = False, progress: bool = True):
    """Train stage 2 on `train`, evaluating on `test`; returns the TrainResult (first/last evals hold
    distance and retrieval). With the optional denoising loss, `decoders` must be given and the
    sets must carry media latents (tiny/data.attach_latents)."""
    if model.profile.train.for_stage("2").denoising_loss:
        model.decoders = decoders
    trainer = Trainer(model, "2", batches(model, train), model.profile.train, out_dir=out_dir, steps=steps,
                      eval_fn=make_eval_fn(test), progress=progress)
    return trainer.train(resume=resume)
