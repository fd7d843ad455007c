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
Besides the one at the end (and on Ctrl-C), periodic ones every `train.checkpoint_every` steps or
`train.checkpoint_minutes` minutes survive a SIGKILL; `checkpoints.py` says where they live.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from nextgpt_mini.checkpoints import complete_checkpoints, periodic_folder, prune_periodic
from nextgpt_mini.config import TrainConfig
from nextgpt_mini.constants import CHECKPOINT
from nextgpt_mini.training.stages import STAGE_TRAINS
from nextgpt_mini.utils import atomic_folder, atomic_path, disk_full_error, save_safetensors, save_torch, write_file


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
        self.eval_fn = eval_fn if cfg.eval_every > 0 else None  # train.eval_every=0: no held-out evaluation
        self.checkpoint_every = cfg.checkpoint_every if checkpoint_every is None else checkpoint_every
        self.checkpoint_seconds = 60.0 * cfg.checkpoint_minutes
        self.keep_checkpoints = cfg.keep_checkpoints
        if self.checkpoint_every < 0 or self.checkpoint_seconds < 0 or self.keep_checkpoints < 1:
            raise ValueError("train.checkpoint_every and train.checkpoint_minutes must be >= 0 (0: off) and "
                             f"train.keep_checkpoints >= 1; got {self.checkpoint_every}, {cfg.checkpoint_minutes}, "
                             f"{self.keep_checkpoints}")
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
        self._last_save = time.perf_counter()
        self.history: list[dict] = []
        self.evals: list[dict] = []

    # ---------------------------------------------------------------- the loop
    def train(self, resume: bool = False) -> TrainResult:
        from tqdm.auto import tqdm

        start = self._last_save = time.perf_counter()
        if resume:
            folder = self.load_checkpoint()
            if self.accelerator.is_main_process:
                print(f"resuming stage {self.stage} from {folder} at step {self.step} of {self.steps}", flush=True)
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
                if self._periodic_checkpoint_due():
                    self.save_checkpoint(periodic_folder(self.out_dir, self.step))
                    if acc.is_main_process:
                        prune_periodic(self.out_dir, self.keep_checkpoints)
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
            log = self.out_dir / "metrics.jsonl"
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:
                raise (disk_full_error(err, log, "log") or err) from err

    # ---------------------------------------------------------------- checkpoints
    def _periodic_checkpoint_due(self) -> bool:
        if self.out_dir is None or self.step >= self.steps:
            return False  # the end of the run saves anyway
        due = bool(self.checkpoint_every) and self.step % self.checkpoint_every == 0
        if self.checkpoint_seconds:
            due = due or time.perf_counter() - self._last_save >= self.checkpoint_seconds
            if self.accelerator.num_processes > 1:  # clocks differ: rank 0 decides for all
                from accelerate.utils import broadcast_object_list

                due = broadcast_object_list([due])[0]
        return due

    def save_checkpoint(self, target: Path | None = None) -> Path:
        """Write trainable weights + optimizer/scheduler/RNG state into `target` (default:
        OUT/checkpoint), swapped in atomically; every file is fsynced before the swap."""
        assert self.out_dir is not None
        target = target or self.out_dir / CHECKPOINT
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            with atomic_folder(target) as tmp:
                weights = {n: p.detach().to("cpu").contiguous() for n, p in self.named.items()}
                save_safetensors(weights, tmp / "trainable.safetensors", {"stage": self.stage, "step": str(self.step)}, sync=True)
                save_torch(self.optimizer.state_dict(), tmp / "optimizer.pt", sync=True)
                save_torch(self.scheduler.state_dict(), tmp / "scheduler.pt", sync=True)
                save_torch(rng_state(), tmp / "rng.pt", sync=True)
                state = {"stage": self.stage, "step": self.step, "steps": self.steps, "history": self.history,
                         "evals": self.evals, "world_size": self.accelerator.num_processes}
                # written last: a folder with trainer_state.json is a complete checkpoint
                write_file(tmp / "trainer_state.json", json.dumps(state).encode(), sync=True)
        self.accelerator.wait_for_everyone()
        self._last_save = time.perf_counter()
        return target

    def load_checkpoint(self) -> Path:
        """Restore the newest complete checkpoint in OUT (end-of-run or periodic); returns its folder.

        A newest one that cannot be read (a damaged disk) is reported and the next newest taken."""
        if self.out_dir is None:
            raise ValueError("--resume needs --out, the folder that holds the checkpoint")
        found = complete_checkpoints(self.out_dir)
        if not found:
            raise FileNotFoundError(f"{self.out_dir}: no checkpoint to resume from (expected {self.out_dir / CHECKPOINT} "
                                    f"or {self.out_dir}/checkpoints/step-N with a trainer_state.json)")
        first_error = None
        for step, folder in found:
            try:
                self._restore(folder)
                return folder
            except (OSError, RuntimeError, KeyError, json.JSONDecodeError, SafetensorError) as err:
                first_error = first_error or err
                warnings.warn(f"{folder}: unreadable checkpoint of step {step} ({type(err).__name__}: {err}); "
                              "trying an older one", stacklevel=2)
        raise first_error

    def _restore(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((folder / "trainer_state.json").read_text())
        if state["stage"] != self.stage:
            raise ValueError(f"{folder}: the checkpoint is from stage {state['stage']}, not stage {self.stage}")
        weights = load_file(folder / "trainable.safetensors")
        missing = sorted(set(self.named) - set(weights))
        if missing:
            raise ValueError(f"{folder}: the checkpoint lacks trainable weights {missing[:3]}")
        for name, p in self.named.items():
            if weights[name].shape != p.shape:
                raise ValueError(f"{folder}: {name} has shape {tuple(weights[name].shape)}, expected {tuple(p.shape)}")
        optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
        scheduler = torch.load(folder / "scheduler.pt", weights_only=True)
        rng = torch.load(folder / "rng.pt", weights_only=True)
        # everything read: only now change the trainer, so a damaged file changes nothing
        with torch.no_grad():
            for name, p in self.named.items():
                p.copy_(weights[name].to(p.device, p.dtype))
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        set_rng_state(rng)
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        # Keep the metrics log in step with the restored history (it may hold steps past the checkpoint).
        if self.accelerator.is_main_process:
            with atomic_path(self.out_dir / "metrics.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(record) + "\n" for record in self.history))

    def plot(self) -> Path | None:
        """Save the loss curve as loss.png next to the metrics log."""
        if self.out_dir is None or not self.accelerator.is_main_process or not self.history:
            return None
        return plot_history(self.history, self.out_dir / "loss.png", title=f"stage {self.stage}")


def rng_state() -> dict:
    """Every random generator a step may draw from (dropout, samplers), in a form
    `torch.load(weights_only=True)` reads back."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:  # checkpoints written before these were saved hold the torch state only
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


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
