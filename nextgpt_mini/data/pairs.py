"""Chapters 02 and 04: NExT-GPT's pair files, the captioned media of stages 1 and 2, and the
containers the two stages read them into (PairSet: embeddings + captions; TargetSet: captions +
decoder targets).

A pair file is a JSON list of one caption per media file, in the format of the dataset it comes
from: {"caption", "image_name"} (CC3M), {"caption", "video_name"} (WebVid) or {"audio_name",
"caption"} (AudioCaps). The media files sit in a folder next to it (images.json -> images/).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["PAIR_KEYS", "PairSet", "TargetSet", "read_pairs"]

# Which key names the media file, and the modality it holds.
PAIR_KEYS = {"image_name": "image", "video_name": "video", "audio_name": "audio"}


def read_pairs(pairs_json: str | os.PathLike, media_dir: str | os.PathLike | None = None
               ) -> tuple[str, list[Path], list[str]]:
    """(modality, files, captions) of a NExT-GPT pair file: a JSON list of {"caption", "image_name"}
    (CC3M), {"caption", "video_name"} (WebVid) or {"audio_name", "caption"} (AudioCaps). Files
    are looked up in `media_dir`, by default the folder named like the JSON file next to it
    (images.json -> images/)."""
    pairs_json = Path(pairs_json)
    try:
        records = json.loads(pairs_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{pairs_json}: not valid JSON ({err})") from err
    if not isinstance(records, list) or not records:
        raise ValueError(f"{pairs_json}: expected a non-empty JSON list of caption pairs")
    media_dir = Path(media_dir) if media_dir is not None else pairs_json.with_suffix("")
    first = records[0] if isinstance(records[0], dict) else {}
    name_key = next((k for k in PAIR_KEYS if k in first), None)
    if name_key is None:
        raise ValueError(f"{pairs_json}: record 0 has none of {sorted(PAIR_KEYS)}")
    files, captions = [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or name_key not in rec or not isinstance(rec.get("caption"), str):
            raise ValueError(f"{pairs_json}: record {i} needs {name_key!r} and a 'caption' string, got {rec!r}")
        files.append(media_dir / rec[name_key])
        captions.append(rec["caption"])
    return PAIR_KEYS[name_key], files, captions


@dataclass
class PairSet:
    """Captioned media of one modality, as encoder embeddings (stage 1)."""

    modality: str
    embeddings: torch.Tensor  # [N, D], unit norm
    captions: list[str]
    items: list | None = None  # items that can score a caption (the toy world's), if any
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class TargetSet:
    """Captions of one modality with their decoder's conditioning targets (stage 2)."""

    modality: str
    captions: list[str]
    targets: torch.Tensor  # [N, *target_shape]
    items: list | None = None
    names: list[str] = field(default_factory=list)
    latents: torch.Tensor | None = None  # the media's VAE latents, for the optional denoising loss

    def __len__(self) -> int:
        return len(self.captions)
