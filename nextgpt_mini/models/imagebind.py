"""Chapter 01: ImageBind (Girdhar et al., 2023), NExT-GPT's frozen encoder, for vision, text and audio.

ImageBind maps every modality into one 1024-d space with a separate ViT-style transformer
("trunk") per modality. Each modality goes through the same four stages, and the module
names below are those stages, so that Meta's `imagebind_huge.pth` loads with `strict=True`:

    modality_preprocessors.<m>   raw input -> token sequence (patch/token embedding, position
                                 embedding, class token; the causal mask for text)
    modality_trunks.<m>          pre-LN transformer blocks
    modality_heads.<m>           pool one token (CLS for vision/audio, end-of-text for text),
                                 LayerNorm, project to the joint space
    modality_postprocessors.<m>  L2 normalisation (+ a logit scale for text and audio)

Only vision (images and videos), text and audio are built: NExT-GPT never uses depth, thermal
or IMU, so their checkpoint keys are skipped explicitly (`SKIPPED_MODALITIES`).

Three things that differ from Meta's code, on purpose:
- Sizes come from `EncoderConfig` (Meta fixes image 224, vocabulary 49408, context 77).
- The model can be built on the meta device (`build_encoder(cfg, empty=True)`): no `.item()`
  or dummy forward pass runs at build time.
- `forward(..., normalize=True)` returns the L2-normalised embeddings and does *not* apply the
  text/audio logit scales by default. NExT-GPT's fork of ImageBind patches the audio path to
  skip the fixed x20 scale (vision has none; text is not used), so its projector sees
  normalised embeddings. Pass `logit_scale=True` to get Meta's own scaled outputs.

Clip averaging follows Meta: videos and audio are cut into clips, each clip is embedded and
normalised, and the clip embeddings are averaged *without* re-normalising.

Loading and converting checkpoints is in `imagebind_weights.py`; finding and downloading them in
`nextgpt_mini.hub`. This module is longer than the package's 400-line guideline on purpose: it is
one model whose classes mirror Meta's module tree, names included, so that the checkpoint loads
strictly; splitting it would only scatter that tree over several files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nextgpt_mini.config import EncoderConfig

TOWERS = ("vision", "text", "audio")  # the modality towers kept (Meta's names)
# Present in Meta's checkpoint, never used by NExT-GPT: dropped before loading.
SKIPPED_MODALITIES = ("depth", "thermal", "imu")
# The vision stem is a Conv3d with kernel (2, p, p): two frames make one temporal patch.
TEMPORAL_KERNEL = 2
# Meta's trunks, heads and pre-transformer LayerNorm use eps=1e-6 (not PyTorch's 1e-5).
LN_EPS = 1e-6
# Meta's postprocessors: text has CLIP's learnable temperature (init 1/0.07); audio a fixed 20.
TEXT_LOGIT_SCALE_INIT = 1 / 0.07
AUDIO_LOGIT_SCALE = 20.0
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


# ============================================================================================
# The encoder
# ============================================================================================
def _vision_num_patches(cfg: EncoderConfig) -> int:
    grid = cfg.image_size // cfg.patch_size
    return (cfg.video_frames // TEMPORAL_KERNEL) * grid * grid


def _audio_num_patches(cfg: EncoderConfig) -> int:
    """Computed from the conv arithmetic, not from a dummy forward pass as Meta does."""

    def out_len(n: int) -> int:
        return (n - cfg.audio_kernel_size) // cfg.audio_stride + 1

    return out_len(cfg.audio_num_mel_bins) * out_len(cfg.audio_target_len)


def _check_config(cfg: EncoderConfig) -> None:
    if cfg.video_frames < TEMPORAL_KERNEL or cfg.video_frames % TEMPORAL_KERNEL:
        raise ValueError(f"video_frames must be a positive multiple of {TEMPORAL_KERNEL}, got {cfg.video_frames}")
    if cfg.image_size % cfg.patch_size:
        raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    for m in TOWERS:
        dim, heads = getattr(cfg, f"{m}_embed_dim"), getattr(cfg, f"{m}_num_heads")
        if dim % heads:
            raise ValueError(f"{m}_embed_dim {dim} is not divisible by {m}_num_heads {heads}")
    if min(cfg.audio_num_mel_bins, cfg.audio_target_len) < cfg.audio_kernel_size:
        raise ValueError("the audio spectrogram is smaller than audio_kernel_size")


def _build_preprocessors(cfg: EncoderConfig) -> nn.ModuleDict:
    p = cfg.patch_size
    vision_stem = PatchEmbed(
        nn.Sequential(
            PadIm2Video(ntimes=cfg.video_frames),
            nn.Conv3d(3, cfg.vision_embed_dim, kernel_size=(TEMPORAL_KERNEL, p, p),
                      stride=(TEMPORAL_KERNEL, p, p), bias=False),
        )
    )
    audio_stem = PatchEmbed(
        nn.Conv2d(1, cfg.audio_embed_dim, kernel_size=cfg.audio_kernel_size, stride=cfg.audio_stride, bias=False),
        norm_layer=nn.LayerNorm(cfg.audio_embed_dim),  # PyTorch's default eps here, as in Meta's
    )
    return nn.ModuleDict({
        "vision": PatchPreprocessor(vision_stem, _vision_num_patches(cfg), cfg.vision_embed_dim),
        "text": TextPreprocessor(cfg.vocab_size, cfg.context_length, cfg.text_embed_dim),
        "audio": PatchPreprocessor(audio_stem, _audio_num_patches(cfg), cfg.audio_embed_dim),
    })


def _build_trunks(cfg: EncoderConfig) -> nn.ModuleDict:
    return nn.ModuleDict({
        "vision": Trunk(cfg.vision_embed_dim, cfg.vision_num_blocks, cfg.vision_num_heads,
                        pre_layer_norm=True, add_bias_kv=False, drop_path=0.0),
        "text": Trunk(cfg.text_embed_dim, cfg.text_num_blocks, cfg.text_num_heads,
                      pre_layer_norm=False, add_bias_kv=False, drop_path=0.0),
        "audio": Trunk(cfg.audio_embed_dim, cfg.audio_num_blocks, cfg.audio_num_heads,
                       pre_layer_norm=False, add_bias_kv=True, drop_path=cfg.audio_drop_path),
    })


def _build_heads(cfg: EncoderConfig) -> nn.ModuleDict:
    return nn.ModuleDict({
        "vision": ClsHead(cfg.vision_embed_dim, cfg.out_embed_dim),
        "text": EotHead(cfg.text_embed_dim, cfg.out_embed_dim),
        "audio": ClsHead(cfg.audio_embed_dim, cfg.out_embed_dim),
    })


def _build_postprocessors() -> nn.ModuleDict:
    # Index 0 is the normalisation, index 1 (text, audio) Meta's logit scale.
    return nn.ModuleDict({
        "vision": Normalize(),
        "text": nn.Sequential(Normalize(), LogitScale(TEXT_LOGIT_SCALE_INIT, learnable=True)),
        "audio": nn.Sequential(Normalize(), LogitScale(AUDIO_LOGIT_SCALE, learnable=False)),
    })


class ImageBindEncoder(nn.Module):
    """ImageBind's vision, text and audio towers with Meta's parameter names.

    Inputs (all float inputs are cast to the model's device and dtype):
      "vision": image [B,3,H,W]; video [B,S,3,T,H,W] (S = clips x spatial crops, T frames);
                a 5-D input [B,S,3,H,W] is S images per item (Meta's convention: any input with
                5 or more dims has a clip axis at dim 1).
      "audio":  [B,S,1,mel,frames] (S clips) or one clip [B,1,mel,frames].
      "text":   token ids [B,L], L <= context_length, each row containing the end-of-text id.
    Output: {modality: [B, out_embed_dim]}.
    """

    def __init__(self, cfg: EncoderConfig, eot_token_id: int | None = None) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        # CLIP's end-of-text id is the last one of its vocabulary (49407 of 49408).
        if eot_token_id is None:
            eot_token_id = getattr(cfg, "eot_token_id", None)
        self.eot_token_id = cfg.vocab_size - 1 if eot_token_id is None else eot_token_id
        self.modality_preprocessors = _build_preprocessors(cfg)
        self.modality_trunks = _build_trunks(cfg)
        self.modality_heads = _build_heads(cfg)
        self.modality_postprocessors = _build_postprocessors()
        self.reset_parameters()

    # ---------------------------------------------------------------- initialisation
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Meta's initialisation (random weights for tests and the tiny profile).

        Runs as a no-op on meta tensors, so it costs nothing in an empty build.
        """
        for trunk in self.modality_trunks.values():
            for module in trunk.modules():
                if isinstance(module, nn.Linear):  # includes attention's out_proj
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        for name in ("vision", "audio"):
            pre = self.modality_preprocessors[name]
            scale = pre.cls_token.shape[-1] ** -0.5
            nn.init.normal_(pre.cls_token, std=scale)
            nn.init.normal_(pre.pos_embedding_helper.pos_embed, std=scale)
        text = self.modality_preprocessors["text"]
        nn.init.normal_(text.token_embedding.weight, std=0.02)
        nn.init.normal_(text.pos_embed, std=0.01)

    # ---------------------------------------------------------------- forward
    @property
    def dtype(self) -> torch.dtype:
        return self.modality_heads["vision"][2].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.modality_heads["vision"][2].weight.device

    def forward(
        self, inputs: Mapping[str, Tensor], normalize: bool = True, logit_scale: bool = False
    ) -> dict[str, Tensor]:
        """Embed each modality present in `inputs`.

        normalize=True: L2-normalise each clip embedding (what NExT-GPT feeds its projector).
        logit_scale=True: also multiply text by its learned scale and audio by 20, as Meta's own
        `ImageBindModel.forward` does (vision has no scale). Clip embeddings are averaged last.
        """
        unknown = set(inputs) - set(TOWERS)
        if unknown:
            raise KeyError(f"unsupported modalities {sorted(unknown)}; expected some of {TOWERS}")
        return {m: self._embed(m, x, normalize, logit_scale) for m, x in inputs.items()}

    def _embed(self, modality: str, x: Tensor, normalize: bool, logit_scale: bool) -> Tensor:
        x = x.to(self.device) if modality == "text" else x.to(self.device, self.dtype)
        # Videos and audio arrive as several clips per item: fold them into the batch...
        clips = x.shape[1] if x.ndim >= 5 else None
        if clips is not None:
            x = x.flatten(0, 1)
        emb = self._embed_clips(modality, x)
        normalizer, scaler = self._postprocessors(modality)
        if normalize:
            emb = normalizer(emb)
        if logit_scale and scaler is not None:
            emb = scaler(emb)
        # ...and average the clip embeddings back per item (no re-normalisation, as Meta).
        if clips is not None:
            emb = emb.unflatten(0, (-1, clips)).mean(dim=1)
        return emb

    def _postprocessors(self, modality: str) -> tuple[nn.Module, nn.Module | None]:
        """(normalisation, logit scale or None): vision's postprocessor is a bare Normalize."""
        post = self.modality_postprocessors[modality]
        return (post, None) if isinstance(post, Normalize) else (post[0], post[1])

    def _embed_clips(self, modality: str, x: Tensor) -> Tensor:
        """One clip (or image, or caption) per row -> [N, out_embed_dim], before post-processing."""
        pre, trunk, head = (
            self.modality_preprocessors[modality],
            self.modality_trunks[modality],
            self.modality_heads[modality],
        )
        if modality == "text":
            tokens, mask = pre(x)
            return head(trunk(tokens, attn_mask=mask), eot_positions(x, self.eot_token_id))
        return head(trunk(pre(x)))

    # ---------------------------------------------------------------- conveniences
    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        """[B,3,H,W] -> [B, out_embed_dim]."""
        if images.ndim != 4:
            raise ValueError(f"encode_image expects [B,3,H,W], got {tuple(images.shape)}")
        return self._embed("vision", images, normalize, False)

    def encode_video(self, video: Tensor, normalize: bool = True) -> Tensor:
        """[B,S,3,T,H,W] (S clips x crops) or a single clip [B,3,T,H,W] -> [B, out_embed_dim]."""
        if video.ndim == 5:
            video = video.unsqueeze(1)
        if video.ndim != 6:
            raise ValueError(f"encode_video expects [B,S,3,T,H,W], got {tuple(video.shape)}")
        return self._embed("vision", video, normalize, False)

    def encode_audio(self, audio: Tensor, normalize: bool = True) -> Tensor:
        """[B,S,1,mel,frames] (S clips) or a single clip [B,1,mel,frames] -> [B, out_embed_dim]."""
        if audio.ndim == 4:
            audio = audio.unsqueeze(1)
        if audio.ndim != 5:
            raise ValueError(f"encode_audio expects [B,S,1,mel,frames], got {tuple(audio.shape)}")
        return self._embed("audio", audio, normalize, False)

    def encode_text(self, ids: Tensor, normalize: bool = True) -> Tensor:
        """[B,L] token ids -> [B, out_embed_dim]."""
        if ids.ndim != 2:
            raise ValueError(f"encode_text expects [B,L] token ids, got {tuple(ids.shape)}")
        return self._embed("text", ids, normalize, False)


def build_encoder(cfg: EncoderConfig, empty: bool = False) -> ImageBindEncoder:
    """Build the encoder; with empty=True its parameters live on the meta device (no memory),
    ready for `imagebind_weights.load_imagebind_state_dict`, which then assigns the loaded tensors in place."""
    if not empty:
        return ImageBindEncoder(cfg)
    from accelerate import init_empty_weights

    with init_empty_weights():
        return ImageBindEncoder(cfg)
