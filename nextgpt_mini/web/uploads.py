"""Chapter 07: what the web demo accepts from a browser, checked before any of it reaches the model.

A file is taken only if it lies inside the upload folder, is no larger than the limit, and its
first bytes say it is an image, a sound or a video of a kind the loaders read, matching its
extension (the loaders pick a decoder by extension). Decoding problems surface later, from the
loaders, as `MediaError`. Every refusal is an `UploadRejected` whose message names the file by its
own name, never by a server path, so it can be shown in the chat as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from nextgpt_mini.processing import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

READABLE = "images (PNG, JPEG, GIF, BMP, WebP, TIFF), sounds (WAV, FLAC, OGG, MP3, M4A) or videos (MP4, MOV, AVI, MKV, WebM)"


class UploadRejected(ValueError):
    """A file the demo will not pass to the model; the message is meant for the person who sent it."""


def sniff(head: bytes) -> tuple[str, str] | None:
    """(modality, format) from a file's first 16+ bytes, or None when they match nothing readable."""
    riff = head[8:12] if head[:4] == b"RIFF" else b""
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "GIF"
    if head.startswith(b"BM"):
        return "image", "BMP"
    if riff == b"WEBP":
        return "image", "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "TIFF"
    if riff == b"WAVE":
        return "audio", "WAV"
    if head.startswith(b"fLaC"):
        return "audio", "FLAC"
    if head.startswith(b"OggS"):
        return "audio", "OGG"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "MP3"
    if brand in (b"M4A ", b"M4B "):
        return "audio", "M4A"
    if brand:
        return "video", "MP4/MOV"
    if riff == b"AVI ":
        return "video", "AVI"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video", "MKV/WebM"
    return None


def modality_by_extension(name: str) -> str | None:
    ext = Path(name).suffix.lower().lstrip(".")
    for modality, extensions in (("image", IMAGE_EXTENSIONS), ("audio", AUDIO_EXTENSIONS), ("video", VIDEO_EXTENSIONS)):
        if ext in extensions:
            return modality
    return None


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_upload(path: str | os.PathLike, roots: list[str | os.PathLike], max_bytes: int) -> str:
    """The modality of an uploaded file, or UploadRejected saying why it is refused.

    `roots`: the folders uploads may come from (symlinks and '..' are resolved first, so a path
    that points outside them is refused however it is written)."""
    name = Path(path).name or "the file"
    real = Path(path).resolve()
    if not inside(real, [Path(r).resolve() for r in roots]):
        raise UploadRejected(f"{name}: refused, it was not uploaded through this page")
    if not real.is_file():
        raise UploadRejected(f"{name}: no such uploaded file (it may have expired: attach it again)")
    size = real.stat().st_size
    if size > max_bytes:
        raise UploadRejected(f"{name}: {size / 1e6:.1f} MB is over this demo's limit of {max_bytes / 1e6:.0f} MB")
    if size == 0:
        raise UploadRejected(f"{name}: the file is empty")
    with open(real, "rb") as f:
        found = sniff(f.read(16))
    if found is None:
        raise UploadRejected(f"{name}: not a file this demo reads; attach {READABLE}")
    modality, kind = found
    named = modality_by_extension(name)
    if named != modality:
        expected = {"image": "an image", "audio": "a sound", "video": "a video"}.get(named, "no media type this demo reads")
        raise UploadRejected(f"{name}: its name says {expected} but it holds {kind} data; rename it or attach {READABLE}")
    return modality
