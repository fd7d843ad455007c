"""Chapter 01: the layers ImageBind's towers are built from, with Meta's names.

Preprocessors (patch embedding, position embedding, the text causal mask), the pre-LN transformer
trunk, the heads that pool one token, and the postprocessors (L2 normalisation, logit scale), as
Meta's `multimodal_preprocessors.py`, `transformer.py` and `helpers.py` hold them. The attribute
names match Meta's, so that `imagebind_huge.pth` loads strictly into `imagebind.ImageBindEncoder`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Meta's trunks, heads and pre-transformer LayerNorm use eps=1e-6 (not PyTorch's 1e-5).
LN_EPS = 1e-6
MAX_LOGIT_SCALE = 100.0


# ============================================================================================
# Small building blocks
# ============================================================================================
class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a random subset of samples.

    Only the audio trunk uses it (rate 0.1); it is the identity in eval mode, i.e. always for
    NExT-GPT, which keeps ImageBind frozen.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        # Trunk tensors are (L, B, D): one keep/drop decision per sample on dim 1.
        mask = x.new_empty(1, x.shape[1], 1).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """Meta's "progressive" schedule, linspace(0, rate, n), in plain Python.

    Meta computes it with `torch.linspace(...).item()`, which cannot run on the meta device.
    """
    if num_blocks == 1:
        return [0.0]
    return [rate * i / (num_blocks - 1) for i in range(num_blocks)]


class Normalize(nn.Module):
    """L2 normalisation over the last dimension: the only post-processing NExT-GPT uses."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    """Multiply by exp(log_logit_scale), clipped at 100: Meta's `LearnableLogitScaling`.

    Kept so that the checkpoint's `log_logit_scale` entries load strictly: a parameter for text
    (learnable), a persistent buffer for audio (fixed at 20).
    """

    def __init__(self, init: float, learnable: bool) -> None:
        super().__init__()
        value = torch.full((), math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x: Tensor) -> Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=MAX_LOGIT_SCALE) * x


class PadIm2Video(nn.Module):
    """Turn an image [B,3,H,W] into a still video [B,3,T,H,W] by repeating it T times.

    The vision stem is a (2, p, p) Conv3d, so images need two frames; Meta repeats the image
    (pad_type="repeat") rather than padding with zeros. 5-D inputs pass through unchanged.
    """

    def __init__(self, ntimes: int) -> None:
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        elif x.ndim != 5:
            raise ValueError(f"vision input must be [B,3,H,W] or [B,3,T,H,W], got {tuple(x.shape)}")
        if x.shape[2] == 1:
            x = x.repeat(1, 1, self.ntimes, 1, 1)
        return x


class PatchEmbed(nn.Module):
    """Convolutional patch embedding, flattened to tokens [B, N, D], with an optional LayerNorm.

    `proj` and `norm_layer` are Meta's `PatchEmbedGeneric` attribute names.
    """

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # B C (T) H W -> B (T H W) C
        return self.norm_layer(x) if self.norm_layer is not None else x


class PosEmbedding(nn.Module):
    """Learned position embedding for [CLS] + patches (Meta's `SpatioTemporalPosEmbeddingHelper`
    with learnable=True): one vector per token, shape [1, 1 + num_patches, D]."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))


# ============================================================================================
# Preprocessors: raw input -> tokens
# ============================================================================================
class PatchPreprocessor(nn.Module):
    """Patches -> tokens, prepend a learned [CLS] token, add position embeddings.

    Used for vision and audio (Meta's `RGBDTPreprocessor` / `AudioPreprocessor`). The stem is
    stored as `rgbt_stem` in both cases: that is the name in Meta's checkpoint.
    """

    def __init__(self, stem: PatchEmbed, num_patches: int, dim: int) -> None:
        super().__init__()
        self.rgbt_stem = stem
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embedding_helper = PosEmbedding(1 + num_patches, dim)
        self.num_patches = num_patches

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.rgbt_stem(x)
        if tokens.shape[1] != self.num_patches:
            # Meta would interpolate the position embedding here; we keep inputs at the
            # configured size instead of silently running on a resized grid.
            raise ValueError(
                f"input {tuple(x.shape)} gives {tokens.shape[1]} patches, the position embedding "
                f"has {self.num_patches}: check image_size/video_frames or the audio mel settings"
            )
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        return tokens + self.pos_embedding_helper.pos_embed


