"""Chapter 06: the toy world's modality-switching dialogues, in our MosIT format (data/mosit.py).

Fourteen tasks, each from freshly sampled toy items: text -> text, -> image / video / audio, media
-> text, image -> sound, video -> sound, image -> video, a two-turn request that refers back, and
media -> text followed by a question about one attribute of the same item ("Where is it?").
Requests and questions are worded in the phrasing families of `tiny/phrasings.py`: the training
families by default, the held-out ones with `phrasing="held-out"`.
"""

from __future__ import annotations

import numpy as np

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import describe_answer
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.phrasings import PLAIN_CONVERSIONS, conversion_forms, question_forms, request_forms
from nextgpt_mini.training.stage2 import ANSWERS

TASKS = ("T->T", "T->I", "T->V", "T->A", "I->T", "V->T", "A->T", "I->A", "V->A", "I->V", "T->I,A",
         "I->T,T", "V->T,T", "A->T,T")
# Text-only questions, in the same training frames as the requests (tiny/phrasings.py), so that
# no frame tells the model which modality is wanted; the held-out frames appear nowhere in training.
TEXT_QUESTIONS = ("What sound does {n} make?", "What does {n} sound like?", "Can you tell me what sound {n} makes?",
                  "Please tell me what sound {n} makes.", "I want you to tell me what {n} sounds like.",
                  "Could you tell me what sound {n} makes?", "Tell me what sound {n} makes, please.",
                  "Would you tell me what {n} sounds like?", "Tell me what sound {n} makes for me.")
# the follow-up question about each attribute, and how its answer names the value
FOLLOW_UPS = {
    "colour": ("What colour is it?", "It is {v}."),
    "shape": ("What shape is it?", "It is a {v}."),
    "size": ("How big is it?", "It is {v}."),
    "position": ("Where is it?", "It is {w}."),
    "direction": ("Which way is it moving?", "It is moving {v}."),
    "speed": ("Is it moving fast?", "{yes} it is moving {v}."),
    "sound": ("What kind of sound is it?", "It is a {v}."),
    "pitch": ("Is it high or low?", "It is {v}."),
    "noise": ("What noise is behind it?", "It is over {v} noise."),
}


def _media(item: tw.ToyItem) -> dict:
    return {"modality": item.modality, "item": item}


def _out(item: tw.ToyItem) -> dict:
    return {"modality": item.modality, "caption": item.caption}


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _object_name(o: tw.ToyObject) -> str:
    """'an orange circle'."""
    return f"{tw.article(o.colour)} {o.colour} {o.shape}"


def follow_up(item: tw.ToyItem, attribute: str) -> tuple[str, str]:
    """(question, answer) about one attribute of `item`: ("Where is it?", "It is on the left.")."""
    question, answer = FOLLOW_UPS[attribute]
    value = item.attributes[attribute]
    yes = "Yes," if value == tw.SPEED_WORD["fast"] else "No,"
    return question, answer.format(v=value, w=tw.where_phrase(value) if attribute == "position" else value, yes=yes)


def _conversion_request(task: str, phrasing: str, varied: bool, seed: int) -> str:
    """The request of a conversion task (I->A, V->A, I->V): one of its forms in the phrasing
    family, or in training without `varied` its one plain wording. Drawn from a generator of its
    own, so that the dialogue stream's draws, and every other dialogue with them, stay as they are."""
    if phrasing == "train" and not varied:
        return PLAIN_CONVERSIONS[task]
    forms = conversion_forms(task, phrasing)
    return forms[int(np.random.default_rng(seed).integers(len(forms)))]


