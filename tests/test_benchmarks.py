"""benchmarks/gpu_bench.py: its code path, at tiny size on the CPU (the paper-size run needs a GPU)."""

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_bench.py"


@pytest.mark.slow
def test_gpu_bench_runs_its_whole_path_at_tiny_size_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--profile", "tiny", "--device", "cpu", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines() if re.search(r"\S\s{2,}\S", line))
    for key in ("stage-3 throughput", "LLM decoding", "image decoder", "video decoder", "audio decoder", "peak memory, planner"):
        assert key in rows, (key, out)
    assert float(rows["stage-3 throughput"].split()[0].replace(",", "")) > 0
    assert all(float(rows[f"{m} decoder"].split()[0]) > 0 for m in ("image", "video", "audio"))


def test_checkpoint_benchmark_writes_a_checkpoint_of_the_profiles_trained_size(capsys, tmp_path):
    from nextgpt_mini.scaling.params import full_size_table

    spec = importlib.util.spec_from_file_location("checkpoint_time", BENCH.parent / "checkpoint_time.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--profile", "tiny", "--stage", "3", "--out", str(tmp_path), "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    trained = int(re.search(r"([\d,]+) trained parameters", out).group(1).replace(",", ""))
    assert trained == sum(r.trainable for r in full_size_table("tiny", "3"))
    # fp32 values + AdamW's two moments: 12 bytes per trained parameter, and a little more
    size = sum(f.stat().st_size for f in (tmp_path / "checkpoint").iterdir())
    assert 12 * trained <= size < 12 * trained * 1.1 + 1e6


def test_a_colab_stage_3_step_measured_on_the_cpu_is_within_25_percent_of_the_planner():
    """Issue 18: TinyLlama's width, vocabulary and sequence length, 4 layers instead of 22 (the
    full-depth run, in benchmarks/RESULTS.md, takes longer), in its own process so that no other
    test's freed memory is reused."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(BENCH.parent / "step_memory.py"), "--profile", "colab", "--stage", "3",
                          "--set", "llm.name_or_path=stand-in", "--set", "llm.num_layers=4"],
                         capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", **__import__("os").environ})
    assert out.returncode == 0, out.stderr[-2000:]
    ratios = {line.split("  ")[1].strip(): float(line.split()[-1]) for line in out.stdout.splitlines()
              if re.search(r"\d\.\d\d\s*$", line) and "GB" not in line}
    assert set(ratios) == {"weights (LLM 16-bit, what trains fp32)", "+ AdamW moments, gradients, activations",
                           "peak of a step, all told"}, out.stdout
    assert all(0.75 <= r <= 1.25 for r in ratios.values()), out.stdout
    assert "gradient checkpointing on" in out.stdout and "batch 2 x 384 tokens, 4 LLM layers" in out.stdout
