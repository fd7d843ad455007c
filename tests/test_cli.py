import json
import subprocess
import sys

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
    out = subprocess.run([sys.executable, "-m", "nextgpt_mini.cli", "demo", "--out", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "not yet built" in out.stdout  # the demo says what it did not do
    assert out.stdout.count("(right: True)") == 3  # the shipped encoder matches caption, caption and sound
    assert (tmp_path / "demo" / "image.png").is_file() and (tmp_path / "demo" / "audio.wav").is_file()
    assert all((tmp_path / "demo" / f"generated_{m}").is_file() for m in ("image.png", "video.mp4", "audio.wav"))


def test_unknown_command_exits_non_zero():
    out = subprocess.run([sys.executable, "-m", "nextgpt_mini.cli", "fly"], capture_output=True, text=True)
    assert out.returncode != 0 and "invalid choice" in out.stderr
