"""Write the notebook times that `make test` measured (outputs/notebook_times.json, by the root
conftest.py) into the README's notebook table and each chapter's header, rounded to whole seconds.

    python benchmarks/update_notebook_times.py          # after a `make test` (or its nbval half)

`make test` then holds them against every later run (tests/_notebook_times.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    source = REPO / "outputs" / "notebook_times.json"
    if not source.is_file():
        print(f"{source} not found: run `make test` first (its nbval run writes it)", file=sys.stderr)
        return 1
    measured = json.loads(source.read_text())
    readme_path = REPO / "README.md"
    readme = readme_path.read_text()

    def row(m: re.Match) -> str:
        stem = m.group(2)
        chapter, solutions = measured.get(stem), measured.get(f"{stem}_solutions")
        if chapter is None or solutions is None:
            return m.group(0)
        return m.group(1) + f"~{round(chapter)} s / ~{round(solutions)} s |"

    readme = re.sub(r"^(\| \d\d \| \[(\w+)\]\(notebooks/\w+\.ipynb\) \|.*\| )~\d+ s / ~\d+ s \|", row, readme, flags=re.M)
    readme_path.write_text(readme)
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        if path.stem not in measured:
            continue
        nb = json.loads(path.read_text())
        first = "".join(nb["cells"][0]["source"])
        new = re.sub(r"(\| time, CPU[^|]*\| about )\d+( s)", rf"\g<1>{round(measured[path.stem])}\g<2>", first, count=1)
        if new != first:
            nb["cells"][0]["source"] = new.splitlines(True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"times from {source.relative_to(REPO)} written to README.md and the notebooks' headers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
