"""Chapter 01: ImageBind's video transform, without torchvision, pytorchvideo or decord.

decode (PyAV) -> ConstantClipsPerVideoSampler clips -> per clip `video_frames` frames by
UniformTemporalSubsample -> / 255 -> ShortSideScale(S) (bilinear) -> CLIP mean/std ->
SpatialCrop(S, num_crops)  =>  float32 [clips * crops, 3, frames, S, S]

`load_video` decodes a file and hands the frames to `frames_to_tensor`, which is everything after
decoding; the tiny encoder's training videos go through the same function, so they get the
numbers a user's MP4 gets.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.processing.clips import clip_timepoints
from nextgpt_mini.processing.errors import MediaError, check_file, decode_error
from nextgpt_mini.processing.image import CLIP_MEAN, CLIP_STD

__all__ = [
    "VIDEO_EXTENSIONS",
    "clip_frame_indices",
    "frames_to_tensor",
    "load_video",
    "short_side_scale",
    "spatial_crops",
]

VIDEO_EXTENSIONS = ("mp4", "avi", "mov", "mkv", "webm")


def short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
    """pytorchvideo's ShortSideScale on float32 [C, T, H, W]: bilinear, align_corners=False,
    no antialiasing; the long side becomes floor(long / short * size)."""
    _, _, h, w = x.shape
    if w < h:
        new_h, new_w = math.floor((float(h) / w) * size), size
    else:
        new_h, new_w = size, math.floor((float(w) / h) * size)
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)


def _uniform_crop_offsets(height: int, width: int, size: int, spatial_idx: int) -> tuple[int, int]:
    """(y, x) offsets of ImageBind's uniform_crop: 0/1/2 = left/centre/right along a wide frame,
    top/centre/bottom along a tall one (a square frame counts as wide)."""
    y = math.ceil((height - size) / 2)
    x = math.ceil((width - size) / 2)
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_idx]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_idx]
    return y, x


def spatial_crops(video: torch.Tensor, size: int, num_crops: int) -> list[torch.Tensor]:
    """ImageBind's SpatialCrop on one [C, T, H, W] clip: 3 crops (0, 1, 2) or 1 crop (centre)."""
    if num_crops == 3:
        indices = [0, 1, 2]
    elif num_crops == 1:
        indices = [1]
    else:
        raise ValueError(f"video_spatial_crops must be 1 or 3 (as in ImageBind's SpatialCrop), got {num_crops}")
    h, w = video.shape[-2:]
    out = []
    for idx in indices:
        y, x = _uniform_crop_offsets(h, w, size, idx)
        out.append(video[:, :, y : y + size, x : x + size])
    return out


def _uniform_temporal_subsample(n: int, num_samples: int) -> list[int]:
    """pytorchvideo's UniformTemporalSubsample indices: linspace(0, n-1, k).clamp.long();
    repeats frames when the clip has fewer than k."""
    idx = torch.linspace(0, n - 1, num_samples)
    return torch.clamp(idx, 0, n - 1).long().tolist()



def clip_frame_indices(num_frames: int, fps: float, cfg: EncoderConfig, source: str = "video") -> list[list[int]]:
    """The frames of each clip, as pytorchvideo's decord backend picks them: duration =
    num_frames / fps; clip k holds frames ceil(fps * start) .. ceil(fps * end) - 1 (cut at the last
    frame), of which `video_frames` are picked uniformly (repeated when there are fewer)."""
    duration = float(num_frames) / fps
    wanted: list[list[int]] = []
    for start, end in clip_timepoints(duration, cfg.video_clip_duration, cfg.video_clips):
        first = math.ceil(fps * start)
        last = min(math.ceil(fps * end), num_frames)
        indices = list(range(first, last))
        if not indices:  # cannot happen with ConstantClipsPerVideoSampler's starts; be explicit
            raise MediaError(f"{source}: no frames between {float(start):.3f} s and {float(end):.3f} s")
        wanted.append([indices[k] for k in _uniform_temporal_subsample(len(indices), cfg.video_frames)])
    return wanted


