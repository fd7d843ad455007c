"""Chapters 02, 04 and 06: the trainer, one loop for every stage, on Accelerate (CPU, one GPU or many, unchanged).

A stage *declares* what it trains (`training/stages.py`). The trainer freezes everything, unfreezes
exactly the declared groups, and refuses to start if any other parameter still asks for a
gradient: nothing is trained by surprise (the original code left 2 x 131 M embedding rows
trainable without saying so).

Data comes from a `BatchSource` whose `batch(step)` is a pure function of the step. That makes a
resumed run see the very batches the uninterrupted run would have seen, so with the optimizer,
scheduler and RNG states restored, the resumed loss curve equals the uninterrupted one.

Checkpoints hold only what trains (safetensors) plus optimizer / scheduler / RNG state; they are
written to a temporary folder and swapped in, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from nextgpt_mini.config import TrainConfig
from nextgpt_mini.constants import CHECKPOINT
from nextgpt_mini.training.stages import STAGE_TRAINS
from nextgpt_mini.utils import atomic_folder, atomic_path


class BatchSource(Protocol):
    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, Any]: ...


class TrainableSystem(Protocol):
    def trainable_groups(self) -> dict[str, list[nn.Parameter]]: ...
    def stage_loss(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]: ...


@dataclass
class TrainResult:
    stage: str
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def first_eval(self) -> dict:
        return self.evals[0] if self.evals else {}

    @property
    def last_eval(self) -> dict:
        return self.evals[-1] if self.evals else {}

    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]


def select_trainable(system: nn.Module, stage: str) -> dict[str, nn.Parameter]:
    """Freeze `system`, unfreeze the stage's declared groups, and return {name: parameter}.

    Raises if a declared group is missing or if anything undeclared still requires a gradient.
    """
    if stage not in STAGE_TRAINS:
        raise ValueError(f"unknown stage {stage!r}: expected one of {', '.join(STAGE_TRAINS)}")
    groups = system.trainable_groups()
    system.requires_grad_(False)
    declared: set[int] = set()
    for group in STAGE_TRAINS[stage]:
        params = groups.get(group)
        if not params:
            raise ValueError(f"stage {stage} trains {group!r}, but the model has no such parameters")
        for p in params:
            p.requires_grad_(True)
            declared.add(id(p))
    named = {n: p for n, p in system.named_parameters() if p.requires_grad}
    stray = [n for n, p in named.items() if id(p) not in declared]
    if stray:
        raise RuntimeError(f"stage {stage} would train undeclared parameters: {stray[:5]}")
    return named


class Trainer:
    """Train one stage of a system. `eval_fn(system) -> dict` runs on held-out data."""

    def __init__(
        self,
        system: nn.Module,
        stage: str,
        source: BatchSource,
        cfg: TrainConfig,
        out_dir: str | os.PathLike | None = None,
        steps: int | None = None,
        eval_fn: Callable[[nn.Module], dict] | None = None,
        checkpoint_every: int | None = None,
        progress: bool = True,
        log_every: int = 1,
    ):
        from accelerate import Accelerator, DistributedDataParallelKwargs

        cfg = cfg.for_stage(stage)
        self.system, self.stage, self.source, self.cfg = system, stage, source, cfg
        self.steps = steps if steps is not None else int(cfg.steps[stage])
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        self.out_dir = Path(out_dir) if out_dir else None
        self.eval_fn = eval_fn
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.log_every = log_every
        use_cuda = torch.cuda.is_available()
        # Stages 2 and 3 take one modality per batch, so the other modalities' output projectors get
        # no gradient in that step: DDP must be told, or it waits for them forever.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=stage != "1")
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.grad_accum,
            mixed_precision=cfg.mixed_precision if use_cuda else "no",
            cpu=not use_cuda,
            kwargs_handlers=[ddp],
        )
        self.named = select_trainable(system, stage)
        self.optimizer = torch.optim.AdamW(
            list(self.named.values()), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
        self.scheduler = warmup_cosine(self.optimizer, warmup=int(cfg.warmup_ratio * self.steps), total=self.steps)
        if cfg.gradient_checkpointing and hasattr(system, "enable_gradient_checkpointing"):
            system.enable_gradient_checkpointing()
        # The scheduler is not handed to Accelerate: it would step once per process, while here one
        # step is one update of the global batch whatever the number of processes.
        self.model, self.optimizer = self.accelerator.prepare(system, self.optimizer)
        self.step = 0
        self.history: list[dict] = []
        self.evals: list[dict] = []

    # ---------------------------------------------------------------- the loop
    def train(self, resume: bool = False) -> TrainResult:
        from tqdm.auto import tqdm

        start = time.perf_counter()
        if resume:
            self.load_checkpoint()
        if self.step == 0 and self.eval_fn is not None:
            self._evaluate()
        acc = self.accelerator
        bar = tqdm(total=self.steps, initial=self.step, desc=f"stage {self.stage}", disable=not self.progress or not acc.is_main_process)
        try:
            while self.step < self.steps:
                self.model.train()
                losses: dict[str, float] = {}
                for micro in range(self.cfg.grad_accum):
                    batch = self.source.batch(self.step * self.cfg.grad_accum + micro, acc.process_index, acc.num_processes)
                    with acc.accumulate(self.model):
                        out = self._loss(batch)
                        acc.backward(out["loss"])
                        if acc.sync_gradients and self.cfg.grad_clip:
                            acc.clip_grad_norm_(list(self.named.values()), self.cfg.grad_clip)
                        self.optimizer.step()
                        if acc.sync_gradients:  # one schedule step per optimizer update
                            self.scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    for k, v in out.items():  # logged as the global batch's: the mean over processes
                        losses[k] = losses.get(k, 0.0) + float(acc.reduce(v.detach(), "mean")) / self.cfg.grad_accum
                self.step += 1
                record = {"step": self.step, "lr": self.scheduler.get_last_lr()[0], **losses}
                self.history.append(record)
                self._log(record)
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.3f}")
                if self.eval_fn is not None and (self.step % self.cfg.eval_every == 0 or self.step == self.steps):
                    self._evaluate()
                if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.steps:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            bar.close()
            if self.out_dir is not None:
                self.save_checkpoint()
                print(f"interrupted at step {self.step}: checkpoint saved in {self.out_dir / CHECKPOINT}; continue with --resume")
            raise
        bar.close()
        if self.out_dir is not None:
            self.save_checkpoint()
            self.plot()
        self.model.eval()
        return TrainResult(self.stage, self.step, time.perf_counter() - start, self.history, self.evals, self.out_dir)

    def _loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        # Through the DDP wrapper when there are several processes (that is what synchronises the
        # gradients); straight to stage_loss otherwise, so any TrainableSystem works on one process.
        if self.accelerator.num_processes > 1:
            return self.model(batch, self.stage)
        return _unwrap(self.model).stage_loss(batch, self.stage)

    def _evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            result = {"step": self.step, **self.eval_fn(_unwrap(self.model))}
        self.evals.append(result)
        self._log({"eval": result})

    def _log(self, record: dict) -> None:
        if self.out_dir is None or self.step % self.log_every and "eval" not in record:
            return
        if self.accelerator.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write trainable weights + optimizer/scheduler/RNG state; swap the folder in atomically."""
        from safetensors.torch import save_file

        assert self.out_dir is not None
        target = self.out_dir / CHECKPOINT
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            with atomic_folder(target) as tmp:
                weights = {n: p.detach().to("cpu").contiguous() for n, p in self.named.items()}
                save_file(weights, tmp / "trainable.safetensors", metadata={"stage": self.stage, "step": str(self.step)})
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
                torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
                state = {"stage": self.stage, "step": self.step, "steps": self.steps, "history": self.history,
                         "evals": self.evals, "world_size": self.accelerator.num_processes}
                (tmp / "trainer_state.json").write_text(json.dumps(state))
        self.accelerator.wait_for_everyone()
        return target

    def load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        if self.out_dir is None:
            raise ValueError("--resume needs --out, the folder that holds the checkpoint")
        folder = self.out_dir / CHECKPOINT
        if not folder.is_dir() and (self.out_dir / f".{CHECKPOINT}.old").is_dir():
            folder = self.out_dir / f".{CHECKPOINT}.old"  # a crash between the two renames
        if not (folder / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{folder}: no checkpoint to resume from")
        state = json.loads((folder / "trainer_state.json").read_text())
        if state["stage"] != self.stage:
            raise ValueError(f"{folder}: the checkpoint is from stage {state['stage']}, not stage {self.stage}")
        weights = load_file(folder / "trainable.safetensors")
        missing = sorted(set(self.named) - set(weights))
        if missing:
            raise ValueError(f"{folder}: the checkpoint lacks trainable weights {missing[:3]}")
        with torch.no_grad():
            for name, p in self.named.items():
                if weights[name].shape != p.shape:
                    raise ValueError(f"{folder}: {name} has shape {tuple(weights[name].shape)}, expected {tuple(p.shape)}")
                p.copy_(weights[name].to(p.device, p.dtype))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True)["torch"])
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        # Keep the metrics log in step with the restored history (it may hold steps past the checkpoint).
        if self.out_dir is not None and self.accelerator.is_main_process:
            with open(self.out_dir / "metrics.jsonl", "w") as f:
                for record in self.history:
                    f.write(json.dumps(record) + "\n")

    def plot(self) -> Path | None:
        """Save the loss curve as loss.png next to the metrics log."""
        if self.out_dir is None or not self.accelerator.is_main_process or not self.history:
            return None
        return plot_history(self.history, self.out_dir / "loss.png", title=f"stage {self.stage}")


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def warmup_cosine(optimizer, warmup: int, total: int, floor: float = 0.0):
    """Linear warmup to the peak lr, then cosine decay to `floor` x peak."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def plot_history(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    # A bare Figure, not pyplot: no backend switch (which would turn off a notebook's inline
    # plots) and no global figure state.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    # keys may come and go (stage 2 logs one modality's distance per step): plot each where present
    keys = sorted({k for h in history for k in h} - {"step", "lr"})
    for key in keys:
        points = [(h["step"], h[key]) for h in history if key in h]
        ax.plot(*zip(*points), label=key, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return Path(path)
