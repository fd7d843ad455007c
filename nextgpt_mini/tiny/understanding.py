"""Chapters 06 and 09: does the tiny system understand what it is shown and what it is asked?

Three measurements on held-out toy items, each with greedy replies of the trained system:

* `media_to_text`: per modality, each attribute named right and whole answers right, for items
  whose colour+shape pair was seen in training and for the held-out pairs apart;
* `request_modalities`: requests for media, in the training phrasing families and in the held-out
  ones (`tiny/phrasings.py`): the share of first replies with the right signal tokens;
* `follow_ups`: after its own description of an item, the system is asked about one attribute
  ("Where is it?"): the share of answers naming it right;
* `request_conditioning`: what the output projector makes of requests, in the training and the
  held-out phrasing families: the nearest caption to its conditioning (the toy suite's oracle
  decoder), scored on the attributes the request states;
* `media_from_files`: `media_to_text` for media the renderer never handed over, written as files
  a user would bring (JPEG at another size, MP4 at other frame rates, WAV at 22.05 / 44.1 kHz)
  and read back through the file loaders (`processing`).

`build-tiny system` writes these to BUILD_RESULTS.md (`lines`).
"""

from __future__ import annotations

import copy
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import strip_answer
from nextgpt_mini.files import save_audio, save_video
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.data import heldout_dialogues
from nextgpt_mini.tiny.dialogues import toy_dialogues
from nextgpt_mini.tiny.toy_decoder import ToyDecoder, all_items, unstated_attributes
from nextgpt_mini.training.stage3 import media_key, prepare_dialogues, respond_many, signal_runs

DESCRIBE = {"image": "I->T", "video": "V->T", "audio": "A->T"}
FOLLOW_UP = {"image": "I->T,T", "video": "V->T,T", "audio": "A->T,T"}
REQUESTS = ("T->I", "T->V", "T->A", "T->I,A", "I->A", "V->A", "I->V")


def _held_out_pair(item: tw.ToyItem) -> bool:
    return (item.obj.colour, item.obj.shape) in tw.HELD_OUT_PAIRS


def _replies(model, data, n_turns: int = 1) -> list[str]:
    prompts = [(d["turns"][:n_turns], [data.media[media_key(m)] for t in d["turns"][:n_turns] for m in t.get("media", [])])
               for d in data.dialogues]
    return [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in respond_many(model, prompts)]


def media_to_text(model, decoders, n: int = 60, seed: int = 0, phrasing: str = "train") -> dict[str, dict]:
    """{modality: {"items": n, "seen"/"held-out": {attribute: rate, "all": rate, "n": count}}} for
    greedy answers to `n` held-out questions per modality."""
    out = {}
    for m in MODALITIES:
        data = heldout_dialogues(model, decoders, n, seed, tasks=(DESCRIBE[m],), phrasing=phrasing)
        groups: dict[str, list[dict]] = defaultdict(list)
        for d, said in zip(data.dialogues, _replies(model, data)):
            item = d["turns"][0]["media"][0]["item"]
            groups["held-out" if _held_out_pair(item) else "seen"].append(item.attribute_scores(strip_answer(said)))
        groups["all"] = groups["seen"] + groups["held-out"]
        out[m] = {g: _rates(hits) for g, hits in groups.items() if hits}
    return out


def _rates(hits: list[dict[str, bool]]) -> dict:
    rates = {a: sum(h[a] for h in hits) / len(hits) for a in hits[0]}
    rates["all"] = sum(all(h.values()) for h in hits) / len(hits)
    rates["n"] = len(hits)
    return rates


