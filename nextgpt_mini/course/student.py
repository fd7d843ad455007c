"""Chapters 02-07: the student's own NExT-GPT, carried from chapter to chapter.

Chapter 02 saves the system after stage 1, 04 after stage 2, 06 after stage 3 (`save_student`);
04, 06 and 07 start from the one before (`load_student`), so the system chapter 07 talks to is the
one the student trained. A chapter run alone (or on a fresh Colab runtime) finds no such folder and
starts from the shipped tiny system's weights for the stages before it instead, and says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nextgpt_mini.config import ProfileConfig
from nextgpt_mini.course import repo_root
from nextgpt_mini.models.nextgpt import NextGPT, read_saved_config

SAVED_BY = {"1": "02", "2": "04", "3": "06"}  # the chapter that trains and saves each stage
# What each stage adds to the system (training/stages.py), cumulatively
GROUPS_AFTER = {"1": ("input_projector",), "2": ("input_projector", "output_projectors", "signal_rows")}
SHIPPED = "package:tiny_system"


def student_folder(after: str) -> Path:
    if after not in SAVED_BY:
        raise ValueError(f"after={after!r}: expected the stage the system has been trained through, 1, 2 or 3")
    # NEXTGPT_MINI_STUDENT_DIR moves it (the colab dry run keeps its systems out of the tiny chain's way)
    root = Path(os.environ["NEXTGPT_MINI_STUDENT_DIR"]) if os.environ.get("NEXTGPT_MINI_STUDENT_DIR") else \
        repo_root() / "outputs" / "student"
    return root / f"after_stage{after}"


def save_student(model: NextGPT, after: str) -> Path:
    """Save the system trained through stage `after` where the next chapter looks for it."""
    folder = model.save_pretrained(student_folder(after))
    print(f"your system after stage {after} is saved in {_shown(folder)}")
    return folder


def saved_student(profile: ProfileConfig, after: str) -> Path | None:
    """The folder of the student's system after stage `after` when it holds one of `profile`
    (a run at another profile, e.g. the colab dry run, saves to the same place), else None."""
    folder = student_folder(after)
    if not (folder / "config.json").is_file():
        return None
    _, saved = read_saved_config(folder)
    if saved.name != profile.name:
        print(f"{_shown(folder)} holds a {saved.name} system, not {profile.name}: not used")
        return None
    return folder


def load_student(profile: ProfileConfig, after: str) -> NextGPT:
    """The student's system trained through stage `after`, or the shipped weights of those stages."""
    folder = saved_student(profile, after)
    if folder is not None:
        print(f"starting from your system after stage {after} ({_shown(folder)}, saved by chapter {SAVED_BY[after]})")
        return NextGPT.from_pretrained(folder)
    folder = student_folder(after)
    where = f"chapter {SAVED_BY[after]} saves it in {_shown(folder)}; run it first to continue from your own"
    if profile.name != "tiny":
        print(f"no system after stage {after} ({where}): starting from a fresh {profile.name} system")
        return NextGPT.from_profile(profile)
    shipped = NextGPT.from_pretrained(SHIPPED)
    if after == "3":
        print(f"no system after stage 3 ({where}): using the shipped tiny system instead")
        return shipped
    model = NextGPT.from_profile(profile)
    groups = GROUPS_AFTER[after]
    mine, theirs = model.trainable_groups(), shipped.trainable_groups()
    with torch.no_grad():
        for group in groups:
            for p, q in zip(mine[group], theirs[group], strict=True):
                p.copy_(q)
    print(f"no system after stage {after} ({where}): starting from the shipped tiny system's "
          f"{', '.join(groups)} instead (trained through all three stages)")
    return model


def _shown(folder: Path) -> str:
    try:
        return str(folder.relative_to(repo_root()))
    except ValueError:
        return str(folder)
