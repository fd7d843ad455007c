"""Chapters 05 and 07: writing media files: PNG (PIL), WAV (soundfile), MP4 (PyAV). Every write is atomic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from nextgpt_mini.utils import atomic_path


def save_image(image: Image.Image | np.ndarray, path: str | os.PathLike) -> Path:
    """Save an RGB image (PIL or uint8 [H, W, 3]) as PNG. Metadata-free, so bytes are stable."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(_to_uint8(image))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=False)
    return Path(path)


def save_audio(wave: np.ndarray, path: str | os.PathLike, sample_rate: int) -> Path:
    """Save float audio in [-1, 1], shape [T] (mono) or [T, C], as 16-bit PCM WAV."""
    import soundfile as sf

    wave = np.asarray(wave, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise ValueError(f"{path}: audio contains NaN or inf samples")
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def save_video(frames: np.ndarray, path: str | os.PathLike, fps: int) -> Path:
    """Save frames [T, H, W, 3] (uint8, or float in [0, 1]) as an H.264 MP4.

    The encoder gets a fixed thread count, no timestamps from the wall clock and no macroblock
    tree: with x264's mbtree on, the same frames gave different bytes in about 1 run in 30 (its
    lookahead is not deterministic at one thread); with it off, 300 runs in 300 matched.
    """
    import av

    frames = _to_uint8(np.asarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: expected frames [T, H, W, 3], got shape {frames.shape}")
    t, h, w, _ = frames.shape
    # yuv420p needs even sides; pad by one pixel rather than fail on odd sizes
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {
                "crf": "18",
                "preset": "medium",
                "threads": "1",
                "flags": "+bitexact",
                "x264-params": "mbtree=0",
            }
            stream.codec_context.thread_count = 1
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return Path(path)


def read_video_frames(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video as uint8 [T, H, W, 3]; return the frames and the fps."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: the video holds no frames")
    return np.stack(frames), fps


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if not np.isfinite(array).all():
        raise ValueError("image data contains NaN or inf")
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
