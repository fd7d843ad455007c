import collections
import json

from nextgpt_mini import load_profile
from nextgpt_mini.course import exercises
from nextgpt_mini.course import NOT_DONE, check, data_samples_dir, repo_root


def test_check_reports_not_done_ok_and_wrong(capsys):
    assert check("x.1", None, lambda a: True) == NOT_DONE
    assert check("x.2", 3, lambda a: None) == "ok"
    assert check("x.3", 3, lambda a: (_ for _ in ()).throw(AssertionError("too small"))) == "not yet: too small"
    assert check("x.4", 3, lambda a: 1 / 0).startswith("not yet: ZeroDivisionError")
    assert "exercise x.2: ok" in capsys.readouterr().out


def test_chapter_00_checks_accept_solutions_and_reject_wrong_answers(capsys):
    exercises.ex00_1(load_profile("colab", ["lora.r=8", "lora.alpha=16"]))
    exercises.ex00_1(load_profile("tiny", ["lora.r=8", "lora.alpha=16"]))
    data = json.loads((data_samples_dir() / "mosit" / "mosit.json").read_text())
    exercises.ex00_2(collections.Counter(d["task"] for d in data))
    exercises.ex00_2({"T->T": 1})
    exercises.ex00_3(698.0)
    exercises.ex00_3(440.0)
    exercises.ex00_3(None)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1][:7] for line in lines] == ["ok", "not yet", "ok", "not yet", "ok", "not yet", "not don"]


def test_repo_root_holds_data_samples():
    assert (repo_root() / "data_samples" / "images.json").is_file()
