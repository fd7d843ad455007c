"""Chapter 00: the configuration schema. One tree of dataclasses describes a whole system (encoder,
LLM, LoRA, signal tokens, projectors, decoders, training); `profiles.py` fills it in at three sizes.

The tree is saved as config.json next to every checkpoint (`to_dict` / `from_dict`), and any field
can be changed from Python or from the CLI's `--set key=value` (`parse_overrides`, `set_field`), with its type
checked against the field's current value.

Every hub id and download URL used by the package lives in `HUB` below, and nowhere else (here
rather than in `profiles.py` because the schema's defaults are the paper's own weights).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------
# Every external model the package can load, in one place. Loaders accept these ids or a local
# folder/file path in their place.
# --------------------------------------------------------------------------------------------
HUB = {
    "imagebind_huge": "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
    # Vicuna v0 (the paper's) exists only as delta weights over Meta's gated LLaMA-1; v1.5 is a
    # plain checkpoint on the hub and is what NExT-GPT's later code loads.
    "vicuna_7b": "lmsys/vicuna-7b-v1.5",
    # TinyLlama keeps the LLaMA architecture of Vicuna (same class, same LoRA targets) at 1.1 B
    # parameters and ships a chat template: it trains with LoRA on a T4 in fp16.
    "tinyllama_chat": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "sd_v1_5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "zeroscope_576w": "cerspense/zeroscope_v2_576w",
    "audioldm_l_full": "cvssp/audioldm-l-full",
    # AudioLDM-s is the same pipeline at 421 M parameters (vs. 975 M): leaves room on a T4.
    "audioldm_s_full_v2": "cvssp/audioldm-s-full-v2",
    # evaluation (`nextgpt_mini.evaluation`): CLIP score / CLIPSIM and CLAP score
    "clip_vit_b32": "openai/clip-vit-base-patch32",
    "clap_htsat": "laion/clap-htsat-unfused",
}
# Not on the hub: NExT-GPT's released checkpoint runs on Vicuna-7B v0, which users make from Meta's
# LLaMA-1 and lmsys/vicuna-7b-delta-v0 (docs/import-nextgpt.md); `import-nextgpt --llm` defaults to
# a local folder of this name.
VICUNA_V0 = "vicuna-7b-v0"


@dataclass
class EncoderConfig:
    """ImageBind. Field names follow Meta's `ImageBindModel` constructor where one exists."""

    weights: str | None = HUB["imagebind_huge"]  # URL, local path, or "package:<file>"
    out_embed_dim: int = 1024
    image_size: int = 224
    patch_size: int = 14
    video_frames: int = 2  # frames per clip, eaten by the (2, p, p) temporal patch embedding
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    vocab_size: int = 49408
    context_length: int = 77
    tokenizer: str = "clip-bpe"  # "clip-bpe" (Meta's vocabulary) or "package:<folder>"
    eot_token_id: int | None = None  # text pools here; None = vocab_size - 1 (CLIP's 49407)
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    audio_num_mel_bins: int = 128
    audio_target_len: int = 204
    audio_kernel_size: int = 16
    audio_stride: int = 10
    audio_drop_path: float = 0.1
    # Preprocessing (ImageBind's own transforms)
    sample_rate: int = 16000
    audio_clip_duration: float = 2.0
    audio_clips: int = 3
    video_clip_duration: float = 2.0
    video_clips: int = 5
    video_spatial_crops: int = 3


@dataclass
class LLMConfig:
    name_or_path: str = HUB["vicuna_7b"]  # hub id, local folder, or "package:<folder>"
    # "nextgpt" = '### Human: ... ### Assistant:'; "chat" = the model's own; "legacy" = NExT-GPT's
    # released checkpoint, tokenized as its code did (`prompts.py`, `nextgpt-mini import-nextgpt`)
    template: str = "nextgpt"
    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    intermediate_size: int = 11008
    vocab_size: int = 32000
    max_length: int = 512
    load_in_bits: int | None = None  # 4 or 8 = QLoRA through bitsandbytes (CUDA only)


@dataclass
class LoRAConfig:
    r: int = 32
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class SignalTokenConfig:
    image: int = 4  # [IMG0]..[IMG3]
    video: int = 24  # [VID0]..[VID23]
    audio: int = 8  # [AUD0]..[AUD7]

    def tokens(self, modality: str) -> list[str]:
        prefix = {"image": "IMG", "video": "VID", "audio": "AUD"}[modality]
        return [f"[{prefix}{i}]" for i in range(getattr(self, modality))]


@dataclass
class OutputProjectorConfig:
    """Transformer output projector: Linear(H -> d_model) -> nn.Transformer -> Linear(-> out)."""

    d_model: int = 512
    num_heads: int = 4
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.0
    num_queries: int = 77  # learned queries: one per conditioning token of the decoder
    out_dim: int = 768  # the decoder's conditioning width
    # A Linear from the N signal-token states, flattened, straight to the Q x out_dim output, added
    # to the transformer's. Not in the paper; the tiny profile needs it because its one-layer
    # transformer, in stage 2's few updates, collapses to the mean target although the LLM's states
    # carry the caption. At paper size it would be 1 B parameters (4 x 4096 -> 77 x 768), so off there.
    linear_path: bool = False


