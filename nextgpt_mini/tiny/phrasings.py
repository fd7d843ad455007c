"""Chapter 06: the ways people ask for media and about it, in families, some held out of training.

A request is a *frame* ("Please {v} {c}.") around a *verb* of its modality ("paint"): every
verb is written in every frame. The frames are split: `split="train"` dialogues (what the tiny
LLM reads in pretraining and what stage 3 trains on) use only the training frames; the held-out
frames ("Could you {v} {c}, please?") never appear in training text, so a request in one of them
is worded in a way the model never saw, though made of pieces it has read. Questions about a shown item use the same frames, split
the same way, and so do the text-only questions (tiny/dialogues.py): in training every frame
comes with every modality, so only the words inside it can tell the model what is wanted. Requests
that turn a shown item into another modality ("Let me hear what this would sound like.") use the
question frames too (`conversion_forms`). `toy_dialogues(..., phrasing="held-out")` writes
dialogues in the held-out families, for measuring (tiny/dialogues.py).
"""

from __future__ import annotations

VERBS = {
    "image": ("show me", "draw", "paint", "sketch", "make a picture of", "give me an image of", "make a drawing of"),
    "video": ("make a video of", "show me a clip of", "animate", "make an animation of", "film"),
    "audio": ("play", "let me hear", "make the sound of", "give me a sound of"),
}
# Each held-out frame is a new combination of pieces the training frames use ("Could you ...?"
# and "..., please."), as a person's new wording is made of words a pretrained LLM has read.
REQUEST_FRAMES = {
    "train": ("{V} {c}.", "Please {v} {c}.", "Can you {v} {c}?", "I want you to {v} {c}.", "Could you {v} {c}?",
              "{V} {c}, please.", "Would you {v} {c}?", "{V} {c} for me."),
    "held-out": ("Could you {v} {c}, please?", "Would you please {v} {c}?", "Can you {v} {c} for me?"),
}
# Questions about a shown item: the same frames as the requests, around "describe this image"-like
# verbs, plus a few plain questions in training. A frame says nothing about the modality: the
# words inside it ("picture", "clip", "hear") do.
SUBJECTS = {
    "image": ("describe this image", "describe this picture", "tell me about this drawing", "tell me what this image shows"),
    "video": ("describe this video", "describe this clip", "tell me about this animation", "tell me what happens in this video"),
    "audio": ("describe this sound", "describe this recording", "tell me about this audio", "tell me what you hear"),
}
PLAIN_QUESTIONS = {
    "image": ("What is in this picture?", "What do you see?"),
    "video": ("What happens in this video?", "What is going on in this clip?"),
    "audio": ("What do you hear?", "What is this sound?"),
}
QUESTION_FRAMES = {
    "train": ("{V}.", "Please {v}.", "Can you {v}?", "I want you to {v}.", "Could you {v}?", "{V}, please.",
              "Would you {v}?", "{V} for me."),
    "held-out": ("Could you {v}, please?", "Would you please {v}?", "Can you {v} for me?"),
}
# Requests that turn a shown item into another modality: the question frames around verbs that
# name the output (`{d}` is the motion asked for, "left quickly"), plus the one plain wording of each
# in training. "Sound like" with an item attached asks for a sound; without one (the text-only
# questions of tiny/dialogues.py) it asks for words, so the attachment decides, as it does for a person.
CONVERSIONS = {
    "I->A": ("play the sound this would make", "let me hear what this would sound like", "make the sound of this picture",
             "give me the sound of this image"),
    "V->A": ("play the sound of this video", "let me hear this clip", "make the sound of this animation",
             "give me the sound this video makes"),
    "I->V": ("make this move {d}", "animate this moving {d}", "make a video of this moving {d}", "show me a clip of this moving {d}"),
}
PLAIN_CONVERSIONS = {"I->A": "What sound would this make?", "V->A": "Play the sound of this video.", "I->V": "Make this move {d}."}
PHRASINGS = tuple(REQUEST_FRAMES)


def _check(phrasing: str) -> None:
    if phrasing not in REQUEST_FRAMES:
        raise ValueError(f"unknown phrasing {phrasing!r}: expected one of {', '.join(PHRASINGS)}")


def request_forms(modality: str, phrasing: str = "train") -> list[str]:
    """Every request form of a modality in a family, with `{c}` for the caption:
    ["Show me {c}.", "Please show me {c}.", ...]."""
    _check(phrasing)
    return [_framed(frame, verb) for frame in REQUEST_FRAMES[phrasing] for verb in VERBS[modality]]


def question_forms(modality: str, phrasing: str = "train") -> list[str]:
    """The questions about a shown item of a modality in a family."""
    _check(phrasing)
    forms = [_framed(frame, verb) for frame in QUESTION_FRAMES[phrasing] for verb in SUBJECTS[modality]]
    return forms + list(PLAIN_QUESTIONS[modality]) if phrasing == "train" else forms


def conversion_forms(task: str, phrasing: str = "train") -> list[str]:
    """The requests of a conversion task ("I->A", "V->A", "I->V") in a family; I->V's have `{d}`
    for the motion."""
    _check(phrasing)
    if task not in CONVERSIONS:
        raise ValueError(f"unknown conversion {task!r}: expected one of {', '.join(CONVERSIONS)}")
    forms = [_framed(frame, verb) for frame in QUESTION_FRAMES[phrasing] for verb in CONVERSIONS[task]]
    # the plain wording is also a frame's ("{V}." around its verb) for V->A and I->V: counted once
    return sorted(set(forms + [PLAIN_CONVERSIONS[task]])) if phrasing == "train" else forms


def _framed(frame: str, verb: str) -> str:
    return frame.replace("{V}", verb[0].upper() + verb[1:]).replace("{v}", verb)