def _dialogue(task: str, rng: np.random.Generator, split: str, seed: int, phrasing: str = "train",
              index: int = 0, varied: bool = False) -> list[dict]:
    # the test split alternates held-out colour+shape pairs (even dialogues) and seen ones (odd), as
    # `sample_items` does within one call; one item per call would always be a held-out pair
    pick = index % 2 if split == "test" else 0
    image, video, audio = (tw.sample_items(m, pick + 1, seed=seed, split=split)[pick] for m in MODALITIES)
    shown = {"I": image, "V": video, "A": audio}
    sound = tw.soundtrack_of(image)
    o = image.obj
    if task == "T->T":
        q = _pick(list(TEXT_QUESTIONS), rng).format(n=_object_name(o))
        a = f"{_object_name(o).capitalize()} makes {tw.article(o.pitch)} {o.pitch} {o.sound}."
        return [{"role": "user", "text": q}, {"role": "assistant", "text": a}]
    if task == "T->I":
        q = _pick(request_forms("image", phrasing), rng).format(c=image.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": ANSWERS["image"].format(c=image.caption), "output": _out(image)}]
    if task == "T->V":
        q = _pick(request_forms("video", phrasing), rng).format(c=video.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": ANSWERS["video"].format(c=video.caption), "output": _out(video)}]
    if task == "T->A":
        if rng.random() < 0.5:
            q = _pick(request_forms("audio", phrasing), rng).format(c=audio.caption)
            target = audio
        else:
            q = f"Play the sound of {_object_name(o)}."
            target = sound
        return [{"role": "user", "text": q}, {"role": "assistant", "text": f"Here is {target.caption}.", "output": _out(target)}]
    if task in ("I->T", "V->T", "A->T", "I->T,T", "V->T,T", "A->T,T"):
        item = shown[task[0]]
        q = _pick(list(question_forms(item.modality, phrasing)), rng)
        turns = [{"role": "user", "text": q, "media": [_media(item)]},
                 {"role": "assistant", "text": describe_answer(item.modality, item.caption)}]
        if task.endswith(",T"):
            question, answer = follow_up(item, _pick(list(item.attributes), rng))
            turns += [{"role": "user", "text": question}, {"role": "assistant", "text": answer}]
        return turns
    if task == "I->A":
        return [
            {"role": "user", "text": _conversion_request(task, phrasing, varied, seed), "media": [_media(image)]},
            {"role": "assistant", "text": f"It would make {sound.caption}.", "output": _out(sound)},
        ]
    if task == "V->A":
        track = tw.soundtrack_of(video)
        return [
            {"role": "user", "text": _conversion_request(task, phrasing, varied, seed), "media": [_media(video)]},
            {"role": "assistant", "text": f"Here is {track.caption}.", "output": _out(track)},
        ]
    if task == "I->V":
        moving = tw.ToyItem("video", o, direction=video.direction, speed=video.speed, seed=video.seed)
        motion = f"{moving.direction} {tw.SPEED_WORD[moving.speed]}"
        return [
            {"role": "user", "text": _conversion_request(task, phrasing, varied, seed).format(d=motion), "media": [_media(image)]},
            {"role": "assistant", "text": f"Here is a video of {moving.caption}.", "output": _out(moving)},
        ]
    if task == "T->I,A":
        # Two turns: the second refers back to the first, so the model must use the history.
        return [
            {"role": "user", "text": _pick(request_forms("image", phrasing), rng).format(c=image.caption)},
            {"role": "assistant", "text": f"Here is {image.caption}.", "output": _out(image)},
            {"role": "user", "text": "What sound does it make?"},
            {"role": "assistant", "text": f"It makes {sound.caption}.", "output": _out(sound)},
        ]
    raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")


def toy_dialogues(n: int, seed: int = 0, split: str = "train", tasks: tuple[str, ...] = TASKS,
                  phrasing: str = "train", varied_conversions: bool = False) -> list[dict]:
    """`n` dialogues cycling through `tasks`, each built from freshly sampled toy items, their
    requests and questions worded in the `phrasing` families ("train" or "held-out").

    Conversion requests (I->A, V->A, I->V) in the training family are one plain wording each
    ("What sound would this make?") unless `varied_conversions`: stage 3's instruction data
    (tiny/data.py) words them in the whole family; the tiny LLM's pretraining text keeps the plain
    ones, as it was built (BUILD_RESULTS.md, History: an LLM rebuilt on the varied ones read media worse)."""
    rng = np.random.default_rng(tw.split_seed(seed, f"{split}:mosit:{phrasing}"))
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        sub_seed = int(rng.integers(2**31))
        out.append({"id": f"toy-{split}-{seed}-{i:05d}", "task": task, "phrasing": phrasing,
                    "turns": _dialogue(task, rng, split, sub_seed, phrasing, i // len(tasks), varied_conversions)})
    return out


def dialogue_text(dialogue: dict) -> str:
    """Plain text of a dialogue (for tokenizer and LLM pretraining)."""
    return " ".join(t["text"] for t in dialogue["turns"])
