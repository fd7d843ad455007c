"""The phrasing families: held-out ones never reach training text; follow-ups answer what they ask;
uncertain reading slots keep the true word on top."""

import pytest
import torch

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import follow_up, toy_dialogues
from nextgpt_mini.tiny.phrasings import VERBS, question_forms, request_forms
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
