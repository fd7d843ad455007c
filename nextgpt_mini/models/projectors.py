"""Chapters 02 and 04: projectors: the small trained bridges between the frozen parts.

* `InputProjector`: ImageBind's joint embedding (1024-d in the paper) -> one soft token in the
  LLM's embedding space (4096-d for Vicuna-7B). One linear layer suffices because ImageBind's
  space is already semantic: the projector only has to rotate and scale it into a region the
  frozen LLM reads as meaning (the same finding as LLaVA's first stage).
* `OutputProjector`: the LLM's states at its signal tokens -> the conditioning a diffusion
  decoder expects (77 x 768 for Stable Diffusion). A transformer with learned queries, because
  the output must be a *sequence* of a different length and width than its input.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nextgpt_mini.config import OutputProjectorConfig


class InputProjector(nn.Module):
    """Linear(encoder_dim -> hidden): each media item becomes one soft token."""

    def __init__(self, encoder_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(encoder_dim, hidden_size)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, encoder_dim] -> [N, hidden]."""
        return self.proj(embeddings)


class OutputProjector(nn.Module):
    """Signal-token states -> a decoder's conditioning (NExT-GPT's "transformer" projector, from GILL).

    Input: for each of the N signal tokens, the LLM's last-layer hidden state plus that token's
    input embedding ([B, N, hidden]). Linear(hidden -> d_model), then an `nn.Transformer` whose
    encoder reads the N states and whose decoder reads Q learned queries (one per conditioning
    token the decoder expects: 77 for CLIP), then Linear(d_model -> out_dim): [B, Q, out_dim].
    With Q = 1 (AudioLDM's single CLAP vector) the output is [B, out_dim].

    `cfg.linear_path` adds a Linear from the N states, flattened, to the whole output (the tiny
    profile's; see `OutputProjectorConfig`): it needs `num_inputs` = N, the modality's signal tokens.
    """

    def __init__(self, hidden_size: int, cfg: OutputProjectorConfig, num_inputs: int | None = None):
        super().__init__()
        self.cfg = cfg
        if cfg.linear_path and not num_inputs:
            raise ValueError("OutputProjector: linear_path needs num_inputs, the number of signal tokens")
        self.linear_path = nn.Linear(num_inputs * hidden_size, cfg.num_queries * cfg.out_dim) if cfg.linear_path else None
        self.fc_in = nn.Linear(hidden_size, cfg.d_model)
        with warnings.catch_warnings():  # norm_first=True rules out a fast path nobody asked for
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.transformer = nn.Transformer(
                d_model=cfg.d_model, nhead=cfg.num_heads, num_encoder_layers=cfg.num_encoder_layers,
                num_decoder_layers=cfg.num_decoder_layers, dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout,
                batch_first=True, norm_first=True,
            )
        self.queries = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.d_model))
        self.fc_out = nn.Linear(cfg.d_model, cfg.out_dim)

    def forward(self, hidden_states: torch.Tensor, input_embeds: torch.Tensor) -> torch.Tensor:
        """[B, N, hidden] x 2 -> [B, Q, out_dim] (or [B, out_dim] when Q = 1)."""
        states = hidden_states + input_embeds
        x = self.fc_in(states)
        queries = self.queries.expand(x.shape[0], -1, -1).to(x.dtype)
        out = self.fc_out(self.transformer(x, queries))
        if self.linear_path is not None:
            out = out + self.linear_path(states.flatten(1)).view_as(out)
        return out[:, 0] if self.cfg.num_queries == 1 else out
