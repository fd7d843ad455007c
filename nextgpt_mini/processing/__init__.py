"""Chapter 01: media loaders that reproduce ImageBind's own preprocessing without torchvision or
torchaudio.

ImageBind prepares its inputs in `imagebind/data.py` with torchvision, torchaudio, pytorchvideo
and decord. None of those can live next to the CPU torch this project uses (see
environment-notes.md), so this package redoes each step with PIL, soundfile / PyAV and plain
torch, in the same order and with the same float32 arithmetic, one module per modality:

image.py  `Image.open(...).convert("RGB")` -> Resize(S, BICUBIC) of the shorter side (torchvision
          on a PIL image = PIL's own antialiased bicubic resize) -> CenterCrop(S) -> [0, 1] -> CLIP
          mean/std  =>  [3, S, S]
audio.py  float samples in [-1, 1] -> resample to 16 kHz (torchaudio's windowed-sinc algorithm)
          -> ConstantClipsPerVideoSampler clips (clips.py) -> per clip: subtract the mean, Kaldi
          fbank (torchaudio's formula; cross-checked against kaldi-native-fbank in the tests),
          zero-pad / cut to the target frame count, [mel, frames] -> (x + 4.268) / 9.138
          =>  [clips, 1, mel, frames]
video.py  decode (PyAV) -> ConstantClipsPerVideoSampler clips -> per clip `video_frames` frames by
          UniformTemporalSubsample -> / 255 -> ShortSideScale(S) (bilinear) -> CLIP mean/std ->
          SpatialCrop(S, num_crops)  =>  [clips * crops, 3, frames, S, S]
text.py   CLIP BPE ids identical to ImageBind's SimpleTokenizer (sot 49406, eot 49407, pad 0), or a
          `tokenizers` tokenizer.json shipped with the package for the tiny profile.

Every size comes from `EncoderConfig`, so the tiny and paper profiles run the same code. Where this
package departs from ImageBind it says so next to the code (search for "ImageBind would"). A file
that cannot be loaded raises `MediaError` (errors.py) naming the file.

This module picks the loader by file extension (`modality_of`, `load_media`) and re-exports the
public names of the modules above, so `from nextgpt_mini.processing import load_audio` works.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.processing.audio import (
    AUDIO_EXTENSIONS,
    AUDIO_MEAN,
    AUDIO_STD,
    audio_to_tensor,
    kaldi_fbank,
    load_audio,
    read_audio,
    resample,
    waveform2melspec,
)
from nextgpt_mini.processing.clips import clip_timepoints
from nextgpt_mini.processing.errors import MediaError, MediaNotFoundError, check_file
from nextgpt_mini.processing.image import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGE_EXTENSIONS,
    center_crop_box,
    image_to_tensor,
    load_image,
    resize_shorter_side_size,
)
from nextgpt_mini.processing.text import ClipBPETokenizer, PackageTokenizer, clip_bpe_path, load_text_tokenizer
from nextgpt_mini.processing.video import (
    VIDEO_EXTENSIONS,
    frames_to_tensor,
    load_video,
    short_side_scale,
    spatial_crops,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_MEAN",
    "AUDIO_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipBPETokenizer",
    "MediaError",
    "MediaNotFoundError",
    "PackageTokenizer",
    "audio_to_tensor",
    "center_crop_box",
    "check_file",
    "clip_bpe_path",
    "clip_timepoints",
    "frames_to_tensor",
    "image_to_tensor",
    "kaldi_fbank",
    "load_audio",
    "load_image",
    "load_media",
    "load_text_tokenizer",
    "load_video",
    "modality_of",
    "read_audio",
    "resample",
    "resize_shorter_side_size",
    "short_side_scale",
    "spatial_crops",
    "waveform2melspec",
]


def modality_of(path: str | os.PathLike) -> str:
    """'image', 'audio' or 'video' from the file extension; MediaError for anything else."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise MediaError(
        f"{path}: unsupported file extension {('.' + ext) if ext else '(none)'}; supported: "
        f"image {', '.join(IMAGE_EXTENSIONS)}; audio {', '.join(AUDIO_EXTENSIONS)}; "
        f"video {', '.join(VIDEO_EXTENSIONS)}"
    )


def load_media(path: str | os.PathLike, cfg: EncoderConfig) -> tuple[str, torch.Tensor]:
    """Load one media file by its extension: ("image", [3,S,S]), ("audio", [clips,1,mel,T])
    or ("video", [clips*crops,3,frames,S,S])."""
    modality = modality_of(path)
    loader = {"image": load_image, "audio": load_audio, "video": load_video}[modality]
    return modality, loader(path, cfg)
