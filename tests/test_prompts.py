import pytest
import torch

from nextgpt_mini.prompts import (
    IGNORE,
    MEDIA_PLACEHOLDER,
    collate,
    dialogue_segments,
    embed_with_media,
    plain_text,
    tokenize_segments,
)
from nextgpt_mini.tiny.dialogues import toy_dialogues
from tests._tiny_llm import random_tiny_llm


@pytest.fixture(scope="module")
def llm():
    return random_tiny_llm()


def _example(turns, tok, st, max_length=128):
    return tokenize_segments(dialogue_segments(turns, "nextgpt", st.tokens), tok, max_length, signal_ids=st.ids)


def test_nextgpt_template_places_soft_tokens_and_masks_everything_but_answers(llm):
    _, tok, st = llm
    turns = [{"role": "user", "text": "Compare these.", "media": [{"modality": "image"}, {"modality": "audio"}]},
             {"role": "assistant", "text": "Here is a red circle.", "output": {"modality": "image", "caption": "x"}}]
    segs = dialogue_segments(turns, "nextgpt", st.tokens)
    assert plain_text(segs) == ("### Human: <Img><media></Img><Img><media></Img> Compare these.\n### Assistant:"
                                " Here is a red circle. [IMG0][IMG1][IMG2][IMG3]\n###\n")
    ex = tokenize_segments(segs, tok, 128, signal_ids=st.ids)
    assert [ex.input_ids[p] for p in ex.media_positions] == [MEDIA_PLACEHOLDER] * 2
    assert all(ex.input_ids[p - 1] == st.media_start and ex.input_ids[p + 1] == st.media_end for p in ex.media_positions)
    answer = [i for i, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE]
    assert tok.decode(answer) == " Here is a red circle. [IMG0][IMG1][IMG2][IMG3]\n###"
    assert ex.signal_spans == [("image", ex.input_ids.index(st.ids["image"][0]), ex.input_ids.index(st.ids["image"][-1]) + 1)]


def test_multi_turn_dialogue_trains_on_every_answer(llm):
    _, tok, st = llm
    d = toy_dialogues(1, tasks=("T->I,A",))[0]
    ex = _example(d["turns"], tok, st)
    answer = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])
    assert d["turns"][1]["text"] in answer and d["turns"][3]["text"] in answer and "Human" not in answer
    assert [m for m, _, _ in ex.signal_spans] == ["image", "audio"]


def test_padded_batch_gives_the_same_per_example_loss_as_each_alone(llm):
    model, tok, st = llm
    dialogues = toy_dialogues(4, tasks=("I->T", "T->T", "A->T", "T->I,A"))
    examples = [_example(d["turns"], tok, st) for d in dialogues]
    assert len({len(e.input_ids) for e in examples}) > 1  # really mixed lengths
    torch.manual_seed(0)
    soft = [torch.randn(len(e.media_positions), model.config.hidden_size) for e in examples]

    def losses(batch_examples, batch_soft):
        b = collate(batch_examples, tok.pad_token_id)
        emb = embed_with_media(model.get_input_embeddings(), b["input_ids"], batch_soft)
        logits = model(inputs_embeds=emb, attention_mask=b["attention_mask"]).logits[:, :-1]
        labels = b["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        mask = labels != IGNORE
        return (nll * mask).sum(1) / mask.sum(1)

    with torch.no_grad():
        together = losses(examples, soft)
        alone = torch.cat([losses([e], [s]) for e, s in zip(examples, soft)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_prompt_longer_than_the_context_is_a_clear_error(llm):
    _, tok, st = llm
    long = [{"role": "user", "text": "red " * 300}, {"role": "assistant", "text": "ok"}]
    with pytest.raises(ValueError, match="over the model's limit of 128"):
        _example(long, tok, st, max_length=128)


def test_answers_too_long_are_cut_not_the_prompt(llm):
    _, tok, st = llm
    turns = [{"role": "user", "text": "Say it."}, {"role": "assistant", "text": "red " * 300}]
    ex = _example(turns, tok, st, max_length=64)
    assert len(ex.input_ids) == 64 and ex.labels[-1] != IGNORE


def test_media_slot_count_must_match_soft_tokens(llm):
    model, tok, st = llm
    ex = _example([{"role": "user", "text": "hi", "media": [{"modality": "image"}]}, {"role": "assistant", "text": "ok"}], tok, st)
    b = collate([ex], tok.pad_token_id)
    with pytest.raises(ValueError, match="1 media slots but 2 soft tokens"):
        embed_with_media(model.get_input_embeddings(), b["input_ids"], [torch.zeros(2, model.config.hidden_size)])
    with pytest.raises(ValueError, match="no soft tokens"):
        embed_with_media(model.get_input_embeddings(), b["input_ids"], None)


def test_chat_template_marks_answers_and_slots(llm):
    _, tok, st = llm
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    turns = [{"role": "user", "text": "What is this?", "media": [{"modality": "image"}]},
             {"role": "assistant", "text": "A red circle."}]
    segs = dialogue_segments(turns, "chat", st.tokens, tokenizer=tok)
    assert plain_text(segs) == "<|user|><Img><media></Img> What is this?</s><|assistant|>A red circle.</s>"
    assert [s.text for s in segs if s.train] == ["A red circle.</s>"]
