"""The student's system carried between chapters (course/student.py): saved, found, or the shipped fallback."""

import pytest
import torch

from nextgpt_mini import load_profile
from nextgpt_mini.course import student
from nextgpt_mini.models.nextgpt import NextGPT


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(student, "repo_root", lambda: tmp_path)  # never the repository's own outputs/
    monkeypatch.delenv("NEXTGPT_MINI_STUDENT_DIR", raising=False)
    return tmp_path


def same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_without_a_saved_system_the_shipped_stages_are_used_and_said(outputs, capsys, one_thread):
    profile = load_profile("tiny")
    shipped = NextGPT.from_pretrained(student.SHIPPED).trainable_groups()
    fresh = NextGPT.from_profile(profile).trainable_groups()
    after1 = student.load_student(profile, "1")
    assert "no system after stage 1" in capsys.readouterr().out
    groups = after1.trainable_groups()
    assert same(groups["input_projector"], shipped["input_projector"])
    assert same(groups["output_projectors"], fresh["output_projectors"])  # stage 2's part is not taken
    assert "lora" not in groups
    after2 = student.load_student(profile, "2").trainable_groups()
    assert same(after2["output_projectors"], shipped["output_projectors"]) and same(after2["signal_rows"], shipped["signal_rows"])
    assert "lora" in student.load_student(profile, "3").trainable_groups()
    with pytest.raises(ValueError, match="after='4'"):
        student.load_student(profile, "4")


def test_a_saved_system_is_the_one_the_next_chapter_starts_from(outputs, capsys, one_thread):
    profile = load_profile("tiny")
    mine = NextGPT.from_profile(profile)
    with torch.no_grad():
        mine.input_projector.proj.weight.add_(1.0)  # "trained"
    folder = student.save_student(mine, "1")
    assert folder == outputs / "outputs" / "student" / "after_stage1"
    capsys.readouterr()
    again = student.load_student(profile, "1")
    assert "starting from your system after stage 1" in capsys.readouterr().out
    assert torch.equal(again.input_projector.proj.weight, mine.input_projector.proj.weight)
    assert not (outputs / "outputs" / "student" / "after_stage2").exists()


def test_a_system_of_another_profile_is_not_taken_for_this_one(outputs, capsys, one_thread):
    """The colab dry run saves to the same outputs/student folders: a tiny chapter after it must
    not read a colab system (chapter 07's stage-by-stage table asks `saved_student` too)."""
    profile = load_profile("tiny")
    student.save_student(NextGPT.from_profile(profile), "1")
    assert student.saved_student(profile, "1") == outputs / "outputs" / "student" / "after_stage1"
    other = load_profile("tiny")
    other.name = "colab"
    capsys.readouterr()
    assert student.saved_student(other, "1") is None
    assert "holds a tiny system, not colab: not used" in capsys.readouterr().out
    assert student.saved_student(profile, "2") is None


def test_the_student_folder_moves_with_the_environment(outputs, monkeypatch):
    monkeypatch.setenv("NEXTGPT_MINI_STUDENT_DIR", str(outputs / "elsewhere"))
    assert student.student_folder("2") == outputs / "elsewhere" / "after_stage2"
