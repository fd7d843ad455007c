"""How long one periodic checkpoint takes, and how big it is, at a profile's real trainable size.

A dry run: no hub weights. What a checkpoint holds depends only on what trains (`scaling.params.
full_size_table`: LoRA, projectors, signal-token rows at their exact sizes): their fp32 values, AdamW's
two moments and the small scheduler / RNG / history files. This script makes random tensors of
those sizes, takes one optimizer step so that AdamW's state exists, and times
`Trainer.save_checkpoint` writing to --out (put it where your runs go, e.g. a mounted Google Drive).

    python benchmarks/checkpoint_time.py --profile colab --stage 3 --out /content/drive/MyDrive/ckpt-test
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from nextgpt_mini.profiles import load_profile
from nextgpt_mini.scaling.params import full_size_table
from nextgpt_mini.training.stages import STAGE_TRAINS
from nextgpt_mini.training.trainer import Trainer

# full_size_table's rows -> the trainable groups of NextGPT.trainable_groups
GROUP_OF_ROW = {"LoRA": "lora", "input projector": "input_projector", "output projectors": "output_projectors",
                "signal-token rows": "signal_rows"}
CHUNK = 4 * 1024 * 1024  # parameters per tensor: big tensors, as the real projector matrices are


class SameSizeSystem(nn.Module):
    """Trainable groups of exactly the sizes the profile trains in `stage`, random values."""

    def __init__(self, profile: str, stage: str):
        super().__init__()
        self.groups: dict[str, list[nn.Parameter]] = {}
        self.params = nn.ParameterList()
        for row in full_size_table(profile, stage):
            group = GROUP_OF_ROW.get(row.module)
            if group is None or group not in STAGE_TRAINS[stage] or not row.trainable:
                continue
            sizes = [CHUNK] * (row.trainable // CHUNK) + ([row.trainable % CHUNK] if row.trainable % CHUNK else [])
            made = [nn.Parameter(torch.randn(n)) for n in sizes]
            self.params.extend(made)
            self.groups[group] = made

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.groups


class NoBatches:
    def batch(self, step, rank=0, world=1):
        raise AssertionError("the checkpoint benchmark trains nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="colab")
    parser.add_argument("--stage", default="3")
    parser.add_argument("--out", default=None, help="where to write (default: a temporary folder on this disk)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    system = SameSizeSystem(args.profile, args.stage)
    n = sum(p.numel() for p in system.parameters())
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ckpt-bench-"))
    trainer = Trainer(system, args.stage, NoBatches(), load_profile(args.profile).train, out_dir=out, steps=1, progress=False)
    for p in system.parameters():  # one optimizer step, so that AdamW's two moments exist
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        folder = trainer.save_checkpoint()
        seconds.append(time.perf_counter() - start)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"profile {args.profile}, stage {args.stage}: {n:,} trained parameters; one checkpoint "
          f"{size / 1e9:.2f} GB, written in {min(seconds):.1f} s (best of {args.repeat}; "
          f"all {', '.join(f'{s:.1f}' for s in seconds)} s) to {out}")
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
