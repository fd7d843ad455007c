"""Chapter 03: exercise checks for notebooks/03_llm_lora_signal_tokens.ipynb.

The checks: signal-token pieces, the colab LoRA count, the hidden states at the signal span.
Each `ex03_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.models.llm import build_empty_llm, lora_parameter_count
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer


def ex03_1(n_pieces) -> None:
    """How many ids the tokenizer without signal tokens cuts "[VID7]" into."""

    def test(n):
        tok = load_tiny_tokenizer(load_profile("tiny").encoder.tokenizer)
        expected = len(tok("[VID7]", add_special_tokens=False)["input_ids"])
        assert int(n) == expected, f"{n} is not the number of ids"

    check("03.1", n_pieces, test)


def ex03_2(colab_lora) -> None:
    """LoRA parameters of the colab profile (TinyLlama, grouped-query attention)."""

    def test(n):
        colab = load_profile("colab")
        expected = lora_parameter_count(build_empty_llm(colab.llm), colab.lora)
        assert int(n) == expected, f"{int(n):,} != {expected:,}"

    check("03.2", colab_lora, test)


def ex03_3(signal_states, llm, example) -> None:
    """signal_states(llm, example) -> {modality: hidden + embedding at the signal span}."""

    def test(fn):
        got = fn(llm, example)
        if got is None:
            raise NotImplementedError
        ids = torch.tensor([example.input_ids])
        with torch.no_grad():
            out = llm(ids, output_hidden_states=True)
            embeds = llm.get_input_embeddings()(ids)[0]
        assert set(got) == {m for m, _, _ in example.signal_spans}, f"modalities {sorted(got)}"
        for m, s, e in example.signal_spans:
            torch.testing.assert_close(got[m], out.hidden_states[-1][0, s:e] + embeds[s:e])

    check("03.3", signal_states, test)
