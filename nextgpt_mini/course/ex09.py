"""Chapter 09: exercise checks for notebooks/09_evaluation.ipynb.

The checks: the CLIP score by hand, FID against sample size, text retrieval.
Each `ex09_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.evaluation.metrics import clip_score, frechet_distance
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.render import render


def ex09_1(clip_score_fn) -> None:
    """clip_score_fn(media [N, D], texts [N, D]) -> float: the CLIP score by hand: per pair
    max(100 x cos, 0), then the mean."""

    def test(fn):
        g = torch.Generator().manual_seed(9)
        media = torch.randn(16, 8, generator=g) * 3
        sign = torch.tensor([1.0] * 12 + [-1.0] * 4)[:, None]  # a few anti-aligned pairs: the floor is per pair
        texts = sign * media + torch.randn(16, 8, generator=g)
        got = fn(media, texts)
        if got is None:  # the stub
            raise NotImplementedError
        expected = clip_score(media, texts)
        assert abs(float(got) - expected) < 1e-4, (
            f"{float(got):.4f} != {expected:.4f}: cosine per pair (normalise both), x 100, negatives count as 0, mean")

    check("09.1", clip_score_fn, test)


def ex09_2(fids, features) -> None:
    """{n: FID between two independent samples of n held-out toy images (seeds 1 and 2)} for n = 10, 40."""

    def test(value):
        assert set(value) == {10, 40}, f"keys {sorted(value)}: expected 10 and 40"

        def feats(n, seed):
            return features.fid_images([render(it, it.seed) for it in tw.sample_items("image", n, seed=seed, split="test")])

        for n in (10, 40):
            expected = frechet_distance(feats(n, 1), feats(n, 2))
            assert abs(float(value[n]) - expected) < 1e-3 * max(expected, 1), f"n={n}: {value[n]} != {expected:.4f}"
        assert value[10] > value[40], "with these samples FID should fall as n grows"

    check("09.2", fids, test)


def ex09_3(retrieval_fn) -> None:
    """retrieval_fn(media [N, D], texts [N, D]) -> float in [0, 1]: the share of items whose most
    similar text (cosine) is their own. A conditional metric: FID cannot see a swapped pair."""

    def test(fn):
        g = torch.Generator().manual_seed(3)
        texts = torch.randn(12, 6, generator=g)
        if fn(texts * 2.0, texts) is None:  # the stub
            raise NotImplementedError
        assert abs(float(fn(texts * 2.0, texts)) - 1.0) < 1e-6, "identical directions: every item finds its own text"
        swapped = texts[[1, 0, *range(2, 12)]]
        assert abs(float(fn(swapped, texts)) - 10 / 12) < 1e-6, "two swapped items: 10 of 12 right"
        media = torch.randn(12, 6, generator=g)
        expected = float(((torch.nn.functional.normalize(media, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T)
                          .argmax(1) == torch.arange(12)).float().mean())
        assert abs(float(fn(media, texts)) - expected) < 1e-6, "compare each item with every text, not only its own"

    check("09.3", retrieval_fn, test)
