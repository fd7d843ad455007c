"""Issue 20: the "legacy" template tokenizes as NExT-GPT's own code did, so that its released
checkpoint reads the prompts it was trained on.

The reference ids come from transformers 4.29.2's slow LlamaTokenizer (the original's pin) over a
LLaMA-shaped SentencePiece stand-in (tests/data/make_legacy_tokenizer_fixture.py made them); here
transformers 5's tokenizer over the same model must give the same ids through `legacy_encode`.
"""

import json
from pathlib import Path

import pytest
import torch

from nextgpt_mini.config import LLMConfig, SignalTokenConfig
from nextgpt_mini.models.llm import load_llm
from nextgpt_mini.models.signal_tokens import LEGACY_WRAPPERS, add_signal_tokens, find_runs
from nextgpt_mini.prompts import dialogue_segments, legacy_encode, tokenize_segments

DATA = Path(__file__).parent / "data"
STAND_IN = Path(__file__).resolve().parents[1] / "configs" / "hub" / "stand-ins" / "llama_sentencepiece.model"
FIXTURE = json.loads((DATA / "legacy_tokenizer_ids.json").read_text())
# what Vicuna v0's folder holds besides the weights (FastChat's apply_delta saves the LLaMA-1 tokenizer)
V0_TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                       "model_max_length": 2048}


