"""Times every notebook that nbval runs (`make test`) and fails the session when one takes over 60 s
or differs from the time the README states for it by more than the rule in tests/_notebook_times.py.
A notebook counts only when all its cells ran, so `pytest --nbval-lax nb.ipynb -k 'Cell 3'` is not timed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tests._notebook_times import LIMIT_S, machine_factor, problems, readme_times

_seconds: dict[str, float] = defaultdict(float)
_cells: dict[str, int] = defaultdict(int)
_reported: dict[str, set] = defaultdict(set)


def _notebook(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return Path(path).stem if path.endswith(".ipynb") else None


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        stem = _notebook(item.nodeid)
        if stem:
            _cells[stem] += 1


def pytest_runtest_logreport(report):
    stem = _notebook(report.nodeid)
    if stem:  # setup (the first cell's holds the kernel start), call and teardown
        _seconds[stem] += report.duration
        _reported[stem].add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    measured = {s: t for s, t in _seconds.items() if len(_reported[s]) == _cells[s]}
    if not measured:
        return
    out = Path(session.config.rootpath) / "outputs" / "notebook_times.json"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({s: round(t, 1) for s, t in sorted(measured.items())}, indent=1) + "\n")
    tmp.replace(out)
    stated = readme_times()
    found = problems(measured, stated)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("")
        reporter.write_line(f"notebook times (s, limit {LIMIT_S:.0f}): "
                            + ", ".join(f"{s[:2]}{'s' if s.endswith('solutions') else ''} {t:.1f}"
                                        for s, t in sorted(measured.items()))
                            + f"; machine factor x{machine_factor(measured, stated):.2f} -> {out}")
        for p in found:
            reporter.write_line(f"NOTEBOOK TIME: {p}", red=True)
    if found and session.exitstatus == 0:
        session.exitstatus = 1
