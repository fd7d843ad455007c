"""Chapter 08: exercise checks for notebooks/08_scaling_up.ipynb.

The checks: stage 1's share, the largest batch that fits, Vicuna-7B's LoRA count.
Each `ex08_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

from nextgpt_mini.course import check
from nextgpt_mini.scaling.memory import plan
from nextgpt_mini.scaling.params import full_size_table, full_size_table_with_decoders


def ex08_1(share) -> None:
    """The paper system's share (%) trained in stage 1."""

    def test(value):
        rows = full_size_table_with_decoders("paper", stage="1")
        expected = 100 * sum(r.trainable for r in rows) / sum(r.total for r in rows)
        assert abs(float(value) - expected) < 1e-3 * expected, f"{value} is not the share in % (a fraction? x 100)"

    check("08.1", share, test)


def ex08_2(batch) -> None:
    """The largest per-device batch (1-64) for which colab stage 3 without gradient checkpointing
    fits 15 GB by the planner."""

    def test(value):
        expected = max(b for b in range(1, 65) if plan("colab", stage="3", checkpointing=False, batch_size=b).fits)
        assert int(value) == expected, f"{value}: plan with batch {int(value) + 1} and see whether it fits"

    check("08.2", batch, test)


def ex08_3(count) -> None:
    """Vicuna-7B's LoRA parameters with r = 32 on q, k, v and o, by hand."""

    def test(value):
        lora = {r.module: r.total for r in full_size_table("paper")}["LoRA"]
        assert int(value) == lora, f"{value} != {lora:,}: r x (in + out) per projection, 4 per layer, 32 layers"

    check("08.3", count, test)