@dataclass
class DecoderConfig:
    name_or_path: str = ""  # hub id, local folder, or "tiny" (built locally)
    steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    num_frames: int = 0  # video only
    audio_seconds: float = 0.0  # audio only
    sample_rate: int = 16000  # audio only
    fps: int = 8  # video only


@dataclass
class TrainConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-3
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    steps: dict[str, int] = field(default_factory=lambda: {"1": 2000, "2": 2000, "3": 2000})
    mixed_precision: str = "fp16"  # accelerate: "no", "fp16", "bf16"
    gradient_checkpointing: bool = False
    alignment_scale: float = 1.0
    video_alignment_scale: float = 2.0
    distance: str = "l2"  # per-token L2 (the original), "mse" or "cosine"
    # stages 2-3, image/video only: weight of the frozen UNet's denoising loss on the projected
    # conditioning (the later NExT-GPT code); 0 = off. Needs the media, not just captions.
    denoising_loss: float = 0.0
    snr_gamma: float = 5.0  # Min-SNR weighting of that loss
    eval_every: int = 200  # held-out evaluation every N steps (and at the start and end); 0 = none
    # Periodic checkpoints, for runs that may be killed (a Colab reset, the OOM killer): every
    # `checkpoint_every` steps and/or every `checkpoint_minutes` of training (0 = off), written
    # atomically to OUT/checkpoints/step-N, the newest `keep_checkpoints` kept; `--resume` takes
    # the newest complete one and continues bit-exactly.
    checkpoint_every: int = 0
    checkpoint_minutes: float = 0.0
    keep_checkpoints: int = 2
    seed: int = 42
    # per-stage values of the fields above, e.g. {"2": {"lr": 3e-3, "batch_size": 8}}
    stage_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_stage(self, stage: str) -> "TrainConfig":
        """This config with the stage's overrides applied (the trainer and data use this)."""
        changes = dict(self.stage_overrides.get(str(stage), {}))
        fields = {f.name for f in dataclasses.fields(self)} - {"stage_overrides"}
        unknown = sorted(k for k in changes if k not in fields)
        if unknown:
            raise ValueError(f"train.stage_overrides[{stage!r}]: unknown or nested field(s) {unknown}")
        return dataclasses.replace(self, **changes)


@dataclass
class ProfileConfig:
    name: str
    encoder: EncoderConfig
    llm: LLMConfig
    lora: LoRAConfig
    signal_tokens: SignalTokenConfig
    image_projector: OutputProjectorConfig
    video_projector: OutputProjectorConfig
    audio_projector: OutputProjectorConfig
    image_decoder: DecoderConfig
    video_decoder: DecoderConfig
    audio_decoder: DecoderConfig
    train: TrainConfig
    seed: int = 42

    def projector(self, modality: str) -> OutputProjectorConfig:
        """The output projector of "image", "video" or "audio"."""
        return getattr(self, f"{modality}_projector")

    def decoder(self, modality: str) -> DecoderConfig:
        """The decoder of "image", "video" or "audio"."""
        return getattr(self, f"{modality}_decoder")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileConfig":
        return _rebuild(cls, data)


def _rebuild(cls, data):
    """Build a (possibly nested) dataclass from a dict made by `dataclasses.asdict`."""
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if name not in names:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        kwargs[name] = _rebuild(hints[name], value) if dataclasses.is_dataclass(hints[name]) else value
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Overrides: {"llm.max_length": 64} from Python, ["llm.max_length=64"] from the CLI
# --------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse CLI `--set key=value` items; values are read as JSON when they parse, else as text."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value (e.g. llm.max_length=64), got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def set_field(profile: ProfileConfig, dotted: str, value: Any) -> None:
    """Set `profile.<a>.<b>` = value, checking the field exists and the type is compatible."""
    parts = dotted.split(".")
    target: Any = profile
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise ValueError(f"unknown config field {dotted!r} (no {part!r})")
        target = getattr(target, part)
    last = parts[-1]
    if isinstance(target, dict):
        target[last] = value
        return
    if not dataclasses.is_dataclass(target) or last not in {f.name for f in dataclasses.fields(target)}:
        raise ValueError(f"unknown config field {dotted!r}")
    current = getattr(target, last)
    if dataclasses.is_dataclass(current):
        raise ValueError(f"{dotted!r} is a group of settings; set one of its fields, e.g. {dotted}.<field>")
    setattr(target, last, _coerce(value, current, dotted))


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Check `value` against the field's current value and convert where it is unambiguous."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
    elif isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(current, str) and isinstance(value, (str, int, float)):
        return str(value)
    elif isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    elif isinstance(current, dict) and isinstance(value, dict):
        return dict(value)  # e.g. train.stage_overrides={"1": {"batch_size": 4}}
    raise ValueError(f"{key}: expected a value like {current!r}, got {value!r}")