def causal_mask(context_length: int) -> Tensor:
    """Additive attention mask: -inf above the diagonal, so token i sees only tokens <= i."""
    return torch.full((context_length, context_length), float("-inf")).triu_(1)


class TextPreprocessor(nn.Module):
    """Token ids -> token embeddings + learned positions; provides CLIP's causal mask.

    The mask is a persistent buffer because Meta's checkpoint stores it
    (`modality_preprocessors.text.mask`).
    """

    def __init__(self, vocab_size: int, context_length: int, dim: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, dim))
        self.register_buffer("mask", causal_mask(context_length))

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        length = ids.shape[1]
        if length > self.context_length:
            raise ValueError(f"text has {length} tokens, the context length is {self.context_length}")
        # Shorter inputs are allowed: causal attention makes the first L positions independent
        # of anything after them, so this equals running on the padded sequence.
        tokens = self.token_embedding(ids) + self.pos_embed[:, :length]
        return tokens, self.mask[:length, :length]


# ============================================================================================
# Trunk: pre-LN transformer blocks
# ============================================================================================
class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """x + attn(LN(x)); x + mlp(LN(x)). Meta's `BlockWithMasking` with no layer scale.

    Meta's block supports CaiT-style layer scale, but ImageBind never enables it
    (layer_scale_type=None in every trunk), so there is no `layer_scale_gamma*` in the
    checkpoint and none here.

    Attention is `nn.MultiheadAttention` in its default sequence-first layout, as in Meta's code:
    same parameter names (`in_proj_weight`, `out_proj`, `bias_k`/`bias_v`) and the same kernels,
    hence bit-identical outputs. `add_bias_kv` appends a learned key/value to every sequence
    (Meta sets it for audio, not for vision or text).
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, drop_path: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, bias=True, add_bias_kv=add_bias_kv)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm_1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        h = self.norm_1(x)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0])
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class Trunk(nn.Module):
    """A stack of blocks, with an optional LayerNorm before the first (vision only: Meta's
    `pre_transformer_layer.0`, the "ln_pre" of CLIP's ViT)."""

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        num_heads: int,
        *,
        pre_layer_norm: bool,
        add_bias_kv: bool,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS)) if pre_layer_norm else None
        self.blocks = nn.Sequential(
            *[Block(dim, num_heads, add_bias_kv, rate) for rate in drop_path_rates(drop_path, num_blocks)]
        )

    def forward(self, tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        if self.pre_transformer_layer is not None:
            tokens = self.pre_transformer_layer(tokens)
        x = tokens.transpose(0, 1)  # [B, L, D] -> [L, B, D] for sequence-first attention
        for block in self.blocks:
            x = block(x, attn_mask)
        return x.transpose(0, 1)


# ============================================================================================
# Heads: pool one token, project to the joint space
# ============================================================================================
class SelectToken(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.index]


class ClsHead(nn.Sequential):
    """LayerNorm -> take token 0 ([CLS]) -> Linear without bias. Vision and audio.

    A Sequential so its keys are Meta's (`0.weight`, `0.bias`, `2.weight`).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__(
            nn.LayerNorm(dim, eps=LN_EPS),
            SelectToken(0),
            nn.Linear(dim, out_dim, bias=False),
        )


class EotHead(nn.Module):
    """Take the end-of-text token's state -> LayerNorm -> Linear without bias (CLIP pooling).

    Under causal attention the end-of-text token is the first one that has seen the whole
    caption. The LayerNorm acts per token, so applying it after the selection (as here and in
    Meta's `SelectEOSAndProject`) equals CLIP's "ln_final then select".
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: Tensor, eot_index: Tensor) -> Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eot_index])


def eot_positions(ids: Tensor, eot_token_id: int) -> Tensor:
    """Index of the first end-of-text id in each row.

    Meta uses `ids.argmax(-1)`, which is the same thing for CLIP's vocabulary (eot = 49407 is
    the largest id and padding is 0) but not for a vocabulary where eot is not the largest id,
    nor for tokenizers that pad with the eot id (the first one is the one that counts).
    """
    is_eot = ids == eot_token_id
    # Checking costs one device sync; pooling a random token instead would fail silently.
    if not bool(is_eot.any(dim=-1).all()):
        raise ValueError(f"every text row must contain the end-of-text id {eot_token_id}")
    return is_eot.int().argmax(dim=-1)  # argmax returns the first maximal index
