"""The phrasing families: held-out ones never reach training text; follow-ups answer what they ask;
uncertain reading slots keep the true word on top."""

from collections import defaultdict

import pytest
import torch

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import follow_up, toy_dialogues
from nextgpt_mini.tiny.phrasings import (
    CONVERSIONS,
    PLAIN_CONVERSIONS,
    VERBS,
    conversion_forms,
    question_forms,
    request_forms,
)
from nextgpt_mini.tiny.pretrain import llm_corpus as corpus
from nextgpt_mini.tiny.pretrain.llm import tiny_llm_tokenizer
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer


def _frame_of(text: str, forms: list[str], caption: str) -> str | None:
    return next((form for form in forms if form.format(c=caption) == text), None)


def test_held_out_families_never_appear_in_training_dialogues():
    held = {m: request_forms(m, "held-out") for m in MODALITIES}
    held_questions = {q for m in MODALITIES for q in question_forms(m, "held-out")}
    seen_verbs = set()
    for d in toy_dialogues(700, seed=0, split="train") + toy_dialogues(700, seed=1000, split="train"):
        for k, turn in enumerate(d["turns"]):
            if turn["role"] != "user":
                continue
            assert turn["text"] not in held_questions, turn["text"]
            out = d["turns"][k + 1].get("output")
            if out:
                assert _frame_of(turn["text"], held[out["modality"]], out["caption"]) is None, turn["text"]
            for m in MODALITIES:
                seen_verbs |= {v for v in VERBS[m] if f"{v} " in turn["text"].lower()}
    # every verb of the held-out requests is read in training, in other frames
    assert seen_verbs == {v for m in MODALITIES for v in VERBS[m]}


def _motions() -> list[str]:
    return [f"{d} {s}" for d in tw.DIRECTION_VECTOR for s in tw.SPEED_WORD.values()]


def test_held_out_conversion_requests_never_appear_in_training_dialogues():
    held = {f.format(d=m) for t in CONVERSIONS for f in conversion_forms(t, "held-out") for m in _motions()}
    trained = {f.format(d=m) for t in CONVERSIONS for f in conversion_forms(t, "train") for m in _motions()}
    assert held and not held & trained
    seen = defaultdict(set)
    for d in toy_dialogues(700, seed=0, split="train", tasks=tuple(CONVERSIONS), varied_conversions=True):
        text = d["turns"][0]["text"]
        assert text not in held, text
        assert text in trained, text
        seen[d["task"]].add(text)
    # training asks each conversion in many wordings, not one template
    assert all(len(v) >= 20 for v in seen.values()), {t: len(v) for t, v in seen.items()}
    for d in toy_dialogues(30, seed=3, split="test", phrasing="held-out", tasks=tuple(CONVERSIONS)):
        assert d["turns"][0]["text"] in held, d["turns"][0]["text"]


def test_varied_conversions_change_only_the_conversion_requests():
    plain = toy_dialogues(60, seed=5, split="train")
    varied = toy_dialogues(60, seed=5, split="train", varied_conversions=True)
    changed = [p["task"] for p, v in zip(plain, varied) if p != v]
    assert changed and set(changed) <= set(CONVERSIONS)
    for p, v in zip(plain, varied):
        if p["task"] in CONVERSIONS:
            assert p["turns"][0]["text"] in {PLAIN_CONVERSIONS[p["task"]].format(d=m) for m in _motions()}
            assert p["turns"][1:] == v["turns"][1:]  # the same items and answers


def test_unknown_conversion_is_refused_by_name():
    with pytest.raises(ValueError, match="'A->I'.*I->A, V->A, I->V"):
        conversion_forms("A->I")


def test_held_out_phrasing_dialogues_use_only_held_out_frames():
    for d in toy_dialogues(40, seed=3, split="test", phrasing="held-out", tasks=("T->I", "T->V")):
        out = d["turns"][1]["output"]
        assert _frame_of(d["turns"][0]["text"], request_forms(out["modality"], "held-out"), out["caption"]) is not None
        assert _frame_of(d["turns"][0]["text"], request_forms(out["modality"], "train"), out["caption"]) is None


def test_unknown_phrasing_is_refused_by_name():
    with pytest.raises(ValueError, match="'polite'.*train, held-out"):
        request_forms("image", "polite")


@pytest.mark.parametrize("modality", MODALITIES)
def test_follow_up_answers_name_the_asked_value(modality):
    for item in tw.sample_items(modality, 12, seed=4, split="train"):
        for attribute, value in item.attributes.items():
            question, answer = follow_up(item, attribute)
            assert question.endswith("?")
            assert tw.read_attribute(answer, attribute) == value, (attribute, answer)


def test_uncertain_slot_keeps_the_true_word_largest():
    tok = tiny_llm_tokenizer(load_tiny_tokenizer())
    alternatives = corpus.attribute_alternatives(tok)
    red, green = (tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("red", "green"))
    assert green in alternatives[red] and red not in alternatives[red]
    table = torch.eye(len(tok))  # one-hot embeddings: the slot's coordinates are the words' weights
    bag = tok("a big red circle on the left", add_special_tokens=False)["input_ids"]
    plain = corpus.slot_vector(table, bag)
    torch.testing.assert_close(plain, table[bag].mean(0))
    for seed in range(20):
        v = corpus.slot_vector(table, bag, mix=0.45, alternatives=alternatives, generator=torch.Generator().manual_seed(seed))
        assert v.sum().item() == pytest.approx(1.0)
        assert v[red] > max(v[t] for t in alternatives[red])  # the true colour keeps the largest weight
        assert v[red] < plain[red]