def request_modalities(model, decoders, n: int = 70, seed: int = 0, phrasing: str = "train") -> dict[str, float]:
    """{task: share of first replies with exactly the asked modality's complete signal tokens}."""
    data = heldout_dialogues(model, decoders, n, seed, tasks=REQUESTS, phrasing=phrasing)
    prompts = [([d["turns"][0]], [data.media[media_key(m)] for m in d["turns"][0].get("media", [])] or None)
               for d in data.dialogues]
    right: dict[str, list[bool]] = defaultdict(list)
    for d, ids in zip(data.dialogues, respond_many(model, prompts)):
        wanted = d["turns"][1]["output"]["modality"]
        right[d["task"]].append(signal_runs(ids, model.signal.ids) == [(wanted, True)])
    return {t: sum(v) / len(v) for t, v in right.items()}


def follow_ups(model, decoders, n: int = 30, seed: int = 0) -> dict[str, float]:
    """{modality: share of follow-up answers naming the asked attribute right}, the system's own
    description of the item standing in the history as its first answer."""
    out = {}
    for m in MODALITIES:
        data = heldout_dialogues(model, decoders, n, seed, tasks=(FOLLOW_UP[m],))
        first = _replies(model, data)
        prompts = []
        for d, said in zip(data.dialogues, first):
            turns = [d["turns"][0], {"role": "assistant", "text": said.split("###")[0].strip()}, d["turns"][2]]
            prompts.append((turns, [data.media[media_key(x)] for x in d["turns"][0]["media"]]))
        right = 0
        for d, ids in zip(data.dialogues, respond_many(model, prompts)):
            item = d["turns"][0]["media"][0]["item"]
            attribute = next(a for a in item.attributes if tw.read_attribute(d["turns"][3]["text"], a) == item.attributes[a])
            right += tw.read_attribute(model.tokenizer.decode(ids, skip_special_tokens=True), attribute) == item.attributes[attribute]
        out[m] = right / len(data.dialogues)
    return out


GENERATE = {"T->I": "image", "T->V": "video", "T->A": "audio"}


def request_conditioning(model, decoders, n: int = 32, seed: int = 0, phrasing: str = "train") -> dict[str, dict[str, float]]:
    """{task: {attribute: share of requests whose conditioning's nearest caption names it right}}
    for `n` held-out requests per task; attributes a request leaves open are not scored."""
    out = {}
    for task, m in GENERATE.items():
        oracle = ToyDecoder(decoders[m], model.profile.train.distance)
        hits: dict[str, list[bool]] = defaultdict(list)
        for k, d in enumerate(toy_dialogues(n, seed=seed + 1, split="test", tasks=(task,), phrasing=phrasing)):
            asked = all_items(m)[d["turns"][1]["output"]["caption"]]
            r = model.generate(d["turns"][0]["text"], seed=seed + k, require=m, decode=False)
            made = oracle.caption_of(r.conditioning[m][:1])
            open_ = unstated_attributes(d["turns"][0]["text"], asked)
            for a, right in asked.attribute_scores(made).items():
                if a not in open_:
                    hits[a].append(right)
        out[task] = {a: sum(v) / len(v) for a, v in hits.items()}
    return out


def _jpeg(item, path: Path, size: int) -> None:
    Image.fromarray(tw.render_image(item, size)).save(path, format="JPEG", quality=80)


def _png(item, path: Path, size: int) -> None:
    Image.fromarray(tw.render_image(item, size)).save(path, format="PNG")


def _mp4(item, path: Path, size: int, fps: int) -> None:
    save_video(tw.render_video(item, size, 2.0, fps), path, fps)


def _wav(item, path: Path, sample_rate: int, stereo: bool = False) -> None:
    wave = tw.render_audio(item, 2.0, sample_rate)
    save_audio(np.stack([wave, wave], 1) if stereo else wave, path, sample_rate)


