"""Chapter 08: parameter accounting: per module, how many parameters, how many train, share of the system.

`parameter_table(parts)` counts live modules (any profile). `full_size_table(profile)` builds the
profile's encoder and LLM on the meta device (no download, no memory) and adds LoRA and the
projectors by their exact sizes, so the paper profile's table is available on any laptop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nextgpt_mini.config import ProfileConfig
from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.models.decoders import NOT_LOADED, decoder_parameter_counts
from nextgpt_mini.models.imagebind import build_encoder
from nextgpt_mini.models.llm import build_empty_llm, lora_parameter_count
from nextgpt_mini.models.projectors import OutputProjector
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.training.stages import STAGE_TRAINS

# NExT-GPT's Table 1, in parameters, for comparison.
PAPER_TABLE_1 = {"ImageBind": 1.2e9, "input projector": 4e6, "LLM": 7e9, "LoRA": 33e6,
                 "output projectors": 31e6 + 32e6 + 31e6,  # image, video, audio
                 "image decoder": 1.3e9, "video decoder": 1.8e9, "audio decoder": 975e6}
# Where a row differs from Table 1 by more than 5%, the sub-modules that explain it.
DIFFERENCES = {
    "ImageBind": "the paper counts all of imagebind_huge (1,200,781,057); NExT-GPT uses only the vision, "
    "text and audio branches counted here; the depth, thermal and IMU branches are the other 127,683,328",
    "image decoder": "counted with Stable Diffusion's safety checker (303,981,588: a CLIP ViT-L/14 vision tower), "
    "as the paper's 1.3 B suggests; UNet + VAE + text encoder alone are 1,066,235,307",
}


@dataclass
class Row:
    module: str
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def count(module: nn.Module | list[nn.Parameter]) -> tuple[int, int]:
    params = list(module.parameters()) if isinstance(module, nn.Module) else list(module)
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def parameter_table(parts: dict[str, nn.Module | list[nn.Parameter]]) -> list[Row]:
    return [Row(name, *count(part)) for name, part in parts.items()]


def full_size_table(profile: ProfileConfig | str = "paper", stage: str = "3") -> list[Row]:
    """Counts at full size without weights: encoder and LLM built empty, the rest computed."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    trains = STAGE_TRAINS[stage]
    encoder = build_encoder(profile.encoder, empty=True)
    llm = build_empty_llm(profile.llm)
    hidden, enc_dim = profile.llm.hidden_size, profile.encoder.out_embed_dim
    n_signal = 2 + profile.signal_tokens.image + profile.signal_tokens.video + profile.signal_tokens.audio
    input_proj = enc_dim * hidden + hidden
    lora = lora_parameter_count(llm, profile.lora)
    outputs = output_projector_count(profile)
    rows = [
        Row("ImageBind", count(encoder)[0], 0),
        Row("input projector", input_proj, input_proj if "input_projector" in trains else 0),
        Row("LLM", count(llm)[0], 0),
        Row("signal-token rows", 2 * n_signal * hidden, 2 * n_signal * hidden if "signal_rows" in trains else 0),
        Row("LoRA", lora, lora if "lora" in trains else 0),
        Row("output projectors", outputs, outputs if "output_projectors" in trains else 0),
    ]
    return rows


def decoder_counts(profile: ProfileConfig, loaded_only: bool = False) -> dict[str, int]:
    """{"image decoder": n, ...}: each decoder pipeline's parameters (all its models, or with
    `loaded_only` those `load_pipeline` loads), built on the meta device from the configs in
    `decoder_configs.FULL_SIZE_DECODERS` (tiny: the local toy pipelines)."""
    return {f"{m} decoder": sum(n for name, n in decoder_parameter_counts(profile, m).items()
                                if not (loaded_only and name in NOT_LOADED)) for m in MODALITIES}


def full_size_table_with_decoders(profile: ProfileConfig | str = "paper", stage: str = "3") -> list[Row]:
    """`full_size_table` plus one frozen row per decoder: the whole system of Table 1."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    return full_size_table(profile, stage) + [Row(name, n, 0) for name, n in decoder_counts(profile).items()]


def output_projector_count(profile: ProfileConfig, modality: str | None = None) -> int:
    """The output projectors' parameters (all three, or one modality's), counted on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for m in ([modality] if modality else MODALITIES)
                   for p in OutputProjector(profile.llm.hidden_size, profile.projector(m),
                                            getattr(profile.signal_tokens, m)).parameters())


def format_table(rows: list[Row], reference: dict[str, float] | None = None) -> str:
    """A fixed-width table; with `reference`, a column comparing each row to the paper."""
    everything = sum(r.total for r in rows)
    head = f"{'module':22s} {'total':>15s} {'trainable':>13s} {'frozen':>15s} {'% of all':>9s}"
    if reference:
        head += f" {'paper':>8s} {'diff':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r.module:22s} {r.total:15,d} {r.trainable:13,d} {r.frozen:15,d} {100 * r.total / everything:8.2f}%"
        if reference:
            ref = reference.get(r.module)
            line += f" {_short(ref):>8s} {100 * (r.total - ref) / ref:+6.1f}%" if ref else f" {'':>8s} {'':>7s}"
        lines.append(line)
    trainable = sum(r.trainable for r in rows)
    lines.append("-" * len(head))
    lines.append(f"{'all':22s} {everything:15,d} {trainable:13,d} {everything - trainable:15,d} {'':>9s}")
    lines.append(f"trainable share: {100 * trainable / everything:.3f}% of these modules")
    if reference:
        for r in rows:
            ref = reference.get(r.module)
            if ref and abs(r.total - ref) / ref > 0.05 and r.module in DIFFERENCES:
                lines.append(f"{r.module}: {DIFFERENCES[r.module]}")
    return "\n".join(lines)


def _short(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