def v0_shaped(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((STAND_IN).read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(V0_TOKENIZER_CONFIG))
    config = LlamaConfig(vocab_size=400, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    model, tok = load_llm(LLMConfig(name_or_path=str(v0_shaped(tmp_path_factory.mktemp("v0") / "vicuna-v0"))))
    signal = add_signal_tokens(model, tok, SignalTokenConfig(image=4, video=24, audio=8), legacy=True)
    return model, tok, signal


def test_added_tokens_have_the_checkpoints_ids(legacy):
    _, tok, signal = legacy
    assert {t: tok.convert_tokens_to_ids(t) for t in FIXTURE["added"]} == FIXTURE["added"]
    assert (signal.media_start, signal.media_end) == (400, 401)
    assert signal.ids["image"] == list(range(402, 406)) and signal.ids["audio"][-1] == 437
    assert not any(t in tok.all_special_tokens for t in LEGACY_WRAPPERS + ("[IMG0]",))  # ordinary tokens, as in 4.29


def test_each_segment_encodes_as_transformers_4_29_did(legacy):
    _, tok, signal = legacy
    added = LEGACY_WRAPPERS + tuple(t for group in signal.tokens.values() for t in group)
    for text, ids in zip(FIXTURE["texts"], FIXTURE["ids"]):
        assert legacy_encode(tok, text, added) == ids, text
    # what plain transformers 5 does differs (a "▁" before [IMG0], "\n###" instead of "▁###"): the emulation is needed
    run = "Here it is.[IMG0] [IMG1] [IMG2] [IMG3]\n###"
    assert tok(run, add_special_tokens=False)["input_ids"] != FIXTURE["ids"][FIXTURE["texts"].index(run)]


def test_the_template_is_the_originals_training_format(legacy):
    _, tok, signal = legacy
    turns = [{"role": "user", "text": "What is in this picture?", "media": [{"modality": "image"}]},
             {"role": "assistant", "text": "It shows a big red circle on the left."},
             {"role": "user", "text": "What colour is it?"},
             {"role": "assistant", "text": "Here it is.", "output": {"modality": "image"}}]
    segs = dialogue_segments(turns, "legacy", signal.tokens, tok)
    assert [s.text for s in segs] == ["### Human: <Img>", "", "</Img> What is in this picture?\n### Assistant: ",
                                      "It shows a big red circle on the left.\n###", "Human: What colour is it?\n### Assistant: ",
                                      "Here it is.[IMG0] [IMG1] [IMG2] [IMG3]\n###"]
    assert [s.train for s in segs] == [False, False, False, True, False, True] and segs[1].media == 0
    ex = tokenize_segments(segs, tok, 512, signal_ids=signal.ids)
    expect = [tok.bos_token_id] + FIXTURE["ids"][FIXTURE["texts"].index("### Human: <Img>")]
    assert ex.input_ids[:len(expect)] == expect and ex.media_positions == [len(expect)]
    tail = FIXTURE["ids"][FIXTURE["texts"].index("Here it is.[IMG0] [IMG1] [IMG2] [IMG3]\n###")]
    assert ex.input_ids[-len(tail):] == tail and ex.labels[-len(tail):] == tail
    (run,) = ex.signal_spans
    assert ex.input_ids[run[1]:run[2]] == signal.ids["image"] and run[0] == "image"
    # the turn being answered ends "Assistant:" (the original's inference prompt), earlier ones "Assistant: "
    prompt = dialogue_segments(turns[:3], "legacy", signal.tokens, tok)
    assert prompt[-1].text == "Human: What colour is it?\n### Assistant:"
    text_only = dialogue_segments([{"role": "user", "text": "Please draw a small blue square."}], "legacy", signal.tokens, tok)
    assert [s.text for s in text_only] == ["### Human: ", "Please draw a small blue square.\n### Assistant:"]
    assert find_runs(ex.input_ids, signal.ids) == ex.signal_spans


def test_a_legacy_model_embeds_and_stops_after_a_signal_run(legacy):
    model, tok, signal = legacy
    from nextgpt_mini.generation import cut_at_stop

    after_run = FIXTURE["ids"][FIXTURE["texts"].index("[IMG0] [IMG1] [IMG2] [IMG3]\n###")]
    assert cut_at_stop(after_run, tok) == signal.ids["image"]  # "▁###" ends the reply
    text_answer = FIXTURE["ids"][FIXTURE["texts"].index("It shows a big red circle on the left.\n###")]
    assert tok.decode(cut_at_stop(text_answer, tok)).strip() == "It shows a big red circle on the left."  # so does "\n###"
    logits = model(input_ids=torch.tensor([signal.ids["video"]])).logits
    assert logits.shape[-1] == 438


def test_a_legacy_system_round_trips_with_its_frozen_rows_and_answers_in_the_legacy_format(tmp_path):
    from safetensors.torch import save_file

    from nextgpt_mini.constants import FROZEN_ROWS
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.profiles import load_profile

    profile = load_profile("tiny", {"llm.name_or_path": str(v0_shaped(tmp_path / "v0")), "llm.template": "legacy",
                                    "llm.hidden_size": 16, "llm.vocab_size": 400, "llm.max_length": 256})
    model = NextGPT.from_profile(profile)
    model.enable_lora()
    model.save_pretrained(tmp_path / "sys")
    rows = {n: torch.randn_like(b) for n, b in model.named_buffers() if n.endswith(".old_rows")}
    assert len(rows) == 2
    save_file(rows, tmp_path / "sys" / FROZEN_ROWS)
    loaded = NextGPT.from_pretrained(tmp_path / "sys")
    assert loaded.signal.media_start == 400 and loaded.profile.llm.template == "legacy"
    for n, b in loaded.named_buffers():
        if n in rows:
            assert torch.equal(b, rows[n]), n  # the file's rows replaced the LLM's own
    emb = ("image", torch.nn.functional.normalize(torch.randn(64), dim=0))
    first = loaded.generate("What is in this picture?", media=[emb], max_new_tokens=4, require="image", decode=False)
    assert first.conditioning["image"].shape == (1, 16, 32)
    second = loaded.generate("What colour is it?", history=first.history, max_new_tokens=4, decode=False)
    from nextgpt_mini.generation import prompt_example

    ex, media = prompt_example(loaded, second.history[:-1])
    want = (FIXTURE["ids"][FIXTURE["texts"].index("### Human: <Img>")])
    assert ex.input_ids[1:1 + len(want)] == want and len(media) == 1
    bad = {n: torch.zeros(3, 16) for n in rows}
    save_file(bad, tmp_path / "sys" / FROZEN_ROWS)
    with pytest.raises(ValueError, match="has shape"):
        NextGPT.from_pretrained(tmp_path / "sys")
