"""Chapters 00-09: small helpers for the notebooks: where the data is, versions, and `check()`.

Exercise checks never raise: an exercise left as a stub reports "not done yet", so a notebook
still runs top to bottom; the solutions notebook runs the same checks and must print "ok".
Each chapter's checks are in `course/exNN.py`; this module stays light (no torch), as `ui` imports it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

NOT_DONE = "not done yet"


def repo_root() -> Path:
    """The repository folder (the one holding data_samples/), found from the package location."""
    here = Path(__file__).resolve().parents[2]
    if (here / "data_samples").is_dir():
        return here
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "data_samples").is_dir():
            return folder
    raise FileNotFoundError("data_samples/ not found: run from the repository or `nextgpt-mini make-samples`")


def data_samples_dir() -> Path:
    return repo_root() / "data_samples"


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing diffusers alone takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate", "tokenizers", "nextgpt-mini"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def check(exercise: str, answer: Any, test: Callable[[Any], Any]) -> str:
    """Run `test(answer)`; print and return "ok", "not done yet" or what is wrong."""
    if answer is None or answer is Ellipsis:
        verdict = NOT_DONE
    else:
        try:
            result = test(answer)
            verdict = "ok" if result in (True, None) else f"not yet: {result}"
        except NotImplementedError:
            verdict = NOT_DONE
        except AssertionError as e:
            verdict = f"not yet: {e}" if str(e) else "not yet"
        except Exception as e:  # a student's bug should not stop the notebook
            verdict = f"not yet: {type(e).__name__}: {e}"
    print(f"exercise {exercise}: {verdict}")
    return verdict
