"""Chapter 02's checks reject the stub, an untrained answer and a wrong one, and accept the solution."""

import pytest
import torch
from torch import nn

from nextgpt_mini import load_profile
from nextgpt_mini.course import ex02
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage1_data
from nextgpt_mini.training.loop import train_loop
from nextgpt_mini.training.stage1 import CaptionBatches


def verdicts(capsys) -> list[str]:
    out = capsys.readouterr().out.splitlines()
    return [line.split(": ", 1)[1][:7] for line in out if line.startswith("exercise ")]


@pytest.fixture(scope="module")
def world(one_thread, tmp_path_factory):
    profile = load_profile("tiny")
    model = NextGPT.from_profile(profile)
    train, test = stage1_data(model, n_train=96, n_test=6, cache_dir=str(tmp_path_factory.mktemp("cache")))
    source = CaptionBatches(train, model.tokenizer, model.signal, profile.llm.template, 16, profile.llm.max_length)
    return profile, source, test


def with_projector(profile, proj, source=None, steps=0):
    model = NextGPT.from_profile(profile)
    model.input_projector.proj = proj
    if steps:
        model.requires_grad_(False)
        params = list(proj.parameters())
        for p in params:
            p.requires_grad_(True)
        train_loop(params, lambda b: model.stage_loss(b, "1")["loss"], source.batch, steps, profile.train.for_stage("1"))
    return model.eval()


def test_02_1_counts_what_stage_1_trains(capsys):
    ex02.ex02_1(None)
    ex02.ex02_1(64 * 128)  # the weight without its bias
    ex02.ex02_1(64 * 128 + 128)
    assert verdicts(capsys) == ["not don", "not yet", "ok"]


def test_02_3_wants_a_trained_mlp(capsys, world):
    profile, source, test = world
    torch.manual_seed(0)
    mlp = lambda: nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, profile.llm.hidden_size))  # noqa: E731
    ex02.ex02_3(None, test)
    ex02.ex02_3(with_projector(profile, mlp()), test)  # untrained
    ex02.ex02_3(with_projector(profile, nn.Linear(64, profile.llm.hidden_size), source, 60), test)  # trained, but linear
    ex02.ex02_3(with_projector(profile, nn.Sequential(nn.Linear(64, 256), nn.Linear(256, profile.llm.hidden_size)),
                               source, 60), test)  # no GELU: affine
    ex02.ex02_3(with_projector(profile, mlp(), source, 60), test)
    out = capsys.readouterr().out
    assert [line.split(": ", 1)[1][:7] for line in out.splitlines()] == ["not don", "not yet", "not yet", "not yet", "ok"], out
    assert "untrained" in out and "affine" in out
