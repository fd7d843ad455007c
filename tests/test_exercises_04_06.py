"""Chapters 04 and 06: each check rejects the stub, an untrained or a wrong answer, and accepts the solution."""

import pytest
import torch
import torch.nn.functional as F

from nextgpt_mini import load_profile
from nextgpt_mini.course import ex04, ex06
from nextgpt_mini.losses import distance
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage2_data
from nextgpt_mini.training import stages
from nextgpt_mini.training.stage2 import SignalBatches
from nextgpt_mini.training.trainer import Trainer


def verdicts(capsys) -> list[str]:
    out = capsys.readouterr().out.splitlines()
    return [line.split(": ", 1)[1][:7] for line in out if line.startswith("exercise ")]


@pytest.fixture(scope="module")
def stage2_world(one_thread, tmp_path_factory):
    from nextgpt_mini.models.decoders import Decoders

    profile = load_profile("tiny")
    decoders = Decoders(profile, cache_dir=str(tmp_path_factory.mktemp("targets")))
    train, test = stage2_data(decoders, n_train=64, n_test=12, seed=profile.seed)
    return profile, train, test


def stage2_trained(profile, train, trains, steps=80):
    model = NextGPT.from_profile(profile)
    source = SignalBatches(train, model.tokenizer, model.signal, profile.llm.template, 8, profile.llm.max_length)
    declared = stages.STAGE_TRAINS["2"]
    stages.STAGE_TRAINS["2"] = trains
    try:
        Trainer(model, "2", source, profile.train, steps=steps, progress=False).train()
    finally:
        stages.STAGE_TRAINS["2"] = declared
    return model


def test_04_2_wants_the_cosine_distance(capsys):
    ex04.ex04_2(lambda pred, target: None)
    ex04.ex04_2(lambda pred, target: distance(pred, target, "l2"))  # the chapter's L2
    ex04.ex04_2(lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=-1)).mean())  # one number, not one per row
    ex04.ex04_2(lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=-1)).mean(-1))
    assert verdicts(capsys) == ["not don", "not yet", "not yet", "ok"]


def test_04_3_wants_a_model_trained_with_the_projectors_only(capsys, stage2_world):
    profile, train, test = stage2_world
    ex04.ex04_3(None, test)
    ex04.ex04_3(NextGPT.from_profile(profile), test)  # untrained
    ex04.ex04_3(stage2_trained(profile, train, ("output_projectors", "signal_rows")), test)  # the full stage 2
    ex04.ex04_3(stage2_trained(profile, train, ("output_projectors",)), test)
    out = capsys.readouterr().out
    assert [line.split(": ", 1)[1][:7] for line in out.splitlines()] == ["not don", "not yet", "not yet", "ok"], out


def test_06_3_half_the_difference_must_be_the_video_distance(capsys, stage2_world):
    from nextgpt_mini.prompts import collate
    from nextgpt_mini.tiny.dialogues import toy_dialogues
    from nextgpt_mini.training.stage3 import dialogue_example

    profile, train, _ = stage2_world
    model = NextGPT.from_profile(profile)
    d = toy_dialogues(1, seed=0, tasks=("T->V",))[0]
    ex = dialogue_example(model, d)
    batch = collate([ex], model.tokenizer.pad_token_id)
    batch["media"], batch["signal_spans"] = [None], [ex.signal_spans]
    batch["signal_targets"] = [[train["video"].targets[0]]]
    with torch.no_grad():
        d_video = float(model.stage_loss(batch, "3")["video_distance"])
        nll = float(model.stage_loss(batch, "3")["nll"])
    ex06.ex06_3((None, None), model, batch)
    ex06.ex06_3((nll + 1.0, nll), model, batch)  # larger, but not by twice the distance
    ex06.ex06_3((nll, nll + 2 * d_video), model, batch)  # the wrong way round
    ex06.ex06_3((nll + 2 * d_video, nll), model, batch)
    assert verdicts(capsys) == ["not don", "not yet", "not yet", "ok"]
