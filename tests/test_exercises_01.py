"""Chapter 01's exercise checks: a stub is "not done yet", a wrong answer "not yet", the solution "ok"."""

import pytest
import torch
import torch.nn.functional as F

from nextgpt_mini import load_profile
from nextgpt_mini.course import data_samples_dir, ex01
from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.processing import load_audio


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(load_profile("tiny").encoder)


def verdicts(capsys) -> list[str]:
    """The verdict of each printed check line, cut to its first 7 characters."""
    return [line.split(": ", 1)[1][:7] for line in capsys.readouterr().out.splitlines()]


def test_01_1_top1_accuracy(capsys):
    ex01.ex01_1(lambda sim: None)  # the notebook's stub
    ex01.ex01_1(lambda sim: (sim.argmax(0) == torch.arange(len(sim))).float().mean())  # image -> text
    ex01.ex01_1(lambda sim: (sim.argmax(1) == torch.arange(len(sim))).float().mean())
    assert verdicts(capsys) == ["not don", "not yet", "ok"]


def test_01_2_clip_average(capsys, encoder):
    path = data_samples_dir() / "audio" / "audio_01.wav"
    x = load_audio(path, encoder.cfg)
    with torch.no_grad():
        mean = encoder.encode_audio(x[:, None]).mean(0)
    ex01.ex01_2(None, encoder, path)
    ex01.ex01_2(mean, encoder, path)  # forgot encode()'s renormalisation
    ex01.ex01_2(F.normalize(encoder.encode_audio(x[:1]).detach()[0], dim=0), encoder, path)  # one clip only
    ex01.ex01_2(F.normalize(mean, dim=0), encoder, path)
    out = verdicts(capsys)
    assert out == ["not don", "not yet", "not yet", "ok"]


def _pool_at(causal_mask: bool):
    """A solution; with causal_mask=False it ignores the `causal` argument and never masks (wrong)."""

    def pool_at(encoder, ids, positions, causal=True):
        pre, trunk, head = (encoder.modality_preprocessors["text"], encoder.modality_trunks["text"],
                            encoder.modality_heads["text"])
        L = ids.shape[1]
        with torch.no_grad():
            mask = pre.mask[:L, :L] if causal and causal_mask else None
            h = trunk(pre.token_embedding(ids) + pre.pos_embed[:, :L], attn_mask=mask)
            return F.normalize(head.proj(h[torch.arange(len(ids)), positions]), dim=-1)

    return pool_at


def test_01_3_pool_at(capsys, encoder):
    ex01.ex01_3(lambda encoder, ids, positions, causal=True: None, encoder)
    ex01.ex01_3(_pool_at(causal_mask=False), encoder)
    ex01.ex01_3(_pool_at(causal_mask=True), encoder)
    assert verdicts(capsys) == ["not don", "not yet", "ok"]
