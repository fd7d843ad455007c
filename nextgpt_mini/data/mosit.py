"""Modality-switching dialogues (our MosIT format) and the toy world's dialogue writer.

The format, one JSON list of dialogues::

    {
      "id": "toy-0007",
      "task": "I->A",                       # input modalities -> output modalities, for samplers
      "turns": [
        {"role": "user", "text": "What sound would this make?",
         "media": [{"modality": "image", "path": "media/img_0007.png"}]},
        {"role": "assistant", "text": "It would make a low steady tone over pink noise.",
         "output": {"modality": "audio", "caption": "a low steady tone over pink noise"}}
      ]
    }

* `media` (user turns, optional): input items, each a `modality` and a `path` relative to the
  JSON file. In memory, the toy world puts the item itself under `item` instead of a path.
* `output` (assistant turns, optional): the turn asks for media. `caption` is its decoding
  target: stage 3 aligns the signal-token states with the decoder's embedding of this caption.
  At training time the modality's signal tokens are appended to the assistant's text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nextgpt_mini.tiny import world as tw

TASKS = ("T->T", "T->I", "T->V", "T->A", "I->T", "V->T", "A->T", "I->A", "V->A", "I->V", "T->I,A")


ANSWER_PREFIX = {"image": "It shows", "video": "It shows", "audio": "I hear"}


def describe_answer(modality: str, caption: str) -> str:
    """How the assistant describes an input item: 'It shows a red circle.' / 'I hear a low tone.'"""
    return f"{ANSWER_PREFIX[modality]} {caption}."


def strip_answer(text: str) -> str:
    """The caption inside a describe_answer-style reply."""
    text = text.strip()
    for prefix in set(ANSWER_PREFIX.values()):
        if text.startswith(prefix + " "):
            text = text[len(prefix) + 1 :]
    return text.rstrip(".").strip()


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
    image, video, audio = (tw.sample_items(m, 1, seed=seed, split=split)[0] for m in ("image", "video", "audio"))
    sound = tw.soundtrack_of(image)
    o = image.obj
    if task == "T->T":
        q = _pick(["What sound does {n} make?", "What does {n} sound like?"], rng).format(n=_object_name(o))
        a = f"{_object_name(o).capitalize()} makes {tw.article(o.pitch)} {o.pitch} {o.sound}."
        return [{"role": "user", "text": q}, {"role": "assistant", "text": a}]
    if task == "T->I":
        q = _pick(["Draw {c}.", "Show me {c}.", "Can you make a picture of {c}?"], rng).format(c=image.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": f"Here is {image.caption}.", "output": _out(image)}]
    if task == "T->V":
        q = _pick(["Make a video of {c}.", "Show me a clip of {c}."], rng).format(c=video.caption)
        return [{"role": "user", "text": q}, {"role": "assistant", "text": f"Here is a video of {video.caption}.", "output": _out(video)}]
    if task == "T->A":
        if rng.random() < 0.5:
            q = f"Play {audio.caption}."
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


def read_json_list(path: str | Path, what: str = "dialogue") -> list:
    """A JSON file that must hold a list; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {what}s, got {type(data).__name__}")
    return data


def load_dialogues(path: str | Path) -> list[dict]:
    """Read our MosIT JSON; media paths become absolute. Errors name the file and the problem."""
    return check_dialogues(read_json_list(path), Path(path))


def check_dialogues(data: list, path: Path) -> list[dict]:
    """Validate dialogues read from `path` and make their media paths absolute (relative to it)."""
    for k, d in enumerate(data):
        if not isinstance(d, dict) or not isinstance(d.get("turns"), list) or not d["turns"]:
            raise ValueError(f"{path}: dialogue {k} has no 'turns' list")
        for turn in d["turns"]:
            if turn.get("role") not in ("user", "assistant") or not isinstance(turn.get("text"), str):
                raise ValueError(f"{path}: dialogue {d.get('id', k)} has a turn without role user/assistant and text")
            for m in turn.get("media", []):
                if "path" in m:
                    m["path"] = str((path.parent / m["path"]).resolve())
    return data
