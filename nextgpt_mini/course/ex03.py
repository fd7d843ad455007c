"""Chapter 03: exercise checks for notebooks/03_llm_lora_signal_tokens.ipynb.

The checks: signal-token pieces, the colab LoRA count, the LM head with trainable new rows (a component).
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


def ex03_3(head_class, llm, signal) -> None:
    """head_class(weight, first_new): the LM head with frozen old rows (a buffer) and trainable new
    rows (fp32), logits [.., V] for hidden [.., H], equal to the package's `NewRowsLMHead`."""

    def test(cls):
        package = llm.get_output_embeddings()
        mine = cls(package.weight.detach().clone(), signal.first_new_id)
        trainable = [n for n, p in mine.named_parameters() if p.requires_grad]
        n_new = package.weight.shape[0] - signal.first_new_id
        assert [tuple(p.shape) for p in mine.parameters()] == [(n_new, package.weight.shape[1])], (
            f"trainable {trainable}: only the {n_new} new rows should be parameters (the old rows a buffer)")
        assert next(mine.parameters()).dtype == torch.float32, "keep the new rows in fp32"
        hidden = torch.randn(2, 3, package.weight.shape[1], generator=torch.Generator().manual_seed(3))
        logits = mine(hidden)
        assert tuple(logits.shape) == (2, 3, package.weight.shape[0]), (
            f"logits {tuple(logits.shape)}: one per vocabulary row, old and new, expected {(2, 3, package.weight.shape[0])}")
        with torch.no_grad():
            torch.testing.assert_close(logits.detach(), package(hidden))
        logits[..., signal.first_new_id:].sum().backward()
        grad = next(mine.parameters()).grad
        assert grad is not None and grad.abs().sum() > 0, "no gradient reaches the new rows"

    check("03.3", head_class, test)
