"""Chapter 08: exercise checks for notebooks/08_scaling_up.ipynb.

The checks: stage 1's share, the largest batch that fits, a LoRA counter for any LLaMA-family config (a component).
Each `ex08_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

from nextgpt_mini.config import LoRAConfig
from nextgpt_mini.course import check
from nextgpt_mini.models.llm import build_empty_llm, lora_parameter_count
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.scaling.memory import plan
from nextgpt_mini.scaling.params import full_size_table_with_decoders


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


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def ex08_3(lora_count) -> None:
    """lora_count(config, r, targets) -> LoRA parameters of a LLaMA-family `config` (transformers'
    LlamaConfig: grouped-query attention and the MLP included) with rank r on the `targets` layers."""

    def test(fn):
        cases = [("paper", 32, ALL_LINEAR[:4]), ("paper", 32, ALL_LINEAR), ("colab", 8, ALL_LINEAR[:4]), ("colab", 16, ALL_LINEAR)]
        for name, r, targets in cases:
            llm = build_empty_llm(load_profile(name).llm)
            got = fn(llm.config, r, list(targets))
            if got is None:
                raise NotImplementedError
            want = lora_parameter_count(llm, LoRAConfig(r=r, target_modules=list(targets)))
            assert int(got) == want, (f"{name} ({llm.config.num_key_value_heads} key/value heads of "
                                      f"{llm.config.num_attention_heads}), r={r}, {targets}: {int(got):,} != {want:,}")

    check("08.3", lora_count, test)
