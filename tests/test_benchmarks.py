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
