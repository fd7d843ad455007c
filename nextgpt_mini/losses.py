"""Chapters 02, 04 and 06: the losses the stages add up, and the held-out NLL every stage reports.

Stages 2 and 3 align the output projectors' conditioning with each decoder's own text-side
conditioning (`distance`); the optional denoising loss weighs the frozen UNet's error per timestep
(`min_snr_weight`, applied by `models.decoders.Decoder.denoising_loss`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from nextgpt_mini.prompts import IGNORE


def distance(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Per-example distance between projected conditioning and the decoder's target.

    l2: NExT-GPT's, the Euclidean norm per conditioning token, averaged over tokens;
    mse: mean squared error; cosine: 1 - cosine similarity per token, averaged.
    """
    pred, target = pred.float(), target.float()
    if pred.dim() == 2:  # AudioLDM: one vector per item
        pred, target = pred[:, None], target[:, None]
    if kind == "l2":
        return (pred - target).norm(dim=-1).mean(-1)
    if kind == "mse":
        return ((pred - target) ** 2).mean(dim=(-1, -2))
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean(-1)
    raise ValueError(f"unknown distance {kind!r}: expected l2, mse or cosine")


def min_snr_weight(alpha_bar: torch.Tensor, gamma: float, v_prediction: bool) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al., 2023) of a diffusion loss at noise levels `alpha_bar`
    (the scheduler's cumulative alphas at the sampled timesteps): min(SNR, gamma) / SNR for a
    noise target, / (SNR + 1) for a velocity target, so the easy, low-noise steps do not dominate."""
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, max=gamma) / (snr + 1 if v_prediction else snr)


def per_example_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of each example's answer tokens [B] from logits [B, T, V] and labels [B, T]
    (IGNORE outside answers): shifted by one, padding-independent by construction."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = (labels != IGNORE).float()
    return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def answer_nll(model, batches: Iterable[dict]) -> torch.Tensor:
    """Per-example answer NLL over held-out `batches`, concatenated [N]: the one held-out NLL loop."""
    return torch.cat([model.per_example_nll(batch) for batch in batches])
