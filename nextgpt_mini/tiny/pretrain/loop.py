"""Chapters 01, 03, 04: the one loop that pretrains the tiny profile's encoder, LLM and CLAP text encoder.

The paper's ImageBind, Vicuna and CLAP arrive pretrained; the tiny profile trains stand-ins on the
toy world with the usual recipe (AdamW, linear warm-up then cosine decay, gradient clipping),
written once here. Each builder returns its measured numbers; `tiny/build.py` records them in
`assets/BUILD_RESULTS.md`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from nextgpt_mini.training.trainer import warmup_cosine
from nextgpt_mini.utils import ASSETS

Named = Sequence[tuple[str, torch.nn.Parameter]]


def train_loop(loss_fn: Callable[[], tuple[Tensor, dict[str, Tensor]]], params: Named, steps: int, lr: float, *,
               betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
               no_decay: Callable[[str, torch.nn.Parameter], bool] | None = None, warmup: int = 0,
               floor: float = 1.0, grad_clip: float | None = None, desc: str = "pretrain",
               progress: bool = True) -> list[dict]:
    """`steps` AdamW steps on `loss_fn()` (loss, named parts); returns one record per step.

    `no_decay(name, p)` picks the parameters kept out of weight decay (None: one group, all with
    `weight_decay`). The lr warms up linearly over `warmup` steps, then follows a cosine down to
    `floor` x lr (1.0: constant). Gradients are clipped to norm `grad_clip` (None: not clipped).
    """
    if steps <= 0:
        return []
    tensors = [p for _, p in params]
    if no_decay is None:
        opt = torch.optim.AdamW(tensors, lr=lr, betas=betas, weight_decay=weight_decay)
    else:
        exempt = [no_decay(n, p) for n, p in params]
        decay = [p for (_, p), e in zip(params, exempt) if not e]
        kept = [p for (_, p), e in zip(params, exempt) if e]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=lr, betas=betas)
    sched = warmup_cosine(opt, warmup=warmup, total=steps, floor=floor)
    history = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        loss, parts = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(tensors, grad_clip)
        opt.step()
        sched.step()
        record = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
    return history


class EpochBatches:
    """Batches of indices into range(n): a fresh seeded permutation every epoch."""

    def __init__(self, n: int, batch: int, gen: torch.Generator) -> None:
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self.order, self.cursor = torch.randperm(n, generator=gen), 0

    def next(self) -> Tensor:
        if self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        return idx


def refuse_quick_build_into_package(out: str | Path, quick: bool) -> None:
    """A quick build makes throwaway weights: never let it replace a shipped asset."""
    if quick and Path(out).resolve().is_relative_to(ASSETS.resolve()):
        raise ValueError("a quick build makes throwaway weights; give it --out DIR instead of the package folder")


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """torch's deterministic algorithms inside the block; the old setting comes back."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
