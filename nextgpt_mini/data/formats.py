"""Chapter 06: readers that turn other instruction-data formats into our MosIT dialogues (`data/mosit.py`).

So a user with the real data can train stage 3 on it:

* NExT-GPT's T2M / MosIT JSON: a list of records with `conversations` (or `conversation`), each
  turn `{"from": "human"|"gpt", "value": ...}`; human turns may name input media
  (`input_modality` plus `mm_name` or `image_name` / `video_name` / `audio_name`), gpt turns that
  produce media carry `output_modality` and the `caption` that is their decoding target, and a
  placeholder such as `<image>` in the text where the media goes.
* LLaVA-Instruct (image -> text): `{"image": "x.jpg", "conversations": [{"from": "human", "value":
  "<image>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}`.
* Alpaca (text -> text): `{"instruction", "input", "output"}`.

`read_dialogues(path)` picks the reader from the records' fields. Media paths are resolved
against `media_dir` (default: the JSON file's folder).
"""

from __future__ import annotations

import re
from pathlib import Path

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import check_dialogues, read_json_list

ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
PLACEHOLDER = re.compile(r"\s*<(image|video|audio)>\s*")
CODE = {"text": "T", "image": "I", "video": "V", "audio": "A"}


def _clean(text: str) -> str:
    return PLACEHOLDER.sub(" ", text).strip()


def _task(turns: list[dict]) -> str:
    inputs = sorted({m["modality"] for t in turns for m in t.get("media", [])}, key=MODALITIES.index)
    outputs = sorted({t["output"]["modality"] for t in turns if "output" in t}, key=MODALITIES.index)
    left = "".join(CODE[m] for m in inputs) or "T"
    right = ",".join(CODE[m] for m in outputs) or "T"
    return f"{left}->{right}"


def _media_name(turn: dict) -> tuple[str, str] | None:
    """(modality, file name) of a human turn's input media, if it has any."""
    for m in MODALITIES:
        if turn.get(f"{m}_name"):
            return m, turn[f"{m}_name"]
    modality = turn.get("input_modality", "text")
    if modality != "text" and turn.get("mm_name"):
        if modality not in MODALITIES:
            raise ValueError(f"input_modality {modality!r}: expected text, image, video or audio")
        return modality, turn["mm_name"]
    return None


def from_nextgpt(records: list, media_dir: Path, source: str = "NExT-GPT data") -> list[dict]:
    """NExT-GPT T2M / MosIT records -> our dialogues."""
    dialogues = []
    for k, rec in enumerate(records):
        turns_in = rec.get("conversations", rec.get("conversation")) if isinstance(rec, dict) else None
        if not isinstance(turns_in, list) or not turns_in:
            raise ValueError(f"{source}: record {k} has no 'conversations' list")
        turns = []
        for j, t in enumerate(turns_in):
            role = ROLE.get(t.get("from")) if isinstance(t, dict) else None
            if role is None or not isinstance(t.get("value"), str):
                raise ValueError(f"{source}: record {k}, turn {j}: expected 'from' human/gpt and a 'value' string")
            turn = {"role": role, "text": _clean(t["value"])}
            if role == "user":
                media = _media_name(t)
                if media:
                    turn["media"] = [{"modality": media[0], "path": str(media_dir / media[1])}]
            else:
                modality = t.get("output_modality", "text")
                if modality != "text":
                    if modality not in MODALITIES or not isinstance(t.get("caption"), str):
                        raise ValueError(f"{source}: record {k}, turn {j}: output_modality {modality!r} needs a "
                                         "'caption' string and one of image, video, audio")
                    turn["output"] = {"modality": modality, "caption": t["caption"]}
            turns.append(turn)
        dialogues.append({"id": str(rec.get("id", f"nextgpt-{k}")), "task": _task(turns), "turns": turns})
    return dialogues


def from_llava(records: list, media_dir: Path, source: str = "LLaVA data") -> list[dict]:
    """LLaVA-Instruct records (image -> text) -> our dialogues; the image joins the first human turn."""
    dialogues = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
            raise ValueError(f"{source}: record {k} has no 'conversations' list")
        turns = []
        for j, t in enumerate(rec["conversations"]):
            role = ROLE.get(t.get("from"))
            if role is None or not isinstance(t.get("value"), str):
                raise ValueError(f"{source}: record {k}, turn {j}: expected 'from' human/gpt and a 'value' string")
            turns.append({"role": role, "text": _clean(t["value"])})
        if rec.get("image"):
            first_user = next((t for t in turns if t["role"] == "user"), None)
            if first_user is None:
                raise ValueError(f"{source}: record {k} has an image but no human turn")
            first_user["media"] = [{"modality": "image", "path": str(media_dir / rec["image"])}]
        dialogues.append({"id": str(rec.get("id", f"llava-{k}")), "task": _task(turns), "turns": turns})
    return dialogues


def from_alpaca(records: list, source: str = "Alpaca data") -> list[dict]:
    """Alpaca records (text -> text) -> one-exchange dialogues (the input, if any, follows the instruction)."""
    dialogues = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str) or not isinstance(rec.get("output"), str):
            raise ValueError(f"{source}: record {k} needs 'instruction' and 'output' strings")
        question = rec["instruction"] + (f"\n{rec['input']}" if rec.get("input") else "")
        turns = [{"role": "user", "text": question}, {"role": "assistant", "text": rec["output"]}]
        dialogues.append({"id": f"alpaca-{k}", "task": "T->T", "turns": turns})
    return dialogues


def detect_format(records: list) -> str:
    """'mosit' (ours), 'nextgpt', 'llava' or 'alpaca', from the first record's fields."""
    first = records[0] if records and isinstance(records[0], dict) else {}
    if "turns" in first:
        return "mosit"
    if "instruction" in first and "output" in first:
        return "alpaca"
    if "image" in first and "conversations" in first:
        return "llava"
    if "conversations" in first or "conversation" in first:
        return "nextgpt"
    raise ValueError("unrecognised instruction format: expected records with 'turns' (MosIT), 'conversations' "
                     "(NExT-GPT or LLaVA) or 'instruction'/'output' (Alpaca)")


def read_dialogues(path: str | Path, media_dir: str | Path | None = None, fmt: str | None = None) -> list[dict]:
    """Any supported instruction file as our dialogues (see the module docstring)."""
    path = Path(path)
    records = read_json_list(path, "instruction")
    if not records:
        raise ValueError(f"{path}: the file holds no records")
    try:
        fmt = fmt or detect_format(records)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    media_dir = Path(media_dir) if media_dir is not None else path.parent
    if fmt == "mosit":
        return check_dialogues(records, path)
    if fmt == "nextgpt":
        return from_nextgpt(records, media_dir, str(path))
    if fmt == "llava":
        return from_llava(records, media_dir, str(path))
    if fmt == "alpaca":
        return from_alpaca(records, str(path))
    raise ValueError(f"{path}: unknown format {fmt!r}: expected mosit, nextgpt, llava or alpaca")
