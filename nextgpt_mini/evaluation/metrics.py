"""Chapter 09: the metrics, as glue around maintained implementations.

Every generation metric here works on *features*, so that the feature extractor can be swapped:
Inception / CLIP / CLAP for real suites, the tiny encoder in the toy suite and in tests
(`features.py`). What each computes:

* `frechet_distance(real, fake)`: the Fréchet distance between two Gaussians fitted to two sets
  of features: FID on Inception pool features, FD/FAD on audio embeddings. torchmetrics'
  `FrechetInceptionDistance` does the arithmetic; it accepts any feature module, so we hand it
  features that are already computed (an identity module).
* `clip_score(media, texts)`: CLIPScore as Hessel et al. (2021) define it and torchmetrics documents
  it: per pair max(100 x cos(media, text), 0), averaged. (torchmetrics' implementation floors the
  mean instead of each pair: the same whenever the cosines are positive, as with real CLIP models;
  in the tiny encoder's space unrelated pairs sit near -0.1, and a floored mean read 0 for the
  trained and the untrained system alike.) CLIPSIM (video) is the same per frame, averaged over
  frames then videos, on the 0-1 scale video papers print; the CLAP score is the CLIP score in
  CLAP's audio-text space. (torchmetrics' own `CLIPScore` is not used: version 1.9 expects the
  tensors transformers 4 returned from `get_image_features`, and breaks on transformers 5.)
* `bleu4`, `cider`, `meteor`: captioning. BLEU-4 from torchmetrics; CIDEr-D (and METEOR, which
  needs Java) from pycocoevalcap, the COCO caption evaluation code the papers use. Both are
  reported x 100, as papers print them (NExT-GPT's COCO CIDEr: 156.7).
"""

from __future__ import annotations

import re
import shutil

import torch
import torch.nn.functional as F

__all__ = ["bleu4", "caption_metrics", "cider", "clip_score", "clipsim", "frechet_distance", "meteor", "normalize_caption"]


class _Precomputed(torch.nn.Module):
    """A 'feature extractor' that returns its input: for features computed elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between feature sets real [N, D] and fake [M, D] (N, M >= 2)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features: expected two [N, D] sets of the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(real), len(fake)) < 2:
        raise ValueError("features: a Fréchet distance needs at least 2 items per set")
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return max(float(metric.compute()), 0.0)  # float error can give -1e-9 for identical sets


def _pairwise_score(media: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """max(100 x cos, 0) per (media, text) pair."""
    if media.shape != texts.shape:
        raise ValueError(f"expected one text feature per media feature, got {tuple(media.shape)} and {tuple(texts.shape)}")
    return 100 * F.cosine_similarity(media.float(), texts.float(), dim=-1).clamp(min=0)


def clip_score(media: torch.Tensor, texts: torch.Tensor) -> float:
    """CLIP score (or CLAP score) of paired features [N, D]: the mean of max(100 x cos, 0) per pair."""
    return float(_pairwise_score(media, texts).mean())


def clipsim(frames: list[torch.Tensor], texts: torch.Tensor) -> float:
    """CLIPSIM: per video, the mean CLIP similarity of its frames [F, D] with its text [D]; then the
    mean over videos. On the 0-1 scale video papers print (NExT-GPT's MSR-VTT: 0.3085), not x 100."""
    if len(frames) != len(texts):
        raise ValueError(f"expected one text per video, got {len(frames)} videos and {len(texts)} texts")
    return float(torch.stack([_pairwise_score(f, t.expand_as(f)).mean() for f, t in zip(frames, texts)]).mean()) / 100


def normalize_caption(text: str) -> str:
    """Lower case, punctuation off, single spaces: what the PTB tokenizer of the COCO evaluation
    does to plain English captions (it needs Java; this does not)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _check_captions(hypotheses: list[str], references: list[list[str]]) -> None:
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"expected one reference list per hypothesis (and at least one), got {len(hypotheses)} "
                         f"hypotheses and {len(references)} reference lists")


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (torchmetrics), x 100."""
    from torchmetrics.text import BLEUScore

    _check_captions(hypotheses, references)
    hyp = [normalize_caption(h) for h in hypotheses]
    refs = [[normalize_caption(r) for r in rs] for rs in references]
    return 100 * float(BLEUScore(n_gram=4)(hyp, refs))


def _coco_inputs(hypotheses: list[str], references: list[list[str]]):
    _check_captions(hypotheses, references)
    res = {i: [normalize_caption(h) or "_"] for i, h in enumerate(hypotheses)}  # empty answers score 0, not crash
    gts = {i: [normalize_caption(r) for r in rs] for i, rs in enumerate(references)}
    return gts, res


def _pycocoevalcap():
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        raise ImportError("CIDEr and METEOR need pycocoevalcap: pip install 'nextgpt-mini[eval]' "
                          "(or pip install pycocoevalcap)") from None


def cider(hypotheses: list[str], references: list[list[str]]) -> float:
    """CIDEr-D (pycocoevalcap), x 100. Its IDF comes from the references given, as in COCO's code,
    so a score depends on the whole evaluated set: compare numbers on the same set only."""
    _pycocoevalcap()
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score(*_coco_inputs(hypotheses, references))
    return 100 * float(score)


def meteor_available() -> bool:
    """METEOR runs a Java program shipped in pycocoevalcap."""
    try:
        _pycocoevalcap()
    except ImportError:
        return False
    return shutil.which("java") is not None


def meteor(hypotheses: list[str], references: list[list[str]]) -> float | None:
    """METEOR 1.5 (pycocoevalcap, needs Java), x 100; None where Java is missing."""
    if not meteor_available():
        return None
    from pycocoevalcap.meteor.meteor import Meteor

    score, _ = Meteor().compute_score(*_coco_inputs(hypotheses, references))  # its __del__ stops Java
    return 100 * float(score)


def caption_metrics(hypotheses: list[str], references: list[list[str]], with_meteor: bool = True) -> dict[str, float]:
    out = {"BLEU-4": bleu4(hypotheses, references), "CIDEr": cider(hypotheses, references)}
    score = meteor(hypotheses, references) if with_meteor else None
    if score is not None:
        out["METEOR"] = score
    return out
