"""A randomly initialised tiny LLaMA with the tiny tokenizer: fast, and independent of shipped weights."""

import torch
from transformers import LlamaForCausalLM

from nextgpt_mini import load_profile
from nextgpt_mini.models.llm import tiny_llama_config
from nextgpt_mini.models.signal_tokens import add_signal_tokens
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer


def random_tiny_llm(seed: int = 0, signal: bool = True):
    profile = load_profile("tiny")
    tok = load_tiny_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(profile.llm, len(tok))).eval()
    st = add_signal_tokens(model, tok, profile.signal_tokens) if signal else None
    model.requires_grad_(False)
    return model, tok, st
