import json
import os
import subprocess
import sys

import pytest

from nextgpt_mini.cli import main


def test_profile_command_prints_json_with_overrides(capsys):
    assert main(["profile", "--profile", "paper", "--set", "llm.max_length=99"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "paper" and data["llm"]["max_length"] == 99


def test_bad_override_is_one_line_and_exit_2(capsys):
    assert main(["profile", "--set", "llm.nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown config field 'llm.nope'" in err and "Traceback" not in err


def test_make_samples_command(tmp_path, capsys):
    assert main(["make-samples", "--out", str(tmp_path / "s"), "--seed", "1"]) == 0
    assert "wrote 12 images, 8 audio clips, 6 videos and 33 dialogues" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "s" / "images.json").read_text())) == 12


def test_console_script_entry_point_runs_in_a_fresh_process(tmp_path):
    # the installed `nextgpt-mini` script is `nextgpt_mini.cli:main`; run it as a module the same way
    out = subprocess.run([sys.executable, "-m", "nextgpt_mini.cli", "demo", "--quick", "--out", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert "talk to it: `nextgpt-mini chat --checkpoint" in out.stdout
    assert out.stdout.count("(right: True)") == 3  # the shipped encoder matches caption, caption and sound
    assert (tmp_path / "demo" / "image.png").is_file() and (tmp_path / "demo" / "audio.wav").is_file()
    assert all((tmp_path / "demo" / f"generated_{m}").is_file() for m in ("image.png", "video.mp4", "audio.wav"))
    # the main job: three stages, a conversation in all six directions, the saved system, the report
    for direction in ("T->I", "I->T", "T->A", "A->T", "T->V", "V->T"):
        assert f"{direction}  user:" in out.stdout
    assert all(f"stage {s}:" in out.stdout for s in "123")
    saved = tmp_path / "demo" / "checkpoint"
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "trained.safetensors"]
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count("<tr><td>") == 6
    assert all(d in report for d in ("T-&gt;I", "I-&gt;T", "T-&gt;A", "A-&gt;T", "T-&gt;V", "V-&gt;T"))


def test_unknown_command_exits_non_zero():
    out = subprocess.run([sys.executable, "-m", "nextgpt_mini.cli", "fly"], capture_output=True, text=True)
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_chat_loop_answers_keeps_history_and_reports_bad_files(monkeypatch, capsys, tmp_path):
    from nextgpt_mini.course import data_samples_dir

    lines = iter(["What sound does a red circle make?", f"What is this? @{data_samples_dir() / 'images' / 'image_00.png'}",
                  "What is this? @/no/such/file.png", "new", "quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("model> ") == 2 and "error: " in out and "/no/such/file.png" in out
    assert (tmp_path / "turn0.txt").is_file() and (tmp_path / "turn1.txt").is_file()


COMMANDS = ("profile", "make-samples", "build-tiny", "encode", "train", "generate", "chat", "caption", "params",
            "memory", "download", "evaluate", "demo")


def test_every_command_has_its_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command}" in listed
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and f"usage: nextgpt-mini {command} " in capsys.readouterr().out


def test_train_gives_each_stage_its_own_folder_and_leaves_args_alone(monkeypatch, tmp_path):
    from nextgpt_mini import cli
    from nextgpt_mini.cli import run
    from nextgpt_mini.models.nextgpt import NextGPT

    monkeypatch.setattr(NextGPT, "from_profile", staticmethod(lambda profile: "model"))
    seen = []
    monkeypatch.setattr(run, "train_stage", lambda stage, model, args: seen.append((stage, args.out)))
    args = cli.build_parser().parse_args(["train", "--stages", "1,3,2", "--out", str(tmp_path)])
    assert run.cmd_train(args) == 0
    assert seen == [("1", f"{tmp_path}/stage1"), ("3", f"{tmp_path}/stage3"), ("2", f"{tmp_path}/stage2")]
    assert args.out == str(tmp_path)
