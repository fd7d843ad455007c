"""Chapters 02, 06 and 08: where a `train` output folder keeps its checkpoints, and which one a resume takes.

    OUT/checkpoint/                 the end of the run (or of a Ctrl-C): what `--checkpoint OUT` loads
    OUT/checkpoints/step-00000100/  periodic checkpoints, the newest K kept (train.keep_checkpoints)
    OUT/.<name>.tmp/                a checkpoint being written (or left by a kill): never read

Every checkpoint folder is written whole into a temporary folder and renamed into place
(`utils.atomic_folder`), and its trainer_state.json says which step it holds. So a run killed at
any moment, during a checkpoint write included, leaves only complete checkpoints behind, and
`--resume` takes the one with the highest step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from nextgpt_mini.constants import CHECKPOINT

PERIODIC = "checkpoints"
_STEP = re.compile(r"step-(\d+)")
STATE = "trainer_state.json"


def periodic_folder(out_dir: str | os.PathLike, step: int) -> Path:
    return Path(out_dir) / PERIODIC / f"step-{step:08d}"


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """The step a checkpoint folder holds, or None if it is not a complete checkpoint."""
    try:
        state = json.loads((Path(folder) / STATE).read_text())
        return int(state["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def complete_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in a `train` output folder, newest first. At
    equal steps the end-of-run folder comes first; `.checkpoint.old` (left by a crash between
    the two renames of a swap) counts as a checkpoint too."""
    out = Path(out_dir)
    folders = [out / CHECKPOINT, out / f".{CHECKPOINT}.old"]
    if (out / PERIODIC).is_dir():
        folders += sorted(p for p in (out / PERIODIC).iterdir() if _STEP.fullmatch(p.name) and p.is_dir())
    found = [(step, rank, f) for rank, f in enumerate(folders) if (step := checkpoint_step(f)) is not None]
    return [(step, f) for step, _, f in sorted(found, key=lambda x: (-x[0], x[1]))]


def newest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    found = complete_checkpoints(out_dir)
    return found[0][1] if found else None


def prune_periodic(out_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints, and what killed writes left behind
    (temporary folders); returns what was deleted. Only the process that writes checkpoints calls it."""
    folder = Path(out_dir) / PERIODIC
    if not folder.is_dir():
        return []
    steps = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.fullmatch(p.name)) and p.is_dir())
    doomed = [p for _, p in steps[: max(len(steps) - keep, 0)]]
    doomed += [p for p in folder.iterdir() if p.name.startswith(".step-") and p.is_dir()]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
