"""Chapter 01: where the clips of a recording start and end, for audio and video alike.

ImageBind cuts both audio and video with pytorchvideo's ConstantClipsPerVideoSampler and reads
the clip boundaries out of it with `get_clip_timepoints`; `clip_timepoints` gives the same
boundaries, with the same Fraction arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["CLIP_SPACING", "clip_timepoints"]

# pytorchvideo's ConstantClipsPerVideoSampler spaced clip starts by (duration - clip) / clips in
# release 0.1.5 (PyPI) and by (duration - clip) / max(clips - 1, 1) on its main branch, which is
# what ImageBind's requirements pin (a git commit) and what puts the last clip at the very end.
CLIP_SPACING = "pytorchvideo-main"


def clip_timepoints(
    duration: float,
    clip_duration: float,
    clips_per_video: int,
    *,
    spacing: str = CLIP_SPACING,
) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of each clip, as ImageBind's `get_clip_timepoints` reads them out of
    ConstantClipsPerVideoSampler, with the same Fraction arithmetic.

    Starts are k * (max(duration - clip, 0) / max(clips - 1, 1)) for k = 0 .. clips-1
    (`spacing="pytorchvideo-0.1.5"`: divided by `clips` instead). A source shorter than one clip
    gets `clips` copies of (0, clip_duration).
    """
    if clips_per_video < 1:
        raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
    if spacing == "pytorchvideo-main":
        divisor = max(clips_per_video - 1, 1)
    elif spacing == "pytorchvideo-0.1.5":
        divisor = clips_per_video
    else:
        raise ValueError(f"spacing must be 'pytorchvideo-main' or 'pytorchvideo-0.1.5', got {spacing!r}")
    clip = Fraction(clip_duration)
    max_start = Fraction(max(duration - clip, 0))  # float - Fraction -> float, as in pytorchvideo
    step = Fraction(max_start, divisor)
    out = []
    index = 0
    while True:
        start = step * index
        out.append((start, start + clip))
        index += 1
        if index >= clips_per_video or step * index > max_start:
            return out
