"""Chapters 02, 04 and 06: the training loop with nothing hidden, which chapter 02 writes by hand.

`Trainer` (trainer.py) adds what a real run needs: Accelerate (one or many GPUs, mixed precision),
gradient accumulation, checkpoints that survive a kill, resuming, evaluation, logs and plots. Under
all that, one optimizer update is the few lines of `train_loop`: a loss, `backward`, gradient
clipping, AdamW at the scheduled learning rate. With the same parameters, batches and settings the
two give the same losses and the same weights (tests/test_training_loop.py; chapter 02 checks it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from nextgpt_mini.config import TrainConfig


def lr_at(step: int, steps: int, cfg: TrainConfig) -> float:
    """The learning rate of update `step` (0-based): linear warmup, then cosine decay to zero."""
    warmup = int(cfg.warmup_ratio * steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_loop(params: Sequence[nn.Parameter], loss_fn: Callable[[dict], torch.Tensor],
               batch_at: Callable[[int], dict], steps: int, cfg: TrainConfig) -> list[float]:
    """Train `params` for `steps` updates of `loss_fn(batch_at(step))`; returns the loss of each step."""
    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, cfg)
        loss = loss_fn(batch_at(step))
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