# Files as users bring them, none the renderer's own (64 px arrays, 8 fps, 16 kHz): (suffix, writer).
FILE_VARIANTS = {
    "image": {"JPEG 128 px": (".jpg", lambda it, p: _jpeg(it, p, 128)), "JPEG 48 px": (".jpg", lambda it, p: _jpeg(it, p, 48)),
              "PNG 200 px": (".png", lambda it, p: _png(it, p, 200))},
    "video": {"MP4 12 fps 96 px": (".mp4", lambda it, p: _mp4(it, p, 96, 12)), "MP4 5 fps 64 px": (".mp4", lambda it, p: _mp4(it, p, 64, 5)),
              "MP4 25 fps 128 px": (".mp4", lambda it, p: _mp4(it, p, 128, 25))},
    "audio": {"WAV 22.05 kHz": (".wav", lambda it, p: _wav(it, p, 22050)), "WAV 44.1 kHz stereo": (".wav", lambda it, p: _wav(it, p, 44100, True)),
              "WAV 8 kHz": (".wav", lambda it, p: _wav(it, p, 8000))},
}


def media_from_files(model, decoders, n: int = 30, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{modality: {variant: rates as in `media_to_text`'s "all"}}: the held-out questions of
    `media_to_text`, their media written as FILE_VARIANTS files and read by the file loaders."""
    out: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="nextgpt-mini-media-") as tmp:
        for m in MODALITIES:
            base = toy_dialogues(n, seed=seed + 1, split="test", tasks=(DESCRIBE[m],))
            for name, (suffix, write) in FILE_VARIANTS[m].items():
                dialogues, items = copy.deepcopy(base), []
                for k, d in enumerate(dialogues):
                    medium = d["turns"][0]["media"][0]
                    path = Path(tmp) / f"{m}-{len(out.get(m, {}))}-{k}{suffix}"
                    write(medium["item"], path)
                    items.append(medium.pop("item"))
                    medium["path"] = str(path)
                data = prepare_dialogues(model, decoders, dialogues)
                hits = [it.attribute_scores(strip_answer(said)) for it, said in zip(items, _replies(model, data))]
                out.setdefault(m, {})[name] = _rates(hits)
    return out


def lines(model, decoders) -> list[str]:
    """The three measurements as BUILD_RESULTS.md lines."""
    out = []
    for phrasing in ("train", "held-out"):
        table = media_to_text(model, decoders, phrasing=phrasing)
        out.append(f"media->text, questions in the {phrasing} phrasing families (held-out items; seen / held-out colour+shape pairs):")
        for m, groups in table.items():
            cells = ", ".join(f"{a} {groups['all'][a]:.0%}" for a in groups["all"] if a not in ("all", "n"))
            parts = " / ".join(f"{groups[g]['all']:.0%} of {groups[g]['n']}" for g in ("seen", "held-out") if g in groups)
            out.append(f"  {m}: {cells}; every attribute {groups['all']['all']:.0%} ({parts})")
    for phrasing in ("train", "held-out"):
        rates = request_modalities(model, decoders, phrasing=phrasing)
        out.append(f"requests in the {phrasing} phrasing families, right signal tokens in first replies: "
                   + ", ".join(f"{t} {r:.0%}" for t, r in rates.items()))
    out.append("follow-up questions about the item just described, answered right: "
               + ", ".join(f"{m} {r:.0%}" for m, r in follow_ups(model, decoders).items()))
    out.append("requests' conditioning, nearest caption (the oracle decoder), attributes right, train / held-out phrasing families:")
    tables = {ph: request_conditioning(model, decoders, phrasing=ph) for ph in ("train", "held-out")}
    for task in GENERATE:
        cells = ", ".join(f"{a} {tables['train'][task][a]:.0%} / {tables['held-out'][task][a]:.0%}" for a in tables["train"][task])
        out.append(f"  {task}: {cells}")
    out.append("media->text from files the renderer never made (held-out items; per attribute / every attribute):")
    for m, variants in media_from_files(model, decoders).items():
        out.append(f"  {m}: " + "; ".join(f"{v} {per_attribute(r):.0%} / {r['all']:.0%}" for v, r in variants.items()))
    return out


def per_attribute(rates: dict) -> float:
    """The mean of a `_rates` table's attribute rates."""
    values = [r for a, r in rates.items() if a not in ("all", "n")]
    return sum(values) / len(values)
