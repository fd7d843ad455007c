"""Chapter 01: ImageBind checkpoints: read, filter, load strictly, convert to safetensors.

Meta's `imagebind_huge.pth` holds six modalities; NExT-GPT uses three, so the depth, thermal and
IMU entries are dropped (`filter_state_dict`) before a strict load into `ImageBindEncoder`. An
encoder built on the meta device receives the loaded tensors in place of its empty ones, so the
4.3 GB of weights exist in memory once. `load_encoder(cfg)` is the one call the rest of the package
makes: resolve `cfg.weights` (see `nextgpt_mini.hub.resolve_weights`), load, freeze.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.hub import resolve_weights
from nextgpt_mini.models.imagebind import SKIPPED_MODALITIES, ImageBindEncoder, build_encoder
from nextgpt_mini.utils import atomic_path, frozen_dtype

__all__ = ["convert_to_safetensors", "filter_state_dict", "load_encoder", "load_imagebind_state_dict", "read_state_dict"]

logger = logging.getLogger(__name__)


def filter_state_dict(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """Drop the depth/thermal/IMU entries of a full ImageBind checkpoint.

    Keys look like "modality_trunks.depth.blocks.0...": the modality is the second component.
    Returns (kept entries, number of skipped keys).
    """
    kept, skipped = {}, 0
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) > 1 and parts[1] in SKIPPED_MODALITIES:
            skipped += 1
        else:
            kept[key] = value
    return kept, skipped


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a `.safetensors` file or a `.pth` (with weights_only=True: no pickled code runs)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return dict(state)


def load_imagebind_state_dict(model: ImageBindEncoder, path_or_state: str | os.PathLike | Mapping[str, Tensor]) -> int:
    """Load ImageBind weights strictly (after dropping depth/thermal/IMU); return how many
    keys were skipped. A missing or unexpected key, or a shape mismatch, raises RuntimeError.

    If the model was built empty (meta parameters), the loaded tensors are assigned in place
    of the meta ones rather than copied, so no second copy of the weights is ever made.
    """
    state = path_or_state if isinstance(path_or_state, Mapping) else read_state_dict(path_or_state)
    state, skipped = filter_state_dict(state)
    assign = any(p.is_meta for p in model.parameters())
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as err:
        source = "state dict" if isinstance(path_or_state, Mapping) else str(path_or_state)
        raise RuntimeError(f"{source} does not match ImageBindEncoder({model.cfg.out_embed_dim}-d): {err}") from err
    if skipped:
        logger.info("ImageBind: skipped %d keys of unused modalities %s", skipped, SKIPPED_MODALITIES)
    return skipped


def convert_to_safetensors(pth_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Rewrite Meta's `.pth` as `.safetensors` with only vision/text/audio (about 4.3 GB).

    safetensors loads without unpickling and can be memory-mapped. Written atomically: an
    interrupted conversion never leaves a truncated file at `out_path`.
    """
    from safetensors.torch import save_file

    state, skipped = filter_state_dict(read_state_dict(pth_path))
    state = {k: v.contiguous() for k, v in state.items()}
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "source": Path(pth_path).name,
                                             "skipped_keys": str(skipped)})
    return out_path


def load_encoder(cfg: EncoderConfig, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> ImageBindEncoder:
    """The encoder of a profile, ready to use: cfg.weights resolved (`resolve_weights`) and loaded
    strictly, in eval mode, every parameter frozen (NExT-GPT never trains ImageBind), on `device`
    (default: the CPU) in `dtype` (default `utils.frozen_dtype(device)`: fp32 on the CPU, 16-bit on
    a GPU). The tiny profile's weights ship with the package; rebuild them with
    `nextgpt-mini build-tiny encoder`."""
    if cfg.weights is None:
        raise ValueError("cfg.weights is None: there are no weights to load (set encoder.weights)")
    model = build_encoder(cfg, empty=True)
    load_imagebind_state_dict(model, resolve_weights(cfg.weights))
    model.eval().requires_grad_(False)
    device = torch.device(device if device is not None else "cpu")
    return model.to(device, dtype or frozen_dtype(device))
