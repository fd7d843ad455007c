"""Chapters 05 and 09: a judge of toy media that reads attributes from pixels and samples, never through the tiny encoder.

Generated media must be judged by something other than the model whose space the system was
trained on, so this reader looks only at the media, as a person checking the picture would:

image   colour: the foreground's mean hue, nearest palette hue. position: the foreground's
        centroid, nearest of the five places. size and shape, by analysis by synthesis: the world's
        own shape drawing (`world._draw_shape`) makes the coverage mask of each of the 4 shapes x 3
        sizes at the observed centroid, and the one that overlaps the observed foreground best
        (soft IoU) names both. Why synthesis for shape: at 32 px a small object is 6-7 px across,
        where hand-made features (fill ratio, symmetry) are at the mercy of a few pixels, while the
        renderer knows exactly what each shape covers at that size.
video   colour over all frames; shape on the middle frame; direction: the centroid's path, its
        dominant axis and sign; speed: how far it travels (slow 0.25 / fast 0.5 of the frame).
audio   pitch: the median over frames of the spectral peak, nearest of the six pitches, named
        low / middle / high; sound: beeping if the tone is off in a good share of frames, a chirp if
        the peak drifts up or down over a tenth of a second, else steady; noise: the slope of the
        log power spectrum above the tone (white 0, pink -1, brown -2 per decade of frequency).

`read(modality, media)` returns the same attribute names and words as `ToyItem.attributes`, so a
reading and an item compare directly; an attribute it cannot read is None (counted wrong).
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from nextgpt_mini.tiny import world as tw

FOREGROUND = 0.5  # coverage above which a pixel is the object's own (for its colour and centroid)
_PALETTE_HUE = {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for name, rgb in tw.COLOURS.items()}
_TRIANGLE_CENTROID = 0.2  # world._draw_shape's triangle: its centroid lies 0.2 r below the drawing centre
_MIDDLE_SPEED = sum(tw.SPEED_TRAVEL.values()) / 2


# ---------------------------------------------------------------- pictures
def coverage(image: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1]: how much of each pixel the object covers. The world's background is grey
    (no chroma) and its colours are saturated, so chroma (max - min channel), scaled by the
    object's own chroma (its 90th percentile), is the coverage of an anti-aliased edge."""
    rgb = np.asarray(image, dtype=np.float32)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    full = np.percentile(chroma, 90) if chroma.size else 0.0
    full = max(full, float(chroma.max()) * 0.5, 40.0)  # a blank picture: no object, not noise scaled up
    c = np.clip(chroma / full, 0.0, 1.0)
    return np.where(c > 0.15, c, 0.0)


def _centroid(mask: np.ndarray) -> tuple[float, float] | None:
    total = mask.sum()
    if total < 1.0:
        return None
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]]
    return float((xs * mask).sum() / total) + 0.5, float((ys * mask).sum() / total) + 0.5


def _colour(image: np.ndarray, mask: np.ndarray) -> str | None:
    core = mask > FOREGROUND
    if not core.any():
        return None
    r, g, b = (np.asarray(image, dtype=np.float32)[core].mean(axis=0) / 255).tolist()
    hue = colorsys.rgb_to_hsv(r, g, b)[0]
    return min(_PALETTE_HUE, key=lambda name: min(abs(hue - _PALETTE_HUE[name]), 1 - abs(hue - _PALETTE_HUE[name])))


@lru_cache(maxsize=4096)
def _shape_mask(shape: str, size: str, cx: float, cy: float, h: int, w: int) -> np.ndarray:
    """The coverage of `shape` at `size` drawn as the world draws it (at 4x, box-downsampled)."""
    r = tw.SIZE_FRACTION[size] * min(h, w) * 2  # in 4x pixels, as world._render_frame
    if shape == "triangle":
        cy -= _TRIANGLE_CENTROID * r / 4  # draw so that the triangle's centroid lands on (cx, cy)
    canvas = Image.new("L", (w * 4, h * 4), 0)
    tw._draw_shape(ImageDraw.Draw(canvas), shape, cx * 4, cy * 4, r, 255)
    return np.asarray(canvas.resize((w, h), Image.BOX), dtype=np.float32) / 255


