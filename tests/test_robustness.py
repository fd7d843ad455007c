"""The robustness sweep: every public entry point (CLI and Python API) fed bad input.

Each case must end in a clear error (CLI: a non-zero exit and one line that names the problem,
no traceback), and nothing written before it may change: an earlier output, embedding file,
report or checkpoint stays byte for byte as it was.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nextgpt_mini.cli import main
from nextgpt_mini.utils import asset_path

SYSTEM = asset_path("package:tiny_system")


def _digest(path: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `path` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of bad inputs, and of outputs written earlier that must survive."""
    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 40)
    (d / "notes.txt").write_text("not media")
    sf.write(d / "nan.wav", np.array([0.1, np.nan] * 8000, dtype=np.float32), 16000, subtype="FLOAT")
    (d / "bad_protocol.json").write_text("{not json")
    shutil.copytree(SYSTEM, d / "truncated")
    weights = d / "truncated" / "trained.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _other_profile_system(d / "other_profile")
    # outputs written earlier
    (d / "earlier").mkdir()
    (d / "earlier" / "output.txt").write_text("an earlier answer\n")
    (d / "earlier" / "results.json").write_text('{"earlier": true}')
    (d / "earlier" / "embeddings.safetensors").write_bytes(b"earlier embeddings")
    shutil.copytree(SYSTEM, d / "earlier" / "checkpoint")
    return d


def _other_profile_system(folder: Path) -> None:
    """A trained-weights folder of a profile with other shapes (an 80-query image projector)."""
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.profiles import load_profile

    profile = load_profile("tiny")
    profile.image_projector.num_queries = profile.image_projector.num_queries + 4
    NextGPT.from_profile(profile).save_pretrained(folder)


def _cli_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0, f"{argv}: exit 0"
    assert err, f"{argv}: no error message"
    last = err[-1]
    assert last.startswith(f"nextgpt-mini {argv[0]}: error: "), err
    assert not any("Traceback" in line for line in err), err
    return last


