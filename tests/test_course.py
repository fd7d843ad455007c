import collections
import importlib
import json
import re
import subprocess
import sys

import pytest

from nextgpt_mini import load_profile
from nextgpt_mini.course import NOT_DONE, check, data_samples_dir, ex00, repo_root


def test_check_reports_not_done_ok_and_wrong(capsys):
    assert check("x.1", None, lambda a: True) == NOT_DONE
    assert check("x.2", 3, lambda a: None) == "ok"
    assert check("x.3", 3, lambda a: (_ for _ in ()).throw(AssertionError("too small"))) == "not yet: too small"
    assert check("x.4", 3, lambda a: 1 / 0).startswith("not yet: ZeroDivisionError")
    assert "exercise x.2: ok" in capsys.readouterr().out


def test_chapter_00_checks_accept_solutions_and_reject_wrong_answers(capsys):
    ex00.ex00_1(load_profile("colab", ["lora.r=8", "lora.alpha=16"]))
    ex00.ex00_1(load_profile("tiny", ["lora.r=8", "lora.alpha=16"]))
    data = json.loads((data_samples_dir() / "mosit" / "mosit.json").read_text())
    ex00.ex00_2(collections.Counter(d["task"] for d in data))
    ex00.ex00_2({"T->T": 1})
    ex00.ex00_3(698.0)
    ex00.ex00_3(440.0)
    ex00.ex00_3(None)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1][:7] for line in lines] == ["ok", "not yet", "ok", "not yet", "ok", "not yet", "not don"]


def test_repo_root_holds_data_samples():
    assert (repo_root() / "data_samples" / "images.json").is_file()


NOTEBOOKS = sorted([*(repo_root() / "notebooks").glob("*.ipynb"), *(repo_root() / "solutions").glob("*.ipynb")])
IMPORT = re.compile(r"^from nextgpt_mini\.course import (\w+) as exercises$", re.M)


def test_every_chapter_has_a_notebook_and_a_solutions_notebook():
    chapters = [f"{n:02d}" for n in range(11)]
    for folder in ("notebooks", "solutions"):
        assert sorted(p.name[:2] for p in NOTEBOOKS if p.parent.name == folder) == chapters, folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name[:2]}")
def test_notebook_imports_its_own_chapter_checks(path):
    """`from nextgpt_mini.course import exNN as exercises` names the notebook's chapter, and every
    `exercises.exNN_k` the notebook calls is defined there; every check there is called."""
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    chapter = path.name[:2]
    assert IMPORT.findall(code) == [f"ex{chapter}"], f"{path.name} should import ex{chapter} as exercises once"
    module = importlib.import_module(f"nextgpt_mini.course.ex{chapter}")
    called = set(re.findall(r"\bexercises\.(\w+)", code))
    missing = sorted(name for name in called if not callable(getattr(module, name, None)))
    assert not missing, f"{path.name} calls {missing}, not in {module.__name__}"
    defined = {name for name in vars(module) if re.fullmatch(rf"ex{chapter}_\d+", name)}
    assert called == defined, f"{path.name} calls {sorted(called)}; {module.__name__} has {sorted(defined)}"


def test_course_package_stays_light():
    """ui imports nextgpt_mini.course: it must not pull in the chapters' checks or torch."""
    code = ("import sys, nextgpt_mini.course; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('nextgpt_mini.course.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_readme_states_a_time_for_every_notebook_and_each_header_states_the_same(repo):
    """The README table and the notebooks' headers state one time each; the root conftest.py holds
    them against what nbval measures in `make test` (tests/_notebook_times.py)."""
    from tests._notebook_times import LIMIT_S, header_time, machine_factor, problems, readme_times

    stated = readme_times()
    stems = {p.stem for folder in ("notebooks", "solutions") for p in (repo / folder).glob("*.ipynb")}
    assert set(stated) == stems, sorted(stems ^ set(stated))
    for path in sorted((repo / "notebooks").glob("*.ipynb")):
        assert header_time(path) == stated[path.stem], (path.name, header_time(path), stated[path.stem])
    assert all(s < LIMIT_S for s in stated.values())
    # the rule can fail: too slow, too far from the stated time, unstated
    assert problems({"02_input_projection_alignment": stated["02_input_projection_alignment"]}, stated) == []
    assert len(problems({"02_input_projection_alignment": 61.0}, stated)) == 2
    assert problems({"03_llm_lora_signal_tokens": 2 * stated["03_llm_lora_signal_tokens"] + 4}, stated)
    assert problems({"11_new": 1.0}, stated) == ["11_new took 1.0 s and the README states no time for it"]
    # a uniformly slower machine passes; one notebook drifting from the rest on it does not
    slower = {s: 1.35 * t for s, t in stated.items()}
    assert machine_factor(slower, stated) == pytest.approx(1.35)
    assert problems({s: t for s, t in slower.items() if t < LIMIT_S}, stated) == []
    slower["09_evaluation"] *= 1.5
    assert [p.split()[0] for p in problems(slower, stated) if "over the" not in p] == ["09_evaluation"]


CHECK_CALL = re.compile(r"\bexercises\.ex(\d\d)_(\d)\(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name[:2]}")
def test_committed_runs_show_each_stub_not_done_and_each_solution_ok(path):
    """In the committed outputs (a clean top-to-bottom run): a chapter's every exercise cell says
    "not done yet" (its stub is rejected) and the solutions notebook gets "ok" for every exercise."""
    verdicts: dict[str, list[str]] = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        printed = "".join("".join(o["text"]) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        for chapter, k in CHECK_CALL.findall("".join(cell["source"])):
            verdicts[f"{chapter}.{k}"] = re.findall(rf"^exercise {chapter}\.{k}: (.*)$", printed, re.M)
    assert verdicts, f"{path.name} calls no exercise checks"
    for exercise, said in verdicts.items():
        if path.parent.name == "notebooks":
            assert said == ["not done yet"], (path.name, exercise, said)
        else:
            assert "ok" in said, (path.name, exercise, said)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name[:2]}")
def test_committed_outputs_hold_no_machine_paths(path, repo):
    """A Path left as a cell's last value printed this checkout's absolute folder into the committed
    notebook (chapters 02, 04, 06: `save_student`'s return value)."""
    nb = json.loads(path.read_text())
    printed = json.dumps([c.get("outputs", []) for c in nb["cells"] if c["cell_type"] == "code"])
    for marker in (str(repo), "PosixPath("):
        assert marker not in printed, f"{path.name}: an output shows {marker!r}"