def _shape_and_size(mask: np.ndarray, centre: tuple[float, float]) -> tuple[str, str]:
    h, w = mask.shape
    cx, cy = round(centre[0], 1), round(centre[1], 1)  # rounded: a cache hit for nearby centroids

    def iou(candidate: tuple[str, str]) -> float:
        m = _shape_mask(*candidate, cx, cy, h, w)
        return float(np.minimum(m, mask).sum() / max(np.maximum(m, mask).sum(), 1e-6))

    return max(((s, z) for s in tw.SHAPES for z in tw.SIZES), key=iou)


def _position(centre: tuple[float, float], h: int, w: int) -> str:
    fx, fy = centre[0] / w, centre[1] / h
    return min(tw.POSITIONS, key=lambda p: (tw.POSITION_CENTRE[p][0] - fx) ** 2 + (tw.POSITION_CENTRE[p][1] - fy) ** 2)


def read_image(image) -> dict[str, str | None]:
    """{"colour", "shape", "size", "position"} of an RGB picture (uint8 [H, W, 3] or a PIL image)."""
    image = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    mask = coverage(image)
    centre = _centroid(mask)
    if centre is None:
        return {"colour": None, "shape": None, "size": None, "position": None}
    shape, size = _shape_and_size(mask, centre)
    return {"colour": _colour(image, mask), "shape": shape, "size": size, "position": _position(centre, *mask.shape)}


