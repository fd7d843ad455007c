"""The loop chapter 02 writes by hand (`training/loop.py`) against `Trainer`: same losses, same weights."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nextgpt_mini import load_profile
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.prompts import MEDIA_PLACEHOLDER
from nextgpt_mini.tiny.data import stage1_data
from nextgpt_mini.training.loop import lr_at, train_loop
from nextgpt_mini.training.stage1 import CaptionBatches
from nextgpt_mini.training.trainer import Trainer, warmup_cosine

STEPS = 12


@pytest.fixture(scope="module")
def setup(one_thread, tmp_path_factory):
    profile = load_profile("tiny", {"train.eval_every": 0})
    model = NextGPT.from_profile(profile)
    train, _ = stage1_data(model, n_train=48, n_test=3, cache_dir=str(tmp_path_factory.mktemp("cache")))
    source = CaptionBatches(train, model.tokenizer, model.signal, profile.llm.template, 8, profile.llm.max_length)
    return profile, model, source


def caption_loss_by_hand(model, batch):
    """The soft-token splice and the shifted cross-entropy, written out (chapter 02, section 5)."""
    ids = batch["input_ids"]
    slots = ids == MEDIA_PLACEHOLDER
    x = model.llm.get_input_embeddings()(ids.masked_fill(slots, 0)).clone()
    for b, media in enumerate(batch["media"]):
        x[b, slots[b]] = model.input_projector(media)
    logits = model.llm(inputs_embeds=x, attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100)


def test_hand_written_loss_is_the_package_stage_1_loss(setup):
    _, model, source = setup
    batch = source.batch(0)
    torch.testing.assert_close(caption_loss_by_hand(model, batch), model.stage_loss(batch, "1")["loss"])


def test_lr_at_is_the_trainer_schedule(setup):
    profile = setup[0]
    cfg = profile.train.for_stage("1")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = warmup_cosine(opt, warmup=int(cfg.warmup_ratio * 40), total=40)
    for step in range(40):
        assert lr_at(step, 40, cfg) == pytest.approx(sched.get_last_lr()[0], rel=1e-9), step
        opt.step()
        sched.step()


def test_loop_by_hand_equals_trainer_losses_and_weights(setup):
    profile, model, source = setup
    cfg = profile.train.for_stage("1")
    mine, theirs = copy.deepcopy(model), copy.deepcopy(model)
    params = [mine.input_projector.proj.weight, mine.input_projector.proj.bias]
    mine.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    mine.train()
    losses = train_loop(params, lambda b: caption_loss_by_hand(mine, b), source.batch, STEPS, cfg)
    result = Trainer(theirs, "1", source, profile.train, steps=STEPS, progress=False).train()
    assert losses[-1] < losses[0]  # it learns
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(result.losses()), rtol=1e-4, atol=1e-5)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(mine.input_projector.proj, name), getattr(theirs.input_projector.proj, name),
                                   rtol=1e-4, atol=1e-6)
    # and a loop that differs in one setting does not agree (the comparison can fail)
    other = copy.deepcopy(model)
    p2 = [other.input_projector.proj.weight, other.input_projector.proj.bias]
    other.requires_grad_(False)
    for p in p2:
        p.requires_grad_(True)
    doubled_lr = train_loop(p2, lambda b: caption_loss_by_hand(other, b), source.batch, STEPS,
                            dataclasses.replace(cfg, lr=2 * cfg.lr))
    assert not torch.allclose(torch.tensor(doubled_lr), torch.tensor(result.losses()), rtol=1e-4, atol=1e-5)
