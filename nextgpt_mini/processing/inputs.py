"""Chapter 01: what an input to `encode` is — a media file (by its extension) or a piece of text.

A string that names an existing file, or ends in a media extension, is a file; anything else is
text; `Text("photo.png")` forces text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nextgpt_mini.processing import modality_of
from nextgpt_mini.processing.audio import AUDIO_EXTENSIONS
from nextgpt_mini.processing.errors import MediaError, MediaNotFoundError
from nextgpt_mini.processing.image import IMAGE_EXTENSIONS
from nextgpt_mini.processing.video import VIDEO_EXTENSIONS

MEDIA_EXTENSIONS = frozenset(IMAGE_EXTENSIONS + AUDIO_EXTENSIONS + VIDEO_EXTENSIONS)
INPUT_MODALITIES = ("image", "video", "audio", "text")

InputLike = str | os.PathLike


class Text(str):
    """An input that is text whatever it looks like: `Text("photo.png")` is the words "photo.png"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Text({str.__repr__(self)})"


@dataclass(frozen=True)
class ResolvedInput:
    """One resolved input: `source` is the path (files) or the text itself."""

    modality: str  # "image" | "video" | "audio" | "text"
    source: str
    path: Path | None = None

    @property
    def is_file(self) -> bool:
        return self.path is not None


# --------------------------------------------------------------------------------------------
# Resolving inputs
# --------------------------------------------------------------------------------------------
def _is_existing_file(text: str) -> bool:
    if not text or "\n" in text or len(text) > 4096:
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):  # a name too long for the OS, a NUL byte...
        return False


def _has_media_extension(text: str) -> bool:
    if "\n" in text:
        return False
    return Path(text).suffix.lower().lstrip(".") in MEDIA_EXTENSIONS


def resolve_input(x: InputLike) -> ResolvedInput:
    """Decide what one input is; raise MediaError for a missing file or unsupported extension."""
    if isinstance(x, Text):
        return ResolvedInput("text", str(x))
    if isinstance(x, os.PathLike):
        path = Path(x)
    elif isinstance(x, str):
        if not (_is_existing_file(x) or _has_media_extension(x)):
            return ResolvedInput("text", x)
        path = Path(x)
    else:
        raise TypeError(f"encode inputs are file paths or strings, got {type(x).__name__}: {x!r}")
    path = path.expanduser()
    if not path.exists():
        raise MediaNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    return ResolvedInput(modality_of(path), str(path), path)  # modality_of names unsupported extensions


def resolve_inputs(inputs: InputLike | Iterable[InputLike]) -> list[ResolvedInput]:
    """`resolve_input` over a list (a single string or path counts as a list of one)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    return [resolve_input(x) for x in inputs]
