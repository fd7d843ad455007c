"""Chapter 01: the errors every media loader raises, and the file check they all start with.

A file that cannot become model input raises `MediaError` (a ValueError) whose message names the
file and says what is wrong with it, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MediaError", "MediaNotFoundError", "check_file", "decode_error"]


class MediaError(ValueError):
    """A media file that cannot be turned into model input; the message names the file."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The file does not exist (catchable as MediaError, ValueError or FileNotFoundError)."""


def check_file(path: str | os.PathLike) -> Path:
    """`path` as a Path if it is a non-empty regular file, else MediaError (MediaNotFoundError
    when it does not exist)."""
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: the file is empty (0 bytes)")
    return p


def decode_error(path: Path, what: str, exc: BaseException) -> MediaError:
    """The MediaError for a decoder's exception `exc` while trying to `what` ("read the image")."""
    detail = str(exc).strip() or type(exc).__name__
    return MediaError(f"{path}: cannot {what}; the file looks truncated or corrupt ({type(exc).__name__}: {detail})")
