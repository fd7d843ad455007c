"""Chapter 06: modality-switching dialogues in our MosIT format (the toy world writes them: tiny/dialogues.py).

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
