"""Chapter 09: the toy suite's data and its oracle decoder.

The toy suite generates with the tiny profile's trained decoders and judges the media with the
toy world's attribute reader (`tiny/reader.py`). Beside that it decodes with the decoder a
perfect toy-world model would be: the conditioning the output projector produced is matched to
the nearest of the frozen decoder's own text-encoder outputs for every caption the world can say
(the distance stage 2 trains on), and that caption is rendered by the world. This "oracle
decoder" column measures what NExT-GPT trains (the LLM's signal tokens and the output projector)
apart from the decoder's own errors.
"""

from __future__ import annotations

import functools
import itertools

import torch

from nextgpt_mini.losses import distance as distance_fn
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import toy_dialogues
from nextgpt_mini.tiny.render import render

__all__ = ["ToyDecoder", "all_items", "sound_sources", "toy_samples"]


def _objects() -> list[tw.ToyObject]:
    return [tw.ToyObject(c, s, z) for c, s, z in itertools.product(tw.COLOURS, tw.SHAPES, tw.SIZES)]


@functools.lru_cache(maxsize=3)
def all_items(modality: str) -> dict[str, tw.ToyItem]:
    """{caption: item} for every caption the world can say in `modality` (seed 0)."""
    if modality == "image":
        items = [tw.ToyItem("image", o, position=p) for o in _objects() for p in tw.POSITIONS]
    elif modality == "video":
        items = [tw.ToyItem("video", o, direction=d, speed=v) for o in _objects() for d in tw.DIRECTIONS for v in tw.SPEEDS]
    elif modality == "audio":
        items = [tw.ToyItem("audio", o) for o in _objects()]
    else:
        raise ValueError(f"unknown modality {modality!r}: expected image, video or audio")
    bank: dict[str, tw.ToyItem] = {}
    for it in items:
        bank.setdefault(it.caption, it)
    return bank


@functools.lru_cache(maxsize=1)
def _sources_of_sounds() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for o in _objects():
        out.setdefault(tw.ToyItem("audio", o).caption, []).append(f"{tw.article(o.size)} {o.size} {o.colour} {o.shape}")
    return {k: tuple(v) for k, v in out.items()}


def sound_sources(caption: str) -> tuple[str, ...]:
    """The objects that make the sound an audio caption describes ("a big red circle", ...); empty
    for a caption that is not one of the world's sounds."""
    return _sources_of_sounds().get(caption, ())


class ToyDecoder:
    """Conditioning -> the nearest caption of the world (by the decoder's own targets) -> rendered."""

    def __init__(self, decoder, distance: str = "l2"):
        self.modality = decoder.modality
        self.bank = all_items(self.modality)
        self.captions = list(self.bank)
        self.targets = decoder.targets(self.captions)
        self._distance = lambda cond: distance_fn(cond.expand(len(self.captions), *cond.shape[1:]), self.targets, distance)

    @torch.no_grad()
    def caption_of(self, cond: torch.Tensor) -> str:
        """The caption whose conditioning is nearest `cond` [1, *target_shape]."""
        return self.captions[int(self._distance(cond.float().cpu()).argmin())]

    def decode(self, cond: torch.Tensor, seed: int):
        caption = self.caption_of(cond)
        return render(self.bank[caption], seed), caption


# A sound's attributes and the object words each follows from (world.py).
SOUND_SOURCES = {"pitch": tw.PITCH_WORD, "sound": tw.SOUND_OF_SHAPE, "noise": tw.NOISE_OF_SIZE}


def unstated_attributes(request: str, item: tw.ToyItem) -> list[str]:
    """The attributes of a requested sound that `request` does not determine: it names neither
    the value ("brown noise") nor an object word that gives it ("big"). "Play the sound of a red
    circle." leaves the noise open: any noise answers it, so none is scored."""
    if item.modality != "audio":
        return []
    words = set(request.lower().rstrip(".?!").split())
    value = item.attributes
    return [a for a, source in SOUND_SOURCES.items()
            if not set(value[a].split()) <= words and not any(source.get(w) == value[a] for w in words)]


def toy_samples(task: str, n: int, seed: int) -> list[dict]:
    """Held-out requests of one task, from the MosIT toy dialogues (test split: half of their
    objects are colour+shape pairs no trained stage saw). Generation tasks give
    {prompt, caption, reference, seed, unstated}; media->text tasks give {prompt, media, references}."""
    dialogues = toy_dialogues(n, seed=seed, split="test", tasks=(task,))
    out = []
    for k, d in enumerate(dialogues):
        user, reply = d["turns"][0], d["turns"][1]
        if "output" in reply:
            modality, caption = reply["output"]["modality"], reply["output"]["caption"]
            item = all_items(modality)[caption]
            out.append({"prompt": user["text"], "caption": caption, "modality": modality,
                        "reference": render(item, seed + k), "seed": seed + k,
                        "unstated": unstated_attributes(user["text"], item)})
        else:
            item = user["media"][0]["item"]
            out.append({"prompt": user["text"], "media": user["media"][0], "references": [item.caption],
                        "modality": item.modality, "seed": seed + k})
    return out
