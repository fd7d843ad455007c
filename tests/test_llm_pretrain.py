import math

import pytest
import torch

from nextgpt_mini.cli import main
from nextgpt_mini.config import LLMConfig
from nextgpt_mini.models.llm import load_llm, tiny_llama_config
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.prompts import IGNORE, dialogue_segments, tokenize_segments
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import toy_dialogues
from nextgpt_mini.tiny.pretrain import llm as lp
from nextgpt_mini.tiny.pretrain import llm_corpus as corpus
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def shipped():
    return load_llm(load_profile("tiny").llm)


def test_dialogues_render_as_training_renders_them_without_media(tok):
    text_only, with_media = toy_dialogues(5)[0], toy_dialogues(5)[4]
    assert text_only["task"] == "T->T" and with_media["task"] == "I->T"
    # text-only: the very ids training builds (plus </s>)
    expected = tokenize_segments(dialogue_segments(text_only["turns"], "nextgpt"), tok, 128).input_ids
    assert corpus.dialogue_ids(text_only["turns"], tok, 128) == expected + [tok.eos_token_id]
    # with media: the slot and its <Img>/</Img> wrappers are left out, the rest is kept
    line = "".join(s.text for s in corpus.lm_segments(with_media["turns"]))
    assert line.startswith("### Human:  ") and "<Img>" not in line and line.endswith("\n###\n")
    assert "\n### Assistant: It shows " in line
    # joined: the same text as one string, the way a typed prompt tokenizes: the same ids
    joined = corpus.dialogue_ids(text_only["turns"], tok, 128, joined=True)
    assert joined == expected + [tok.eos_token_id]


def test_pack_keeps_documents_whole_and_masks_padding():
    docs = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 9, 9, 2], [1, 3, 2]]
    ids, labels = corpus.pack(docs, block_size=8, pad_id=0)
    rows = [[t for t in row.tolist() if t != 0] for row in ids]
    assert rows == [[1, 5, 6, 2, 1, 7, 2], [1, 8, 9, 9, 9, 2], [1, 3, 2]]  # first fit, never cut
    assert ((ids == 0) == (labels == IGNORE)).all()


def test_pack_moves_soft_token_slots_with_their_documents():
    docs = [[1, 5, -1, 6, 2], [1, 7, 2], [1, -1, 2]]
    slots = [[(2, [40, 41])], [], [(1, [42])]]
    ids, labels, row_slots = corpus.pack(docs, block_size=8, pad_id=0, slots=slots)
    assert ids[0].tolist()[:8] == [1, 5, -1, 6, 2, 1, 7, 2] and ids[1].tolist()[:3] == [1, -1, 2]
    assert row_slots == [[(2, [40, 41])], [(1, [42])]]
    assert (labels[ids < 0] == IGNORE).all()


def test_slot_vectors_are_the_mean_embedding_of_their_bag(shipped):
    model, _ = shipped
    ids = torch.tensor([[1, -1, 5]])
    x = corpus.embed_rows(model, ids, [[(1, [40, 41, 42])]])
    table = model.get_input_embeddings().weight
    torch.testing.assert_close(x[0, 1], table[[40, 41, 42]].mean(0))
    torch.testing.assert_close(x[0, 2], table[5])


def test_reading_documents_hold_one_slot_per_media_item(tok):
    docs, slots = corpus.reading_documents(lp.tiny_llm_tokenizer(load_tiny_tokenizer()), "train", 12)
    assert len(docs) == len(slots) == 12
    assert all(len(s) >= 1 for s in slots)
    for d, s in zip(docs, slots):
        assert [d[p] for p, _ in s] == [-1] * len(s)


def test_corpus_uses_only_training_pairs(tok):
    held = [f"{c} {s}" for c, s in tw.HELD_OUT_PAIRS]
    text = "\n".join(corpus.corpus_text("train", n_captions=200, n_dialogues=200))
    assert not any(h in text for h in held)
    assert any(h in "\n".join(corpus.corpus_text("test", n_captions=20, n_dialogues=22)) for h in held)


def test_quick_pretraining_lowers_the_loss(tok):
    model, rep = lp.pretrain_tiny_llm(load_profile("tiny").llm, tok, lp.LLMPretrainSettings.quick(), progress=False)
    assert rep["steps"] == 12
    assert rep["train_loss_before"] > 5.5 and rep["train_loss_after"] < rep["train_loss_before"] - 0.5
    assert rep["val_loss_after"] < rep["val_loss_before"]
    assert not any(p.requires_grad for p in model.parameters())


def test_build_tiny_llm_quick_writes_a_loadable_folder(tmp_path, capsys):
    out = tmp_path / "llm"
    assert main(["build-tiny", "llm", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train loss" in printed and "val loss" in printed and "### Assistant:" in printed
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    model, tokenizer = load_llm(LLMConfig(name_or_path=str(out)))
    assert model.config.hidden_size == load_profile("tiny").llm.hidden_size and len(tokenizer) == model.config.vocab_size


def test_quick_build_refuses_to_overwrite_the_shipped_model(capsys):
    assert main(["build-tiny", "llm", "--quick"]) == 2
    assert "--out" in capsys.readouterr().err


def test_shipped_llm_loads_offline_frozen_and_knows_the_world(shipped, tok):
    model, tokenizer = shipped
    cfg = load_profile("tiny").llm
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert model.config.hidden_size == cfg.hidden_size and model.config.num_hidden_layers == cfg.num_layers
    assert len(tokenizer) == model.config.vocab_size == len(tok) + 2  # + <Img>, </Img>
    # held-out toy text (half of it about colour+shape pairs the model never read)
    ids, labels = corpus.pack(corpus.corpus_documents(tokenizer, "test", 6, 11), 128, tokenizer.pad_token_id)
    loss = lp.lm_loss(model, ids, labels)
    torch.manual_seed(0)
    untrained = lp.lm_loss(type(model)(tiny_llama_config(cfg, len(tokenizer))).eval(), ids, labels)
    assert untrained > 0.9 * math.log(len(tokenizer))
    assert loss < 0.5 * math.log(len(tokenizer)) and loss < 0.2 * untrained


def test_shipped_llm_reads_a_bag_of_words_soft_token(shipped):
    model, tokenizer = shipped
    right, asked = lp.reading_accuracy(model, tokenizer, n=12)
    # every attribute right by guessing: about 1 in 120 per item (the shipped model's count at build:
    # assets/BUILD_RESULTS.md, section llm)
    assert right >= 3, f"{right}/{asked}"


def test_shipped_llm_answers_a_training_pair_in_the_template(shipped):
    model, tokenizer = shipped
    assert lp.answer(model, tokenizer, "What sound does a red circle make?") == "A red circle makes a low steady tone."
    # typed as one string, the prompt tokenizes the same way
    raw = [tokenizer.bos_token_id] + tokenizer("### Human: What sound does a red circle make?\n### Assistant:")["input_ids"]
    assert lp.greedy_continue(model, tokenizer, raw).strip() == "A red circle makes a low steady tone."
