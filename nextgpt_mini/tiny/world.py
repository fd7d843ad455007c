"""Chapter 00: the toy world: a small, seeded multimodal world in which the tiny profile can really learn.

Objects are coloured shapes. What you can see, hear and say about them is tied together by a
fixed "physics", so that every modality carries information about the others, as in the real
world that ImageBind and NExT-GPT learn from:

* an **image** shows one object: colour, shape, size, position;
* a **video** shows an object moving (direction, speed) and has a **soundtrack**: the object's
  own sound. Videos are how audio meets vision, as in ImageBind (audio was bound to images
  through the frames of the same videos);
* an **audio** clip is an object's sound: its *shape* sets the kind of sound (steady tone,
  beeping rhythm, rising or falling chirp), its *colour* sets the pitch, and its *size* sets the
  colour of the background noise (small = white hiss, medium = pink, big = brown rumble);
* every item has a **caption** that names what is in it, and the world writes **dialogues**
  (MosIT-style, see `nextgpt_mini/data/mosit.py`) about its objects.

Some colour+shape pairs never appear in the training split (`HELD_OUT_PAIRS`) so that
evaluation can ask whether a model composes attributes it has only seen apart.

Everything is a pure function of a seed: the same seed gives the same pixels and samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from nextgpt_mini.constants import MODALITIES

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 30),
    "green": (40, 200, 60),
    "blue": (40, 90, 235),
    "purple": (160, 50, 210),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "medium", "big")
POSITIONS = ("left", "right", "top", "bottom", "centre")
DIRECTIONS = ("left", "right", "up", "down")
SPEEDS = ("slow", "fast")

# The world's physics: what each object sounds like.
SOUND_OF_SHAPE = {"circle": "steady tone", "square": "beeping rhythm", "triangle": "rising chirp", "diamond": "falling chirp"}
PITCH_HZ = {"red": 220.0, "orange": 294.0, "yellow": 392.0, "green": 523.0, "blue": 698.0, "purple": 932.0}
PITCH_WORD = {"red": "low", "orange": "low", "yellow": "middle", "green": "middle", "blue": "high", "purple": "high"}
NOISE_OF_SIZE = {"small": "white", "medium": "pink", "big": "brown"}

# Never seen in the training split, one per shape, so evaluation can test composition.
HELD_OUT_PAIRS = frozenset({("red", "triangle"), ("blue", "circle"), ("green", "diamond"), ("yellow", "square")})

SIZE_FRACTION = {"small": 0.22, "medium": 0.32, "big": 0.44}
POSITION_CENTRE = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "centre": (0.5, 0.5)}
# Displacement over the whole video, as a fraction of the frame width.
SPEED_TRAVEL = {"slow": 0.25, "fast": 0.5}
SPEED_WORD = {"slow": "slowly", "fast": "quickly"}
DIRECTION_VECTOR = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

Split = Literal["train", "test", "any"]
Modality = Literal["image", "video", "audio"]


@dataclass(frozen=True)
class ToyObject:
    colour: str
    shape: str
    size: str

    @property
    def sound(self) -> str:
        return SOUND_OF_SHAPE[self.shape]

    @property
    def pitch(self) -> str:
        return PITCH_WORD[self.colour]

    @property
    def noise(self) -> str:
        return NOISE_OF_SIZE[self.size]

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT_PAIRS


@dataclass(frozen=True)
class ToyItem:
    """One media item of the world: its modality, its object, and how it is staged."""

    modality: str
    obj: ToyObject
    position: str = "centre"  # images
    direction: str = "right"  # videos
    speed: str = "slow"  # videos
    seed: int = 0  # pixel noise, exact placement, audio phase

    @property
    def caption(self) -> str:
        return caption_of(self)

    @property
    def attributes(self) -> dict[str, str]:
        """The attributes a caption of this item must name (used by evaluation)."""
        o = self.obj
        if self.modality == "image":
            return {"colour": o.colour, "shape": o.shape, "size": o.size, "position": self.position}
        if self.modality == "video":
            return {"colour": o.colour, "shape": o.shape, "direction": self.direction, "speed": SPEED_WORD[self.speed]}
        return {"sound": o.sound, "pitch": o.pitch, "noise": o.noise}

    # The scoring interface the stages' evaluations read (duck-typed: they do not import the world).
    def attribute_scores(self, text: str) -> dict[str, bool]:
        return attribute_scores(text, self)

    def attribute_chance(self) -> dict[str, float]:
        return attribute_chance(self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["caption"] = self.caption
        return d


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def where_phrase(position: str) -> str:
    """How a caption says a position: "on the left", "at the top", "in the centre"."""
    return {"centre": "in the centre", "top": "at the top", "bottom": "at the bottom"}.get(position, f"on the {position}")


def caption_of(item: ToyItem) -> str:
    o = item.obj
    if item.modality == "image":
        return f"{article(o.size)} {o.size} {o.colour} {o.shape} {where_phrase(item.position)}"
    if item.modality == "video":
        return f"{article(o.colour)} {o.colour} {o.shape} moving {item.direction} {SPEED_WORD[item.speed]}"
    if item.modality == "audio":
        return f"{article(o.pitch)} {o.pitch} {o.sound} over {o.noise} noise"
    raise ValueError(f"unknown modality {item.modality!r}: expected image, video or audio")


# --------------------------------------------------------------------------------------------
# Sampling items
# --------------------------------------------------------------------------------------------
def split_seed(seed: int, split: str) -> int:
    """The random seed of one split's stream: test items never coincide with train items by seed."""
    return int.from_bytes(hashlib.sha256(f"{split}:{seed}".encode()).digest()[:8], "little")