def read_video(frames) -> dict[str, str | None]:
    """{"colour", "shape", "direction", "speed"} of uint8 frames [F, H, W, 3]."""
    frames = np.asarray(frames)
    masks = [coverage(f) for f in frames]
    centres = [_centroid(m) for m in masks]
    found = [(k, c) for k, c in enumerate(centres) if c is not None]
    none = {"colour": None, "shape": None, "direction": None, "speed": None}
    if len(found) < 2:
        return none
    stacked = np.concatenate([frames[k][masks[k] > FOREGROUND] for k, _ in found])
    colour = _colour(stacked[None], np.ones(stacked.shape[:1])[None]) if len(stacked) else None
    middle = found[len(found) // 2][0]
    shape, _ = _shape_and_size(masks[middle], centres[middle])
    # the path's displacement from a least-squares line through the centroids (robust to one bad frame)
    t = np.array([k for k, _ in found], dtype=np.float64)
    xy = np.array([c for _, c in found])
    slope = np.polyfit(t, xy, 1)[0] * (len(frames) - 1)  # displacement over the whole clip, in pixels
    dx, dy = slope[0] / frames.shape[2], slope[1] / frames.shape[1]
    direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    speed = tw.SPEED_WORD["fast" if max(abs(dx), abs(dy)) > _MIDDLE_SPEED else "slow"]
    return {"colour": colour, "shape": shape, "direction": direction, "speed": speed}


# ---------------------------------------------------------------- sounds
_WINDOW, _HOP, _NFFT = 1024, 256, 8192  # 64 ms windows, 16 ms hops, zero-padded for a finer peak
_TONE_BAND = (100.0, 2000.0)  # every pitch of the world, chirps included, lies in here
_NOISE_BAND = (2000.0, 5000.0)  # above the tones (<= 1.32 kHz) and below where brown noise sinks into window leakage
_DRIFT_LAG = 6  # hops (96 ms): a one-octave-per-second chirp drifts 0.1 octave over it


def _spectrogram(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if len(x) < _WINDOW:
        x = np.pad(x, (0, _WINDOW - len(x)))
    starts = range(0, len(x) - _WINDOW + 1, _HOP)
    window = np.hanning(_WINDOW)
    power = np.stack([np.abs(np.fft.rfft(x[s : s + _WINDOW] * window, _NFFT)) ** 2 for s in starts])
    return power, np.fft.rfftfreq(_NFFT, 1.0 / sample_rate)


def read_audio(samples, sample_rate: int = 16000) -> dict[str, str | None]:
    """{"sound", "pitch", "noise"} of a mono waveform (float, any length of a few tenths of a second or more)."""
    power, freqs = _spectrogram(samples, sample_rate)
    band = (freqs >= _TONE_BAND[0]) & (freqs <= _TONE_BAND[1])
    peak_bin = power[:, band].argmax(axis=1)
    peak_power = power[:, band].max(axis=1)
    peak_hz = freqs[band][peak_bin]
    if peak_power.max() <= 0:
        return {"sound": None, "pitch": None, "noise": None}
    on = peak_power > 0.1 * np.percentile(peak_power, 90)
    pitch_hz = float(np.exp(np.median(np.log(peak_hz[on]))))
    colour = min(tw.PITCH_HZ, key=lambda c: abs(np.log(tw.PITCH_HZ[c] / pitch_hz)))
    log_f = np.log2(peak_hz)
    pairs = on[_DRIFT_LAG:] & on[:-_DRIFT_LAG]
    drift = float(np.median((log_f[_DRIFT_LAG:] - log_f[:-_DRIFT_LAG])[pairs])) if pairs.any() else 0.0
    if on.mean() < 0.8:
        sound = "beeping rhythm"
    elif abs(drift) > 0.04:
        sound = "rising chirp" if drift > 0 else "falling chirp"
    else:
        sound = "steady tone"
    noise_band = (freqs >= _NOISE_BAND[0]) & (freqs <= min(_NOISE_BAND[1], sample_rate / 2 * 0.9))
    mean_power = power[:, noise_band].mean(axis=0)
    slope = np.polyfit(np.log10(freqs[noise_band]), np.log10(mean_power + 1e-30), 1)[0]
    noise = "white" if slope > -0.5 else "pink" if slope > -1.5 else "brown"
    return {"sound": sound, "pitch": tw.PITCH_WORD[colour], "noise": noise}


def read(modality: str, media) -> dict[str, str | None]:
    """The attributes `modality`'s media shows, named as `ToyItem.attributes` names them."""
    if modality == "image":
        return read_image(media)
    if modality == "video":
        return read_video(media)
    if modality == "audio":
        return read_audio(media)
    raise ValueError(f"unknown modality {modality!r}: expected image, video or audio")


def accuracy(readings: list[dict], items: list[tw.ToyItem], unstated: list[list[str]] | None = None) -> dict[str, float]:
    """Per attribute: the share of `readings` that name the item's own value, over the items
    whose request stated it (`unstated[k]`: the attributes item k's request left open; an
    attribute no request stated is left out)."""
    names = list(items[0].attributes) if items else []
    unstated = unstated or [[] for _ in items]
    out = {}
    for a in names:
        hits = [r.get(a) == it.attributes[a] for r, it, skip in zip(readings, items, unstated) if a not in skip]
        if hits:
            out[a] = float(np.mean(hits))
    return out


def validate(n: int = 300, seed: int = 1) -> dict[str, dict[str, float]]:
    """The reader on ground truth: per attribute accuracy on `n` test-split renders of each modality
    (half from held-out colour+shape pairs), at the tiny decoders' sizes (32 px images; 4 frames of
    32 px at 4 fps; 1 s of 16 kHz sound) and at the renderer's (64 px; 16 frames over 2 s; 2 s)."""
    out = {}
    for label, size, seconds, fps in (("decoder size", 32, 1.0, 4), ("render size", 64, 2.0, 8)):
        for modality in tw.MODALITIES:
            items = tw.sample_items(modality, n, seed=seed, split="test")
            if modality == "image":
                readings = [read_image(tw.render_image(it, size)) for it in items]
            elif modality == "video":
                readings = [read_video(tw.render_video(it, size, seconds, fps)) for it in items]
            else:
                readings = [read_audio(tw.render_audio(it, seconds, 16000), 16000) for it in items]
            out[f"{modality}, {label}"] = accuracy(readings, items)
    return out