def _cases(d: Path) -> dict[str, tuple[list[str], str]]:
    ckpt, out = str(SYSTEM), str(d / "earlier")
    gen = ["generate", "--checkpoint", ckpt, "--out", out, "--no-progress"]
    emb = str(d / "earlier" / "embeddings.safetensors")
    return {
        # encode
        "encode: missing file": (["encode", str(d / "missing.png"), "--out", emb], "missing.png: no such file"),
        "encode: corrupt image": (["encode", str(d / "corrupt.png"), "--out", emb], "corrupt.png: cannot read the image"),
        "encode: corrupt audio": (["encode", str(d / "corrupt.wav"), "--out", emb], "corrupt.wav: cannot decode the audio"),
        "encode: corrupt video": (["encode", str(d / "corrupt.mp4"), "--out", emb], "corrupt.mp4: cannot decode the video"),
        "encode: NaN audio": (["encode", str(d / "nan.wav"), "--out", emb], "nan.wav: the audio contains NaN"),
        "encode: not media": (["encode", str(d / "notes.txt"), "--out", emb], "notes.txt: unsupported file extension"),
        # generate
        "generate: empty prompt": ([*gen[:1], "   ", *gen[1:]], "prompt: expected a non-empty string"),
        "generate: prompt over the context": ([*gen[:1], "red " * 3000, *gen[1:]], "over the model's limit of 128"),
        "generate: corrupt media": ([*gen[:1], "What is it?", *gen[1:], "--media", str(d / "corrupt.wav")], "corrupt.wav"),
        "generate: NaN media": ([*gen[:1], "What is it?", *gen[1:], "--media", str(d / "nan.wav")], "nan.wav: the audio contains NaN"),
        "generate: wrong modality": ([*gen[:1], "What is it?", *gen[1:], "--media", str(d / "notes.txt")], "unsupported file extension"),
        "generate: missing checkpoint": (["generate", "hi", "--checkpoint", str(d / "nope"), "--out", out], "nope"),
        "generate: truncated checkpoint": (["generate", "hi", "--checkpoint", str(d / "truncated"), "--out", out],
                                           "trained.safetensors: not a readable safetensors file"),
        "generate: output path is a file": (["generate", "hi", "--checkpoint", ckpt, "--out", str(d / "notes.txt")],
                                            "exists and is not a folder"),
        # train
        "train: another profile's checkpoint": (["train", "--stage", "1", "--steps", "1", "--init", str(d / "other_profile"),
                                                 "--out", str(d / "t1")], "(another profile?)"),
        "train: truncated checkpoint": (["train", "--stage", "1", "--steps", "1", "--init", str(d / "truncated"),
                                         "--out", str(d / "t2")], "not a readable safetensors file"),
        "train: bad data": (["train", "--stage", "1", "--steps", "1", "--data", str(d / "notes.txt"), "--out", out],
                            "notes.txt: no images.json"),
        "train: resume without a checkpoint": (["train", "--stage", "1", "--steps", "1", "--resume", "--out", str(d / "t3")],
                                               "checkpoint"),
        # evaluate
        "evaluate: truncated checkpoint": (["evaluate", "--suite", "toy", "--checkpoint", str(d / "truncated"), "--limit", "2",
                                            "--out", out], "not a readable safetensors file"),
        "evaluate: missing checkpoint": (["evaluate", "--suite", "toy", "--checkpoint", str(d / "nope"), "--out", out],
                                         "nope: no such checkpoint folder"),
        "evaluate: too few samples": (["evaluate", "--suite", "toy", "--limit", "1", "--out", out], "limit"),
        "evaluate: corrupt protocol": (["evaluate", "--suite", "toy", "--protocol", str(d / "bad_protocol.json"), "--out", out],
                                       "bad_protocol.json: not valid JSON"),
        "evaluate: real suite without data": (["evaluate", "--suite", "msrvtt-t2v", "--out", out], "--data DIR"),
        # memory, download, from_pretrained-based commands
        "memory: no mode": (["memory", "--profile", "colab"], "give exactly one of"),
        "memory: negative GPU": (["memory", "--profile", "colab", "--inference", "--gpu-gb", "-1"], "--gpu-gb"),
        "memory: zero batch": (["memory", "--profile", "colab", "--stage", "3", "--batch-size", "0"], "--batch-size 0"),
        "download: offline": (["download", "--profile", "colab", "--dir", str(d / "weights")],
                              "run `nextgpt-mini download --profile colab"),
        "caption: corrupt media": (["caption", str(d / "corrupt.png"), "--checkpoint", ckpt], "corrupt.png"),
    }


