"""Chapter 00: exercise checks for notebooks/00_setup_and_tour.ipynb.

The checks: the colab profile, the MosIT task counts, the pitch of a held-out object's sound.
Each `ex00_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import collections
import json

from nextgpt_mini.course import check, data_samples_dir
from nextgpt_mini.tiny.world import PITCH_HZ


def ex00_1(profile) -> None:
    """The colab profile with LoRA rank 8 and alpha 16, built from `--set`-style strings."""

    def test(p):
        assert p.name == "colab", f"profile is {p.name!r}, expected 'colab'"
        assert (p.lora.r, p.lora.alpha) == (8, 16), f"lora r/alpha are {p.lora.r}/{p.lora.alpha}"

    check("00.1", profile, test)


def ex00_2(counts) -> None:
    """Dialogues per task in data_samples/mosit/mosit.json, as {task: count}."""

    def test(c):
        data = json.loads((data_samples_dir() / "mosit" / "mosit.json").read_text())
        expected = dict(collections.Counter(d["task"] for d in data))
        assert dict(c) == expected, f"got {dict(c)}"

    check("00.2", counts, test)


def ex00_3(pitch_hz) -> None:
    """The pitch, in Hz, of a small blue circle's sound (a held-out object), found with an FFT."""

    def test(f):
        assert abs(float(f) - PITCH_HZ["blue"]) < 5, f"{float(f):.1f} Hz is not the blue pitch"

    check("00.3", pitch_hz, test)
