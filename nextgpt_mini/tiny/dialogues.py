"""Chapter 06: the toy world's modality-switching dialogues, in our MosIT format (data/mosit.py).

Eleven tasks, each from freshly sampled toy items: text -> text, -> image / video / audio, media
-> text, image -> sound, video -> sound, image -> video, and a two-turn request that refers back.
"""

from __future__ import annotations

import numpy as np

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import describe_answer
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.training.stage2 import ANSWERS, REQUESTS

# Stage 2's request forms, in the order this writer has always drawn them (the shipped system was
# trained on the dialogues that order gives).
IMAGE_REQUESTS = [REQUESTS["image"][k] for k in (1, 0, 2)]

TASKS = ("T->T", "T->I", "T->V", "T->A", "I->T", "V->T", "A->T", "I->A", "V->A", "I->V", "T->I,A")


def _media(item: tw.ToyItem) -> dict:
    return {"modality": item.modality, "item": item}


def _out(item: tw.ToyItem) -> dict:
    return {"modality": item.modality, "caption": item.caption}


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _object_name(o: tw.ToyObject) -> str:
    """'an orange circle'."""
    return f"{tw.article(o.colour)} {o.colour} {o.shape}"


def _dialogue(task: str, rng: np.random.Generator, split: str, seed: int) -> list[dict]:
    image, video, audio = (tw.sample_items(m, 1, seed=seed, split=split)[0] for m in MODALITIES)
    sound = tw.soundtrack_of(image)
    o = image.obj
    if task == "T->T":
        q = _pick(["What sound does {n} make?", "What does {n} sound like?"], rng).format(n=_object_name(o))
        a = f"{_object_name(o).capitalize()} makes {tw.article(o.pitch)} {o.pitch} {o.sound}."
        return [{"role": "user", "text": q}, {"role": "assistant", "text": a}]
    if task == "T->I":
        q = _pick(IMAGE_REQUESTS, rng).format(c=image.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": ANSWERS["image"].format(c=image.caption), "output": _out(image)}]
    if task == "T->V":
        q = _pick(REQUESTS["video"], rng).format(c=video.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": ANSWERS["video"].format(c=video.caption), "output": _out(video)}]
    if task == "T->A":
        if rng.random() < 0.5:
            q = REQUESTS["audio"][0].format(c=audio.caption)
            target = audio
        else:
            q = f"Play the sound of {_object_name(o)}."
            target = sound
        return [{"role": "user", "text": q}, {"role": "assistant", "text": f"Here is {target.caption}.", "output": _out(target)}]
    if task == "I->T":
        q = _pick(["What is in this picture?", "Describe this image."], rng)
        return [{"role": "user", "text": q, "media": [_media(image)]}, {"role": "assistant", "text": describe_answer("image", image.caption)}]
    if task == "V->T":
        q = _pick(["What happens in this video?", "Describe this video."], rng)
        return [{"role": "user", "text": q, "media": [_media(video)]}, {"role": "assistant", "text": describe_answer("video", video.caption)}]
    if task == "A->T":
        q = _pick(["What do you hear?", "Describe this sound."], rng)
        return [{"role": "user", "text": q, "media": [_media(audio)]}, {"role": "assistant", "text": describe_answer("audio", audio.caption)}]
    if task == "I->A":
        return [
            {"role": "user", "text": "What sound would this make?", "media": [_media(image)]},
            {"role": "assistant", "text": f"It would make {sound.caption}.", "output": _out(sound)},
        ]
    if task == "V->A":
        track = tw.soundtrack_of(video)
        return [
            {"role": "user", "text": "Play the sound of this video.", "media": [_media(video)]},
            {"role": "assistant", "text": f"Here is {track.caption}.", "output": _out(track)},
        ]
    if task == "I->V":
        moving = tw.ToyItem("video", o, direction=video.direction, speed=video.speed, seed=video.seed)
        return [
            {"role": "user", "text": f"Make this move {moving.direction} {tw.SPEED_WORD[moving.speed]}.", "media": [_media(image)]},
            {"role": "assistant", "text": f"Here is a video of {moving.caption}.", "output": _out(moving)},
        ]
    if task == "T->I,A":
        # Two turns: the second refers back to the first, so the model must use the history.
        return [
            {"role": "user", "text": f"Draw {image.caption}."},
            {"role": "assistant", "text": f"Here is {image.caption}.", "output": _out(image)},
            {"role": "user", "text": "What sound does it make?"},
            {"role": "assistant", "text": f"It makes {sound.caption}.", "output": _out(sound)},
        ]
    raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")


def toy_dialogues(n: int, seed: int = 0, split: str = "train", tasks: tuple[str, ...] = TASKS) -> list[dict]:
    """`n` dialogues cycling through `tasks`, each built from freshly sampled toy items."""
    rng = np.random.default_rng(tw.split_seed(seed, f"{split}:mosit"))
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        sub_seed = int(rng.integers(2**31))
        out.append({"id": f"toy-{split}-{seed}-{i:05d}", "task": task, "turns": _dialogue(task, rng, split, sub_seed)})
    return out


def dialogue_text(dialogue: dict) -> str:
    """Plain text of a dialogue (for tokenizer and LLM pretraining)."""
    return " ".join(t["text"] for t in dialogue["turns"])