def sample_items(modality: str, n: int, seed: int = 0, split: Split = "train") -> list[ToyItem]:
    """Draw `n` items of one modality. `train` excludes HELD_OUT_PAIRS; `test` draws half of its
    items from the held-out pairs and half from the rest; `any` draws uniformly."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}: expected image, video or audio")
    if split not in ("train", "test", "any"):
        raise ValueError(f"unknown split {split!r}: expected train, test or any")
    rng = np.random.default_rng(split_seed(seed, f"{split}:{modality}"))
    all_pairs = [(c, s) for c in COLOURS for s in SHAPES]
    seen = [p for p in all_pairs if p not in HELD_OUT_PAIRS]
    unseen = sorted(HELD_OUT_PAIRS)
    items = []
    for i in range(n):
        if split == "train":
            colour, shape = seen[rng.integers(len(seen))]
        elif split == "test":
            pool = unseen if i % 2 == 0 else seen
            colour, shape = pool[rng.integers(len(pool))]
        else:
            colour, shape = all_pairs[rng.integers(len(all_pairs))]
        obj = ToyObject(colour, shape, SIZES[rng.integers(len(SIZES))])
        items.append(
            ToyItem(
                modality=modality,
                obj=obj,
                position=POSITIONS[rng.integers(len(POSITIONS))] if modality == "image" else "centre",
                direction=DIRECTIONS[rng.integers(len(DIRECTIONS))] if modality == "video" else "right",
                speed=SPEEDS[rng.integers(len(SPEEDS))] if modality == "video" else "slow",
                seed=int(rng.integers(2**31)),
            )
        )
    return items


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        s = r * 0.86
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}: expected one of {SHAPES}")


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(15, 40)
    noise = rng.normal(0, 6, size=(size, size, 1))
    return np.clip(base + noise, 0, 255).repeat(3, axis=2).astype(np.uint8)


def _render_frame(obj: ToyObject, cx: float, cy: float, size: int, bg: np.ndarray) -> np.ndarray:
    canvas = Image.fromarray(bg.copy())
    # Draw at 4x and downsample so edges are anti-aliased at every resolution.
    big = canvas.resize((size * 4, size * 4), Image.NEAREST)
    _draw_shape(ImageDraw.Draw(big), obj.shape, cx * 4, cy * 4, SIZE_FRACTION[obj.size] * size * 2, COLOURS[obj.colour])
    return np.asarray(big.resize((size, size), Image.BOX))


def render_image(item: ToyItem, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3]."""
    rng = np.random.default_rng(item.seed)
    fx, fy = POSITION_CENTRE[item.position]
    jitter = rng.uniform(-0.04, 0.04, size=2)
    return _render_frame(item.obj, (fx + jitter[0]) * size, (fy + jitter[1]) * size, size, _background(size, rng))