def frames_to_tensor(
    frames: np.ndarray | torch.Tensor | Mapping[int, np.ndarray],
    fps: float,
    cfg: EncoderConfig,
    *,
    num_frames: int | None = None,
) -> torch.Tensor:
    """Decoded frames at `fps` -> float32 [video_clips * video_spatial_crops, 3, video_frames, S, S]:
    the clips of `clip_frame_indices`, each / 255, ShortSideScale, CLIP mean/std, SpatialCrop.

    `frames` is uint8 [T, H, W, 3], or (what `load_video` passes: it decodes only the frames the
    clips use) a mapping frame index -> uint8 [H, W, 3] with `num_frames` the video's frame count.
    """
    if isinstance(frames, Mapping):
        if num_frames is None:
            raise ValueError("frames_to_tensor needs num_frames when frames is a mapping")
    else:
        frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        num_frames = frames.shape[0]
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    fps = float(fps)
    size = int(cfg.image_size)
    mean = torch.as_tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None, None]
    std = torch.as_tensor(CLIP_STD, dtype=torch.float32)[:, None, None, None]
    out: list[torch.Tensor] = []
    for clip in clip_frame_indices(num_frames, fps, cfg):
        clip_frames = torch.from_numpy(np.stack([frames[i] for i in clip]))  # [T, H, W, 3] uint8
        x = clip_frames.to(torch.float32).permute(3, 0, 1, 2)  # decord -> thwc_to_cthw -> float32
        x = x / 255.0
        x = short_side_scale(x, size)
        x = x.sub_(mean).div_(std)
        out.extend(spatial_crops(x, size, cfg.video_spatial_crops))
    return torch.stack(out, dim=0).contiguous()


def _probe_video(container, p: Path) -> tuple[int, float]:
    """(frame count, fps) as decord reports them: the number of non-empty packets of the first
    video stream, and its average frame rate."""
    if not container.streams.video:
        raise MediaError(f"{p}: has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    num_frames = sum(1 for packet in container.demux(stream) if packet.size)
    if num_frames == 0:
        raise MediaError(f"{p}: the video stream contains no frames")
    if not rate or float(rate) <= 0:
        raise MediaError(f"{p}: the video stream has no usable frame rate")
    return num_frames, float(rate)


def _decode_frames(container, needed: set[int]) -> dict[int, np.ndarray]:
    """RGB24 frames [H, W, 3] of the first video stream, by index, for the indices in `needed`."""
    decoded: dict[int, np.ndarray] = {}
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    last_needed = max(needed)
    for i, frame in enumerate(container.decode(stream)):
        if i in needed:
            decoded[i] = frame.to_ndarray(format="rgb24")
        if i >= last_needed:
            break
    return decoded


def _fill_missing_frames(p: Path, decoded: dict[int, np.ndarray], needed: set[int]) -> None:
    """The container announced more packets than the decoder produced frames; decord would fail or
    repeat here. Use the nearest decoded frame before each missing one (with a warning)."""
    if not decoded:
        raise MediaError(f"{p}: no video frame could be decoded")
    missing = sorted(needed - decoded.keys())
    if missing:
        warnings.warn(f"{p}: frames {missing} could not be decoded; using the nearest earlier frame", stacklevel=3)
        have = sorted(decoded)
        for i in missing:
            before = [j for j in have if j <= i]
            decoded[i] = decoded[before[-1] if before else have[0]]


def load_video(path: str | os.PathLike, cfg: EncoderConfig) -> torch.Tensor:
    """Video file -> float32 [video_clips * video_spatial_crops, 3, video_frames, S, S].

    Frame bookkeeping follows pytorchvideo's decord backend: frame count = number of packets in
    the video stream, fps = the stream's average frame rate, duration = count / fps; clip k holds
    frames ceil(fps * start) .. ceil(fps * end) - 1 (cut at the last frame), from which
    `video_frames` are picked uniformly. A video shorter than one clip (a single frame included)
    works: every clip covers the whole video and frames repeat when there are fewer than
    `video_frames`. Frames are decoded by PyAV to RGB24 (decord uses the same FFmpeg converter,
    but its scaler flags may differ by a grey level here and there).
    """
    import av

    p = check_file(path)
    try:
        with av.open(str(p)) as container:
            num_frames, fps = _probe_video(container, p)
        wanted = clip_frame_indices(num_frames, fps, cfg, source=str(p))
        needed = {i for clip in wanted for i in clip}
        with av.open(str(p)) as container:
            decoded = _decode_frames(container, needed)
    except MediaError:
        raise
    except Exception as exc:  # FFmpegError subclasses, OSError, ValueError, ...
        raise decode_error(p, "decode the video", exc) from exc
    _fill_missing_frames(p, decoded, needed)
    return frames_to_tensor(decoded, fps, cfg, num_frames=num_frames)
