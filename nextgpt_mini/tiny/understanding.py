"""Chapters 06 and 09: does the tiny system understand what it is shown and what it is asked?

Three measurements on held-out toy items, each with greedy replies of the trained system:

* `media_to_text`: per modality, each attribute named right and whole answers right, for items
  whose colour+shape pair was seen in training and for the held-out pairs apart;
* `request_modalities`: requests for media, in the training phrasing families and in the held-out
  ones (`tiny/phrasings.py`): the share of first replies with the right signal tokens;
* `follow_ups`: after its own description of an item, the system is asked about one attribute
  ("Where is it?"): the share of answers naming it right.

`build-tiny system` writes these to BUILD_RESULTS.md (`lines`).
"""

from __future__ import annotations

from collections import defaultdict

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import strip_answer
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.data import heldout_dialogues
from nextgpt_mini.training.stage3 import media_key, respond_many, signal_runs

DESCRIBE = {"image": "I->T", "video": "V->T", "audio": "A->T"}
FOLLOW_UP = {"image": "I->T,T", "video": "V->T,T", "audio": "A->T,T"}
REQUESTS = ("T->I", "T->V", "T->A", "T->I,A")


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


def request_modalities(model, decoders, n: int = 48, seed: int = 0, phrasing: str = "train") -> dict[str, float]:
    """{task: share of first replies with exactly the asked modality's complete signal tokens}."""
    data = heldout_dialogues(model, decoders, n, seed, tasks=REQUESTS, phrasing=phrasing)
    prompts = [([d["turns"][0]], None) for d in data.dialogues]
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
    return out
