"""Issue 18: a Vicuna-shaped folder (tokenizer.model only, SentencePiece) loads through load_llm,
and a damaged tokenizer gives one line that names the folder, not transformers' tiktoken error."""

import io
import json

import pytest

from nextgpt_mini.config import LLMConfig
from nextgpt_mini.models.llm import load_llm

# what lmsys/vicuna-7b-v1.5 ships besides the weights (../shared/reference/hub-configs/REPORT.md, B1)
VICUNA_TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "bos_token": "<s>", "eos_token": "</s>",
                           "unk_token": "<unk>", "model_max_length": 4096}


def _sentencepiece_model() -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    text = ["a big red circle on the left", "what sound does a blue square make", "describe this image please"] * 40
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=buf, vocab_size=50, model_type="bpe",
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return buf.getvalue()


def _vicuna_shaped(folder, tokenizer_model: bytes):
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(tokenizer_model)
    (folder / "tokenizer_config.json").write_text(json.dumps(VICUNA_TOKENIZER_CONFIG))
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_a_tokenizer_model_only_folder_loads_like_vicuna(tmp_path):
    folder = _vicuna_shaped(tmp_path / "vicuna", _sentencepiece_model())
    assert not (folder / "tokenizer.json").exists()
    model, tok = load_llm(LLMConfig(name_or_path=str(folder)))
    ids = tok("a big red circle", add_special_tokens=False)["input_ids"]
    assert ids and max(ids) < 50
    assert tok.decode(ids) == "a big red circle"
    assert tok.pad_token is not None  # LLaMA tokenizers ship none; load_llm sets it


def test_a_damaged_tokenizer_is_named_in_one_line(tmp_path):
    folder = _vicuna_shaped(tmp_path / "broken", b"not a sentencepiece model")
    with pytest.raises(ValueError) as error:
        load_llm(LLMConfig(name_or_path=str(folder)))
    message = str(error.value)
    assert message.startswith(f"{folder}: its tokenizer could not be loaded")
    assert "sentencepiece" in message and "\n" not in message
