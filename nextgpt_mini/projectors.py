"""Projectors: the small trained bridges between the frozen parts.

* `InputProjector`: ImageBind's joint embedding (1024-d in the paper) -> one soft token in the
  LLM's embedding space (4096-d for Vicuna-7B). One linear layer suffices because ImageBind's
  space is already semantic: the projector only has to rotate and scale it into a region the
  frozen LLM reads as meaning (the same finding as LLaVA's first stage).
"""

from __future__ import annotations

import torch
from torch import nn


class InputProjector(nn.Module):
    """Linear(encoder_dim -> hidden): each media item becomes one soft token."""

    def __init__(self, encoder_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(encoder_dim, hidden_size)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, encoder_dim] -> [N, hidden]."""
        return self.proj(embeddings)
