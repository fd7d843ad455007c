"""Chapter 02: exercise checks for notebooks/02_input_projection_alignment.ipynb.

The checks: stage 1's trainable count, the weakest audio attribute, a trained MLP projector (a component).
Each `ex02_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nextgpt_mini.course import check
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.training.stage1 import greedy_captions, make_eval_fn


def ex02_1(n) -> None:
    """Parameters stage 1 trains in the tiny profile: the input projector's weight and bias."""

    def test(value):
        p = load_profile("tiny")
        expected = p.encoder.out_embed_dim * p.llm.hidden_size + p.llm.hidden_size
        assert int(value) == expected, f"{value} is not what stage 1 trains"

    check("02.1", n, test)


def ex02_2(name, model, test_sets) -> None:
    """The audio attribute the trained model names right least often."""

    def test(value):
        audio = test_sets["audio"]
        captions = greedy_captions(model, "audio", audio.embeddings)
        scores = [tw.attribute_scores(c, it) for c, it in zip(captions, audio.items)]
        rate = {k: sum(s[k] for s in scores) for k in scores[0]}
        worst = [k for k, v in rate.items() if v == min(rate.values())]
        assert value in worst, f"{value!r} is right {rate.get(value)} times; the least is {min(rate.values())}"

    check("02.2", name, test)


def ex02_3(model, test_sets) -> None:
    """A model whose input projector is a trained two-layer MLP (Linear -> GELU -> Linear, width 256).

    Rejected: a single linear layer, other widths, and an MLP whose held-out caption loss is not
    at least 10% below the same MLP's at a fresh initialisation (untrained)."""

    def test(value):
        proj = value.input_projector.proj
        p = value.profile
        d, h = p.encoder.out_embed_dim, p.llm.hidden_size
        expected = d * 256 + 256 + 256 * h + h
        n = sum(t.numel() for t in proj.parameters())
        assert n == expected, f"the projector holds {n} parameters; Linear({d}, 256) -> GELU -> Linear(256, {h}) holds {expected}"
        x = torch.nn.functional.normalize(torch.randn(4, d, generator=torch.Generator().manual_seed(0)), dim=-1)
        with torch.no_grad():
            y, y2, y0 = proj(x), proj(2 * x), proj(torch.zeros_like(x))
        assert tuple(y.shape) == (4, h), f"4 embeddings became {tuple(y.shape)}, expected (4, {h})"
        assert not torch.allclose(y2, 2 * y - y0, atol=1e-5), "the projector is affine: where is the GELU?"
        heldout = make_eval_fn(test_sets, with_captions=False)
        trained = heldout(value)["heldout_loss"]
        fresh = copy.deepcopy(proj)
        with torch.random.fork_rng():  # the notebook's random state is left as it was
            torch.manual_seed(0)
            for m in fresh.modules():
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        value.input_projector.proj, kept = fresh, proj
        try:
            untrained = heldout(value)["heldout_loss"]
        finally:
            value.input_projector.proj = kept
        assert trained < 0.9 * untrained, (f"held-out loss {trained:.3f}; the same MLP untrained has {untrained:.3f}: "
                                           "train it (100 steps) before handing it in")

    check("02.3", model, test)
