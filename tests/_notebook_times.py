"""The notebooks' stated run times, and the rule a measured time must keep (issue 19: one source for times).

The README's notebook table states each chapter's time and its solutions' time ("~35 s / ~32 s"); each
notebook's header states the chapter's own ("| time, CPU ... | about 35 s to run ..."). Both must equal,
and `make test` holds them against the time nbval actually takes to run each notebook, kernel start
included (the root conftest.py), and never over 60 s. Machines of the same kind differ in speed (a CI run
measured every notebook 0-40 % slower than the run the README was written from), so a stated time is
held against the measured one after scaling by the run's machine factor, the median of measured/stated
over the notebooks that take 10 s or more: a uniformly slower machine passes, one notebook that drifted
from the rest does not. Allowed: 30 % (or 3 s, for the notebooks that take seconds, where the kernel
start alone varies by that much). benchmarks/update_notebook_times.py writes the last measured times
into the README and the headers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 60.0
TOLERANCE = 0.30
FLOOR_S = 3.0
FACTOR_FROM_S = 10.0  # notebooks shorter than this are mostly kernel start: they say little of the machine

_ROW = re.compile(r"^\| (\d\d) \| \[(\w+)\]\(notebooks/\w+\.ipynb\) \|.*\| ~(\d+) s / ~(\d+) s \|", re.M)
_HEADER = re.compile(r"\| time, CPU[^|]*\| about (\d+) s")


def readme_times(readme: str | None = None) -> dict[str, float]:
    """{notebook stem: stated seconds} from the README table, solutions notebooks included."""
    readme = (REPO / "README.md").read_text() if readme is None else readme
    times = {}
    for _, stem, chapter_s, solutions_s in _ROW.findall(readme):
        times[stem] = float(chapter_s)
        times[f"{stem}_solutions"] = float(solutions_s)
    return times


def header_time(path: Path) -> float | None:
    """The time a notebook's first cell states, or None where it states none."""
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    m = _HEADER.search(first)
    return float(m.group(1)) if m else None


def agrees(stated: float, measured: float, factor: float = 1.0) -> bool:
    expected = stated * factor
    return abs(measured - expected) <= max(TOLERANCE * expected, FLOOR_S)


def machine_factor(measured: dict[str, float], stated: dict[str, float]) -> float:
    """How much slower (> 1) or faster this run's machine is than the one the README was measured on:
    the median of measured/stated over the notebooks stated at FACTOR_FROM_S or more; 1 with fewer than 3."""
    ratios = sorted(measured[s] / stated[s] for s in measured if stated.get(s, 0) >= FACTOR_FROM_S)
    if len(ratios) < 3:
        return 1.0
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def problems(measured: dict[str, float], stated: dict[str, float]) -> list[str]:
    """What is wrong with the measured times {stem: s}: over the limit, or not what is stated
    (scaled by the machine factor of this run)."""
    factor = machine_factor(measured, stated)
    out = []
    for stem, s in sorted(measured.items()):
        if s > LIMIT_S:
            out.append(f"{stem} took {s:.1f} s, over the {LIMIT_S:.0f} s every notebook must keep")
        if stem not in stated:
            out.append(f"{stem} took {s:.1f} s and the README states no time for it")
        elif not agrees(stated[stem], s, factor):
            out.append(f"{stem} took {s:.1f} s; the README states ~{stated[stem]:.0f} s, "
                       f"~{factor * stated[stem]:.0f} s on this run's machine (x{factor:.2f}; "
                       f"allowed: {TOLERANCE:.0%} or {FLOOR_S:.0f} s)")
    return out
