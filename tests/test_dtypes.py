"""The one dtype policy (`utils.frozen_dtype`): frozen models in 16 bits where a GPU runs them and
fp32 on the CPU; what trains in fp32 always, so mixed-precision training can unscale its gradients.

A GPU is simulated where a test needs one; the fp16 models run on the CPU (slowly, but tiny)."""

from __future__ import annotations

import torch

from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.scaling.memory import BYTES, component_counts, plan
from nextgpt_mini.utils import frozen_dtype


def test_the_policy_picks_fp16_on_a_t4_bf16_where_native_and_fp32_on_the_cpu(monkeypatch):
    assert frozen_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4
    assert frozen_dtype() == torch.float16 and frozen_dtype("cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an A100
    assert frozen_dtype() == torch.bfloat16


def test_a_16_bit_llm_trains_its_signal_rows_and_lora_in_fp32_under_a_grad_scaler():
    """The bug: an LLM loaded in fp16 made the signal rows fp16 Parameters, and the first
    GradScaler.unscale_ raised "Attempting to unscale FP16 gradients"."""
    model = NextGPT.from_profile("tiny", dtype=torch.float16)
    model.enable_lora()
    embedding = model.llm.get_input_embeddings()
    assert embedding.old_rows.dtype == torch.float16 and model.llm.get_output_embeddings().old_rows.dtype == torch.float16
    trainable = [p for group in model.trainable_groups().values() for p in group]
    assert {p.dtype for p in trainable} == {torch.float32}
    for p in trainable:
        p.requires_grad_(True)  # what a stage does with its groups
    assert {p.dtype for n, p in model.llm.named_parameters() if "lora_" not in n and "new_rows" not in n} == {torch.float16}

    ids = model.tokenizer("Here is a red circle. " + "".join(model.signal.tokens["image"]), return_tensors="pt").input_ids
    before = embedding.new_rows.detach().clone()
    old = embedding.old_rows.clone()
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    loss = model.llm(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # raised ValueError with fp16 rows
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    scaler.step(optimizer)
    scaler.update()
    assert not torch.equal(embedding.new_rows.detach(), before) and embedding.new_rows.dtype == torch.float32
    assert torch.equal(embedding.old_rows, old)  # the frozen rows did not move


def test_a_16_bit_system_generates_with_fp32_conditioning():
    model = NextGPT.from_profile("tiny", dtype=torch.float16)
    result = model.generate("Show me a big red circle on the left.", require="image", decode=False)
    assert result.conditioning["image"].dtype == torch.float32 and torch.isfinite(result.conditioning["image"]).all()


def test_the_planner_counts_what_the_code_keeps_in_fp32():
    items = {i.component: i for i in plan("colab").items}
    counts = component_counts(load_profile("colab"))
    small = counts["input projector"] + counts["output projectors"] + counts["signal-token rows"] + counts["LoRA"]
    assert items["projectors, LoRA, signal rows (fp32)"].gpu == small * BYTES["fp32"]
    assert items["ImageBind (fp16)"].gpu == counts["ImageBind"] * BYTES["fp16"]


def test_generation_runs_each_decoder_alone_on_the_models_gpu_and_leaves_the_cpu_path_alone():
    from nextgpt_mini.generation import decoder_on

    class Stub:
        def __init__(self):
            self.moves = []

        def __getitem__(self, modality):
            return f"{modality} decoder where it is"

        def only(self, modality, device):
            self.moves.append((modality, str(device)))
            return f"{modality} decoder on {device}"

    decoders = Stub()
    assert decoder_on(decoders, "image", torch.device("cpu")) == "image decoder where it is" and decoders.moves == []
    assert decoder_on(decoders, "video", torch.device("cuda", 0)) == "video decoder on cuda:0"
    assert decoders.moves == [("video", "cuda:0")]
