"""Chapter 10: exercise checks for notebooks/10_ablations.ipynb.

The checks: what four more image signal tokens add to stage 2, the spread of a set of
conditionings (a component), two systems trained in the orders 1-2-3 and 1-3-2.
Each `ex10_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.losses import distance
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.profiles import load_profile


def _stage2_count(tokens: int) -> int:
    groups = NextGPT.from_profile(load_profile("tiny", {"signal_tokens.image": tokens})).trainable_groups()
    return sum(p.numel() for g in ("output_projectors", "signal_rows") for p in groups[g])


def ex10_1(n) -> None:
    """Stage-2 parameters with 8 image signal tokens minus those with 4."""

    def test(value):
        p = load_profile("tiny")
        rows = 4 * p.llm.hidden_size * 2  # four rows of the input embedding and four of the LM head
        expected = _stage2_count(8) - _stage2_count(4)
        assert int(value) != rows, ("that is the new embedding and LM-head rows alone: what else reads the "
                                    "signal states, and grows with their number?")
        assert int(value) == expected, f"{value} is not the difference in what stage 2 trains"

    check("10.1", n, test)


def reference_spread(x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = i != j
    return distance(x[i[off]], x[j[off]], "l2").mean()


def ex10_2(fn) -> None:
    """The mean per-token L2 distance between different rows of [N, Q, D]."""

    def test(f):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 5, 7, generator=g)
        got = f(x)
        assert got is not None, "my_spread returns None"
        got = torch.as_tensor(got, dtype=torch.float32)
        assert got.numel() == 1, f"expected one number, got shape {tuple(got.shape)}"
        want = reference_spread(x)
        with_diagonal = want * (len(x) - 1) / len(x)
        assert not torch.allclose(got, with_diagonal, rtol=1e-4), "the pairs of a row with itself (distance 0) are counted"
        torch.testing.assert_close(got.reshape(()), want, rtol=1e-4, atol=1e-5)
        same = x[:1].expand(4, -1, -1)
        assert float(f(same)) < 1e-5, "four copies of one row should have spread 0"

    def answered(f) -> bool:
        try:
            return f(torch.zeros(2, 1, 1)) is not None
        except Exception:  # noqa: BLE001 - a bug is reported by the test itself
            return True

    check("10.2", fn if callable(fn) and answered(fn) else None, test)


def ex10_3(systems, profile) -> None:
    """(system trained 1-2-3, system trained 1-3-2): both through stages 2 and 3, and not the same."""

    def test(pair):
        a, b = pair
        fresh = NextGPT.from_profile(profile).trainable_groups()
        for name, system in (("system_123", a), ("system_132", b)):
            groups = system.trainable_groups()
            assert "lora" in groups and any(float(p.detach().abs().max()) > 0 for n, p in _lora_b(system)), (
                f"{name} has no trained LoRA: it has not been through stage 3")
            moved = any(not torch.equal(p, q) for p, q in zip(groups["output_projectors"], fresh["output_projectors"]))
            assert moved, f"{name}'s output projectors are as initialised: it has not been through stage 2"
        assert a is not b and any(not torch.equal(p, q) for p, q in zip(a.trainable_groups()["output_projectors"],
                                                                        b.trainable_groups()["output_projectors"])), (
            "the two systems are the same: train one in each order")

    check("10.3", None if systems is None or None in tuple(systems) else systems, test)


def _lora_b(system):
    return [(n, p) for n, p in system.llm.named_parameters() if "lora_B" in n]
