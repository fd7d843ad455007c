"""Stage 1 on the shipped tiny encoder and LLM: the input projector really learns to caption."""

import torch

from nextgpt_mini import load_profile
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage1_data
from nextgpt_mini.training.stage1 import CaptionBatches, make_eval_fn
from nextgpt_mini.training.trainer import Trainer
from nextgpt_mini.utils import torch_threads


def test_stage_1_lowers_heldout_loss_and_names_attributes_above_chance(tmp_path):
    with torch_threads(1):
        profile = load_profile("tiny", {"train.eval_every": 1000})
        model = NextGPT.from_profile(profile)
        train, test = stage1_data(model, seed=profile.seed)  # what `train --stage 1` uses: 1,200 / 48 per modality
        source = CaptionBatches(train, model.tokenizer, model.signal, profile.llm.template, 16, profile.llm.max_length)
        result = Trainer(model, "1", source, profile.train, out_dir=tmp_path, steps=300, eval_fn=make_eval_fn(test),
                         progress=False).train()
    first, last = result.first_eval, result.last_eval
    assert last["heldout_loss"] < 0.75 * first["heldout_loss"], (first["heldout_loss"], last["heldout_loss"])
    assert last["attr_acc"] > 1.5 * last["attr_chance"], (last["attr_acc"], last["attr_chance"])
    # captions naming every attribute of a held-out item right, next to guessing each attribute
    assert last["exact_acc"] >= 3 * last["exact_chance"], (last["exact_acc"], last["exact_chance"])
    # the checkpoint holds the projector only and reloads into a fresh model
    fresh = NextGPT.from_profile(profile)
    assert fresh.load_trained(tmp_path) == ["input_projector.proj.bias", "input_projector.proj.weight"]
    torch.testing.assert_close(fresh.input_projector.proj.weight, model.input_projector.proj.weight)


def test_stage_1_batches_take_the_stage_1_batch_size_override(monkeypatch):
    """`train.stage_overrides["1"]["batch_size"]` reaches stage 1's batch source (it once read the
    base `train.batch_size`, while the trainer applied the override: the two disagreed)."""
    from nextgpt_mini.data.pairs import PairSet
    from nextgpt_mini.tiny import data as tiny_data
    from nextgpt_mini.training import stage1

    seen = {}

    class CaptureTrainer:
        def __init__(self, model, stage, source, cfg, **kwargs):
            seen["source"] = source.batch_size

        def train(self, resume=False):
            return None

    pairs = {m: PairSet(m, torch.zeros(3, 8), ["a", "b", "c"]) for m in ("image", "video", "audio")}
    monkeypatch.setattr(stage1, "Trainer", CaptureTrainer)
    monkeypatch.setattr(tiny_data, "stage1_data", lambda *a, **k: (pairs, pairs))
    profile = load_profile("tiny", {"train.stage_overrides": {"1": {"batch_size": 4}}})
    assert profile.train.batch_size != 4
    tiny_data.run_stage1(NextGPT.from_profile(profile))
    assert seen == {"source": 4}  # the trainer applies cfg.for_stage("1") itself (Trainer.__init__)
