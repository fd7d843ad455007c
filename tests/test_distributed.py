"""The trainer on several processes: stage 1 in 2 CPU processes (gloo, launched by torchrun) trains
the same weights as 1 process with the same global batch, and a checkpoint written by rank 0
resumes on another world size."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("_dist_stage1.py")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: Path, steps: int, world: int, cache: Path, *extra: str) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port())] if world > 1 else [sys.executable]
    cmd = [*launcher, str(SCRIPT), str(out), str(steps), str(cache), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    return {"weights": load_file(out / "checkpoint" / "trainable.safetensors"), **state}


def test_two_processes_train_what_one_trains_and_checkpoints_resume_on_any_world_size(tmp_path):
    cache = tmp_path / "cache"
    _train(tmp_path / "warm", 1, 1, cache)  # fills the embedding cache, so the ranks only read it
    one = _train(tmp_path / "one", 6, 1, cache)
    two = _train(tmp_path / "two", 6, 2, cache)
    assert (one["world_size"], two["world_size"]) == (1, 2)  # really two processes
    for name, w in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], w, rtol=1e-4, atol=1e-5)
    # the logged loss is the global batch's on every world size
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], rel=1e-4)
    # interrupted after 3 steps on 2 processes, resumed on 1: the same as 6 steps on 1 process
    stopped = _train(tmp_path / "mixed", 6, 2, cache, "--interrupt-at", "3")
    assert stopped["step"] == 3 and stopped["world_size"] == 2
    mixed = _train(tmp_path / "mixed", 6, 1, cache, "--resume")
    assert mixed["step"] == 6 and mixed["world_size"] == 1
    for name, w in one["weights"].items():
        torch.testing.assert_close(mixed["weights"][name], w, rtol=1e-4, atol=1e-5)
