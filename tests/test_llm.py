import pytest
import torch

from nextgpt_mini import load_profile
from nextgpt_mini.models.llm import apply_lora, build_empty_llm, lora_parameter_count
from nextgpt_mini.models.signal_tokens import (
    MEDIA_END,
    MEDIA_START,
    NewRowsEmbedding,
    add_signal_tokens,
    new_row_parameters,
)
from nextgpt_mini.scaling.params import PAPER_TABLE_1, format_table, full_size_table
from tests._tiny_llm import random_tiny_llm


def test_signal_tokens_are_single_ids_and_new_rows_are_mean_initialised():
    model, tok, _ = random_tiny_llm(signal=False)
    old = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    st = add_signal_tokens(model, tok, load_profile("tiny").signal_tokens)
    for m, tokens in st.tokens.items():
        for t, i in zip(tokens, st.ids[m]):
            assert tok(t, add_special_tokens=False)["input_ids"] == [i]
    assert tok(f"a {MEDIA_START} b {MEDIA_END}", add_special_tokens=False)["input_ids"].count(st.media_start) == 1
    emb = model.get_input_embeddings()
    assert isinstance(emb, NewRowsEmbedding) and emb.num_embeddings == len(tok)
    torch.testing.assert_close(emb.new_rows, old.mean(0, keepdim=True).expand_as(emb.new_rows))
    torch.testing.assert_close(model.get_output_embeddings().new_rows[0], old_head.mean(0))
    assert torch.equal(emb.old_rows, old)
    # the LM head scores every row, new ones included
    logits = model(torch.tensor([[1, 5, st.ids["image"][0]]])).logits
    assert logits.shape[-1] == len(tok)


def test_only_new_rows_change_when_trained_with_weight_decay():
    model, tok, st = random_tiny_llm()
    before = {n: b.clone() for n, b in model.named_buffers() if "old_rows" in n}
    frozen = {n: p.clone() for n, p in model.named_parameters() if "new_rows" not in n}
    rows = new_row_parameters(model)
    for p in rows:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(rows, lr=1e-2, weight_decay=0.1)
    ids = torch.tensor([[1] + st.ids["image"] + st.ids["audio"] + [5, 6, 2]])
    for _ in range(5):
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(b, dict(model.named_buffers())[n]) for n, b in before.items())
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in frozen.items())


def test_new_rows_really_move():
    model, tok, st = random_tiny_llm()
    rows = new_row_parameters(model)
    start = [r.detach().clone() for r in rows]
    for p in rows:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(rows, lr=1e-2)
    ids = torch.tensor([[1] + st.ids["video"] + [2]])
    model(ids, labels=ids).loss.backward()
    opt.step()
    assert not torch.equal(rows[0], start[0]) and not torch.equal(rows[1], start[1])


def test_lora_targets_and_counts():
    model, _, _ = random_tiny_llm()
    profile = load_profile("tiny")
    expected = lora_parameter_count(model, profile.lora)
    peft_model = apply_lora(model, profile.lora)
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert lora == expected == profile.llm.num_layers * 4 * profile.lora.r * 2 * profile.llm.hidden_size


def test_paper_llm_counts_without_weights():
    paper = load_profile("paper")
    llm = build_empty_llm(paper.llm)
    assert all(p.device.type == "meta" for p in llm.parameters())
    assert abs(sum(p.numel() for p in llm.parameters()) - 6_738_415_616) == 0
    assert lora_parameter_count(llm, paper.lora) == 33_554_432


def test_paper_parameter_table_matches_table_1_within_5_percent():
    rows = {r.module: r for r in full_size_table("paper")}
    for module in ("input projector", "LLM", "LoRA", "output projectors"):
        assert abs(rows[module].total - PAPER_TABLE_1[module]) / PAPER_TABLE_1[module] <= 0.05, module
    # ImageBind: the three branches NExT-GPT uses; the paper's 1.2 B includes depth/thermal/IMU
    assert rows["ImageBind"].total == 1_073_097_729
    text = format_table(list(rows.values()), PAPER_TABLE_1)
    assert "depth, thermal and IMU" in text and "33,554,432" in text
    trainable = sum(r.trainable for r in rows.values())
    assert rows["output projectors"].total == 31_958_784 + 32_090_112 + 31_788_544  # image, video, audio
    assert trainable == 4_198_400 + 311_296 + 33_554_432 + rows["output projectors"].total


def test_quantized_llm_needs_cuda(monkeypatch):
    from nextgpt_mini.models.llm import quantization_kwargs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        quantization_kwargs(4)
