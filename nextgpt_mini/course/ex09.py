"""Chapter 09: exercise checks for notebooks/09_evaluation.ipynb.

The checks: the CLIP score by hand, the Kernel Inception Distance (a component), the toy suite's oracle: the nearest caption of a conditioning.
Each `ex09_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.evaluation.metrics import clip_score
from nextgpt_mini.losses import distance


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


def ex09_2(kid_fn) -> None:
    """kid_fn(x [n, d], y [n, d]) -> float: the Kernel Inception Distance, the unbiased MMD^2 with
    the kernel k(a, b) = (a.b / d + 1)^3, for two equally large sets (torchmetrics' `poly_mmd`)."""

    def test(fn):
        from torchmetrics.image.kid import poly_mmd

        g = torch.Generator().manual_seed(2)
        x, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randn(10, 6, generator=g, dtype=torch.float64) + 0.3
        got = fn(x, y)
        if got is None:
            raise NotImplementedError
        want = float(poly_mmd(x, y))

        def k(a, b):
            return (a @ b.T / a.shape[1] + 1) ** 3

        biased = float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
        assert abs(float(got) - biased) > 1e-6, "that is the biased estimate: leave out each sample's kernel with itself"
        assert abs(float(got) - want) < 1e-6 * max(1.0, abs(want)), f"{float(got):.6f} != {want:.6f}"

    check("09.2", kid_fn, test)


def ex09_3(nearest_fn) -> None:
    """nearest_fn(pred, targets, captions) -> for each row of pred, the caption whose target is
    nearest by the per-token L2 distance (pred [N, Q, D] or [N, D]; targets likewise, M rows)."""

    def test(fn):
        g = torch.Generator().manual_seed(4)
        targets = torch.randn(7, 5, 3, generator=g)
        captions = [f"caption {k}" for k in range(7)]
        order = [3, 0, 6, 6, 1]
        pred = targets[order] + 0.05 * torch.randn(5, 5, 3, generator=g)
        got = fn(pred, targets, captions)
        if got is None:
            raise NotImplementedError
        assert list(got) == [captions[k] for k in order], f"{list(got)}"
        # [2.9, 0.1] points almost exactly like "east" but lies nearer, in L2, to "far east-north-east"
        compass = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[2.6, 1.2]]])
        names = ["east", "north", "far east-north-east"]
        want = names[int(distance(torch.tensor([[[2.9, 0.1]]]).expand(3, -1, -1), compass, "l2").argmin())]
        assert list(fn(torch.tensor([[[2.9, 0.1]]]), compass, names)) == [want], (
            "nearest by the per-token L2 distance, not by direction (cosine)")
        flat = fn(targets[[4, 1], 0], targets[:, 0], captions)  # AudioLDM-shaped: one vector per item
        assert list(flat) == [captions[4], captions[1]], "one vector per item ([N, D]) should work too"

    check("09.3", nearest_fn, test)