CASES = list(_cases(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input_is_one_line_and_damages_nothing(case, bad, capsys, one_thread):
    argv, expected = _cases(bad)[case]
    before = _digest(bad / "earlier")
    line = _cli_error(capsys, argv)
    assert expected in line, line
    assert _digest(bad / "earlier") == before, "an earlier output changed"


def test_download_check_reports_missing_weights_with_a_non_zero_exit(bad, capsys):
    assert main(["download", "--profile", "colab", "--check", "--dir", str(bad / "weights")]) == 1
    assert "MISSING" in capsys.readouterr().out


# ---------------------------------------------------------------- the Python API
@pytest.fixture(scope="module")
def model(one_thread):
    from nextgpt_mini.models.nextgpt import NextGPT

    return NextGPT.from_pretrained("package:tiny_system")


def test_python_api_bad_input(model, bad):
    from nextgpt_mini.encode import encode
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.processing import MediaError
    from nextgpt_mini.scaling.memory import plan

    with pytest.raises(FileNotFoundError, match="missing.png"):
        encode([str(bad / "missing.png")], encoder=model.encoder, progress=False)
    with pytest.raises(MediaError, match="nan.wav"):
        encode([str(bad / "nan.wav")], encoder=model.encoder, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        model.generate("")
    with pytest.raises(ValueError, match="limit of 128"):
        model.generate("blue " * 500)
    with pytest.raises(ValueError, match="NaN"):
        model.generate("What is it?", [("image", torch.full((64,), float("nan")))])
    with pytest.raises(ValueError, match="expected one 64-d"):
        model.generate("What is it?", [("image", torch.zeros(5))])
    with pytest.raises(ValueError, match="a file path or a"):
        model.generate("What is it?", [("smell", torch.zeros(64))])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        NextGPT.from_pretrained(bad / "truncated")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        NextGPT.from_pretrained(bad / "earlier")
    with pytest.raises(ValueError, match="another profile"):
        NextGPT.from_profile("tiny").load_trained(bad / "other_profile")
    with pytest.raises(ValueError, match="--gpu-gb"):
        plan("colab", gpu_gb=0)


def test_evaluate_api_bad_input(bad):
    from nextgpt_mini.evaluation.suites import evaluate_suite, load_protocol, write_report

    with pytest.raises(ValueError, match="suite: expected one of"):
        load_protocol("imagenet")
    with pytest.raises(FileNotFoundError, match="no such protocol file"):
        load_protocol("toy", bad / "nope.json")
    with pytest.raises(ValueError, match="'untrained' or 'none'"):
        evaluate_suite("toy", "package:tiny_system", baseline="best", limit=2)
    with pytest.raises(NotADirectoryError, match="notes.txt"):
        write_report({"systems": {}}, bad / "notes.txt")


def test_a_failed_evaluation_keeps_the_earlier_report(bad, capsys, one_thread):
    earlier = bad / "earlier_eval"
    assert main(["evaluate", "--suite", "toy", "--limit", "2", "--baseline", "none", "--out", str(earlier), "--no-progress"]) == 0
    before = _digest(earlier)
    capsys.readouterr()
    _cli_error(capsys, ["evaluate", "--suite", "toy", "--checkpoint", str(bad / "truncated"), "--limit", "2", "--out", str(earlier)])
    assert _digest(earlier) == before


# ---------------------------------------------------------------- an interrupted training run
def test_a_run_killed_while_saving_keeps_the_previous_checkpoint_and_resumes(tmp_path, monkeypatch):
    from nextgpt_mini.training.trainer import Trainer
    from tests.test_training import _cfg, _system

    system, source = _system()
    Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=2, progress=False).train()
    before = _digest(tmp_path / "checkpoint")

    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):  # the process is killed half-way through a save
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt

    system, source = _system()
    trainer = Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=6, progress=False)
    trainer.checkpoint_every = 2
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(resume=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert _digest(tmp_path / "checkpoint") == before, "a half-written checkpoint replaced the whole one"
    system, source = _system()
    done = Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=6, progress=False).train(resume=True)
    assert done.steps == 6 and json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 6


# ---------------------------------------------------------------- read-only output folders
READ_ONLY_SCRIPT = """
import sys
from nextgpt_mini.cli import main
ro, system, media = sys.argv[1], sys.argv[2], sys.argv[3]
for argv in (["generate", "Show me a red circle.", "--checkpoint", system, "--out", ro + "/gen", "--no-progress"],
             ["generate", "Show me a red circle.", "--checkpoint", system, "--out", ro, "--no-progress"],
             ["evaluate", "--suite", "toy", "--limit", "2", "--out", ro, "--no-progress"],
             ["encode", media, "--out", ro + "/e.safetensors", "--no-progress"],
             ["train", "--stage", "1", "--steps", "1", "--out", ro]):
    print("exit", main(argv), flush=True)
"""


def _without_root_override():
    """In the child, before exec: drop the capabilities that let root write anywhere
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set, so that permission
    bits hold for it as for anyone. CI runs as root, and root ignores a folder's mode otherwise."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_output_folders_fail_fast_with_one_line(tmp_path):
    ro = tmp_path / "read_only"
    ro.mkdir()
    (ro / "output.txt").write_text("earlier")
    media = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(media)
    ro.chmod(0o555)
    before = _digest(ro)
    try:
        run = subprocess.run([sys.executable, "-c", READ_ONLY_SCRIPT, str(ro), str(SYSTEM), str(media)],
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
                             preexec_fn=_without_root_override if os.geteuid() == 0 else None)
    finally:
        ro.chmod(0o755)
    exits = [line for line in run.stdout.splitlines() if line.startswith("exit")]
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert exits == ["exit 2"] * 5, (run.stdout, run.stderr[-2000:])
    assert len(errors) == 5 and all("not writable" in e for e in errors), errors
    assert "Traceback" not in run.stderr
    assert _digest(ro) == before