def video_path_xy(item: ToyItem, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of the object at times t in [0, 1] (fractions of the frame)."""
    dx, dy = DIRECTION_VECTOR[item.direction]
    travel = SPEED_TRAVEL[item.speed]
    # Start so that the whole path stays inside the frame.
    x0 = 0.5 - dx * travel / 2
    y0 = 0.5 - dy * travel / 2
    return x0 + dx * travel * t, y0 + dy * travel * t


def render_video(item: ToyItem, size: int = 64, seconds: float = 2.0, fps: int = 8) -> np.ndarray:
    """uint8 [frames, size, size, 3]; the object crosses the same distance whatever the length."""
    rng = np.random.default_rng(item.seed)
    bg = _background(size, rng)
    n = max(int(round(seconds * fps)), 1)
    xs, ys = video_path_xy(item, np.linspace(0.0, 1.0, n))
    return np.stack([_render_frame(item.obj, x * size, y * size, size, bg) for x, y in zip(xs, ys)])


def _coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        out = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        spectrum /= np.sqrt(f) if colour == "pink" else f  # 1/f power, or 1/f^2 for brown
        out = np.fft.irfft(spectrum, n)
    return out / (np.abs(out).max() + 1e-8)


def render_audio(item: ToyItem, seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """float32 [samples] in [-1, 1]: the object's sound over its size's noise colour."""
    rng = np.random.default_rng(item.seed)
    n = max(int(round(seconds * sample_rate)), 1)
    t = np.arange(n) / sample_rate
    f0 = PITCH_HZ[item.obj.colour]
    phase0 = rng.uniform(0, 2 * np.pi)
    sound = item.obj.sound
    if sound in ("steady tone", "beeping rhythm"):
        tone = np.sin(2 * np.pi * f0 * t + phase0)
        if sound == "beeping rhythm":
            tone *= (np.floor(t * 8) % 2 == 0).astype(np.float64)  # 4 beeps a second
    else:
        # A log sweep over one octave, up or down, repeated every second.
        up = sound == "rising chirp"
        frac = (t % 1.0) if up else 1.0 - (t % 1.0)
        inst_f = f0 * 2.0 ** (frac - 0.5)
        tone = np.sin(2 * np.pi * np.cumsum(inst_f) / sample_rate + phase0)
    noise = _coloured_noise(item.obj.noise, n, rng)
    return (0.5 * tone + 0.15 * noise).astype(np.float32)


def soundtrack_of(item: ToyItem) -> ToyItem:
    """The audio item a video's object makes: the link that binds audio to vision."""
    return dataclasses.replace(item, modality="audio", position="centre", direction="right", speed="slow")


def still_of(item: ToyItem) -> ToyItem:
    """An image of the object a video shows, in the centre."""
    return dataclasses.replace(item, modality="image", position="centre", direction="right", speed="slow")


# The words a caption uses for each attribute, for reading attributes back out of generated text.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
    "direction": DIRECTIONS,
    "speed": tuple(SPEED_WORD.values()),
    "sound": tuple(SOUND_OF_SHAPE.values()),
    "pitch": ("low", "middle", "high"),
    "noise": tuple(NOISE_OF_SIZE.values()),
}


def read_attribute(text: str, attribute: str) -> str | None:
    """The one value of `attribute` that `text` names, or None if it names none or several."""
    words = f" {text.lower().replace('.', ' ').replace(',', ' ')} "
    found = [v for v in ATTRIBUTE_VALUES[attribute] if f" {v} " in words]
    return found[0] if len(found) == 1 else None


def attribute_scores(text: str, item: ToyItem) -> dict[str, bool]:
    """For each attribute of `item`: does `text` name exactly the right value?"""
    return {k: read_attribute(text, k) == v for k, v in item.attributes.items()}


def attribute_chance(item: ToyItem) -> dict[str, float]:
    """Probability of naming each attribute right by guessing uniformly among its values."""
    return {k: 1.0 / len(ATTRIBUTE_VALUES[k]) for k in item.attributes}
