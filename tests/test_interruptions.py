"""Training and caches under what Colab and shared machines do to them: a SIGKILL (also one that
lands in the middle of a checkpoint write), two processes on one embedding cache, a full disk.

The kill tests run the real command line in subprocesses (`tests/_killable_train.py`) and compare
the resumed run's final weights with an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file

from nextgpt_mini import utils
from nextgpt_mini.checkpoints import complete_checkpoints, periodic_folder
from nextgpt_mini.cli import main
from nextgpt_mini.models.nextgpt import trained_weights_file
from tests.conftest import REPO

DRIVER = REPO / "tests" / "_killable_train.py"
pytestmark = pytest.mark.slow


def _env(**extra) -> dict:
    # one thread in every run: the same sums in the same order, so "equal" can mean bit for bit
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **extra}


def _start(args: list[str], log: Path, **env) -> subprocess.Popen:
    with open(log, "w") as fh:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen([sys.executable, str(DRIVER), *args], cwd=REPO, env=_env(**env),
                                stdout=fh, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    assert proc.wait(timeout) == 0, log.read_text()[-3000:]
    return log.read_text()


def _kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 300) -> None:
    """SIGKILL `proc` as soon as `ready()` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before the moment to kill it:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to kill the run")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL


def _kill_twice_and_resume(tmp_path: Path, common: list[str], first: int, second: int) -> None:
    """An uninterrupted run; then the same run killed right after its first periodic checkpoint,
    resumed and killed inside the write of its second, and resumed to the end: the same weights."""
    straight, run, marker = tmp_path / "straight", tmp_path / "killed", tmp_path / "writing"
    _finish(_start(["train", *common, "--out", str(straight)], tmp_path / "straight.log"), tmp_path / "straight.log")

    log = tmp_path / "kill1.log"
    proc = _start(["train", *common, "--out", str(run)], log)
    _kill_when(proc, lambda: (periodic_folder(run, first) / "trainer_state.json").is_file(), log)
    assert not (run / "checkpoint").exists()
    # what `generate --checkpoint OUT` loads from a run killed before its end: its newest checkpoint
    assert trained_weights_file(run) == periodic_folder(run, first) / "trainable.safetensors"

    log = tmp_path / "kill2.log"
    half = periodic_folder(run, second)
    proc = _start(["train", *common, "--out", str(run), "--resume"], log,
                  NEXTGPT_TEST_HANG_IN=half.name, NEXTGPT_TEST_MARKER=str(marker))
    _kill_when(proc, marker.is_file, log)
    assert f"at step {first} of" in log.read_text()
    assert (half.parent / f".{half.name}.tmp" / "trainable.safetensors").is_file(), "the kill did not land mid-write"
    assert not half.exists() and [s for s, _ in complete_checkpoints(run)] == [first]

    log = tmp_path / "resume.log"
    out = _finish(_start(["train", *common, "--out", str(run), "--resume"], log), log)
    assert f"from {periodic_folder(run, first)} at step {first} of" in out  # the half-written one was never read
    a = load_file(straight / "checkpoint" / "trainable.safetensors")
    b = load_file(run / "checkpoint" / "trainable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = (json.loads((d / "checkpoint" / "trainer_state.json").read_text()) for d in (straight, run))
    assert [h["loss"] for h in state_a["history"]] == [h["loss"] for h in state_b["history"]]
    assert state_a["evals"] == state_b["evals"]
    # the newest K=2 periodic checkpoints are kept, and nothing the killed write left behind
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(p.name for p in (straight / "checkpoints").iterdir())


def test_stage_1_killed_twice_resumes_to_the_uninterrupted_weights(tmp_path):
    # the acceptance command: the tiny profile's defaults (a checkpoint every 100 steps) for 300
    # steps, with held-out evaluations every 100 steps (they are half the time), so that each lands
    # on a checkpoint step: evaluate, then save, then resume must still give the same bits
    no_eval = json.dumps({"1": {"eval_every": 100}})
    common = ["--stage", "1", "--profile", "tiny", "--steps", "300", "--set", f"train.stage_overrides={no_eval}",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    _kill_twice_and_resume(tmp_path, common, first=100, second=200)


def test_stage_3_killed_twice_resumes_to_the_uninterrupted_weights(tmp_path):
    # no held-out evaluations (they are two thirds of a short stage-3 run, and stage 1 covers them)
    no_eval = json.dumps({"3": {"lr": 3e-3, "batch_size": 8, "eval_every": 0}})
    common = ["--stage", "3", "--profile", "tiny", "--steps", "30", "--set", "train.checkpoint_every=10",
              "--set", f"train.stage_overrides={no_eval}", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    _kill_twice_and_resume(tmp_path, common, first=10, second=20)


# ---------------------------------------------------------------- two processes, one cache
READER = """
import json, sys, time
from pathlib import Path
from safetensors.torch import load
root, stop = Path(sys.argv[1]), Path(sys.argv[2])
reads = bad = 0
while True:
    done = stop.exists()
    for path in root.rglob("*.safetensors"):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            load(data)
        except Exception:
            bad += 1
    if done:
        break
    time.sleep(0.005)
print(json.dumps({"reads": reads, "bad": bad}))
"""


def test_two_processes_encoding_into_one_cache_leave_it_whole(tmp_path):
    assert main(["make-samples", "--out", str(tmp_path / "media")]) == 0
    files = sorted(str(p) for p in (tmp_path / "media").rglob("*") if p.suffix in (".png", ".wav", ".mp4"))
    inputs = files + [f"text:a red thing number {k}" for k in range(60)]

    def encode(out: Path, cache: Path) -> list[str]:
        return [sys.executable, str(DRIVER), "encode", *inputs, "--cache-dir", str(cache), "--out", str(out), "--no-progress"]

    alone = subprocess.run(encode(tmp_path / "alone.safetensors", tmp_path / "cache_alone"), cwd=REPO, env=_env(),
                           capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr

    shared, stop = tmp_path / "cache_shared", tmp_path / "stop"
    shared.mkdir()
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(shared), str(stop)], env=_env(), stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    writers = [subprocess.Popen(encode(tmp_path / f"w{k}.safetensors", shared), cwd=REPO, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(2)]
    for w in writers:
        out, _ = w.communicate(timeout=600)
        assert w.returncode == 0, out
    stop.touch()
    seen = [json.loads(r.communicate(timeout=120)[0]) for r in readers]
    assert all(s["reads"] > 0 and s["bad"] == 0 for s in seen), seen

    expected = load_file(tmp_path / "alone.safetensors")["embeddings"]
    for k in range(2):
        assert torch.equal(load_file(tmp_path / f"w{k}.safetensors")["embeddings"], expected)
    leftovers = [p for p in shared.rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]
    assert leftovers == []
    assert all(load(p.read_bytes()) for p in shared.rglob("*.safetensors"))
    again = subprocess.run(encode(tmp_path / "again.safetensors", shared), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0 and f"{len(inputs)} hits, 0 misses" in again.stdout, again.stdout + again.stderr
    assert torch.equal(load_file(tmp_path / "again.safetensors")["embeddings"], expected)


def test_a_reader_that_finds_a_damaged_entry_keeps_the_good_one_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    from nextgpt_mini.cache import EmbeddingCache, text_key

    cache, other = EmbeddingCache(tmp_path, "b" * 64), EmbeddingCache(tmp_path, "b" * 64)
    key = text_key("x")
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    real_decode = EmbeddingCache._decode

    def decode_while_another_process_rewrites(self, data, k):
        if self is cache:  # between our read and our clean-up, the other process writes a good entry
            other.put(k, torch.ones(3))
        return real_decode(self, data, k)

    monkeypatch.setattr(EmbeddingCache, "_decode", decode_while_another_process_rewrites)
    with pytest.warns(UserWarning, match="unreadable entry"):
        assert cache.get(key) is None
    monkeypatch.undo()
    assert torch.equal(other.get(key), torch.ones(3)), "the reader deleted the entry another process had just written"


# ---------------------------------------------------------------- a full disk
@pytest.fixture
def full_disk(monkeypatch):
    """Call it to fill the disk: from then on every write through `utils.write_file` gets half its
    bytes onto the disk and then fails with ENOSPC, as write(2) does when a disk fills mid-file."""
    real = utils.write_file

    def failing(path, data, sync=False):
        real(path, data[: len(data) // 2], sync)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fill() -> None:
        for module in list(sys.modules.values()):
            if getattr(module, "write_file", None) is real:
                monkeypatch.setattr(module, "write_file", failing)

    return fill


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, argv: list[str], path: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "no space left on device" in err, err
    return err


def test_a_full_disk_during_a_checkpoint_keeps_the_earlier_one(tmp_path, capsys, full_disk):
    out = tmp_path / "run"
    train = ["train", "--stage", "1", "--steps", "2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(train) == 0
    before = _digest(out / "checkpoint")
    capsys.readouterr()
    full_disk()
    _one_line_error(capsys, [*train[:4], "4", *train[5:], "--resume"], out / "checkpoint")
    assert _digest(out / "checkpoint") == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_during_a_cache_write_or_save_pretrained_keeps_the_earlier_file(tmp_path, capsys, full_disk):
    from nextgpt_mini.cache import EmbeddingCache, text_key
    from nextgpt_mini.models.nextgpt import NextGPT

    cache = EmbeddingCache(tmp_path / "cache", "a" * 64)
    key = text_key("x")
    cache.put(key, torch.ones(4))
    entry = cache.path_for(key)
    saved = NextGPT.from_pretrained("package:tiny_system")
    saved.save_pretrained(tmp_path / "system")
    before = entry.read_bytes(), _digest(tmp_path / "system")

    full_disk()
    with pytest.raises(OSError, match="no space left on device") as err:
        cache.put(key, torch.zeros(4))
    assert str(entry) in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(OSError, match="no space left on device") as err:
        saved.save_pretrained(tmp_path / "system")
    assert str(tmp_path / "system") in str(err.value)
    assert (entry.read_bytes(), _digest(tmp_path / "system")) == before
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    # through the command line: `encode` with a cache on a full disk says which entry, in one line
    _one_line_error(capsys, ["encode", "text:a red circle", "--cache-dir", str(tmp_path / "cache2"),
                             "--out", str(tmp_path / "e.safetensors"), "--no-progress"], tmp_path / "cache2")
