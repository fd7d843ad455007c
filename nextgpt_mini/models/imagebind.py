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
`nextgpt_mini.hub`. The layers the towers are made of (patch and text preprocessors, transformer
blocks, heads) are in `imagebind_layers.py`, as Meta keeps them apart from the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.models.imagebind_layers import (
    ClsHead,
    EotHead,
    LogitScale,
    Normalize,
    PadIm2Video,
    PatchEmbed,
    PatchPreprocessor,
    TextPreprocessor,
    Trunk,
    eot_positions,
)

TOWERS = ("vision", "text", "audio")  # the modality towers kept (Meta's names)
# Present in Meta's checkpoint, never used by NExT-GPT: dropped before loading.
SKIPPED_MODALITIES = ("depth", "thermal", "imu")
# The vision stem is a Conv3d with kernel (2, p, p): two frames make one temporal patch.
TEMPORAL_KERNEL = 2
# Meta's postprocessors: text has CLIP's learnable temperature (init 1/0.07); audio a fixed 20.
TEXT_LOGIT_SCALE_INIT = 1 / 0.07
AUDIO_LOGIT_SCALE = 20.0


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
