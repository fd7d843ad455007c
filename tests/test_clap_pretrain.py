"""The tiny AudioLDM's CLAP text encoder, pretrained on the toy world's sounds (`tiny/pretrain/clap.py`)."""

import pytest
import torch
from safetensors.torch import load_file

from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.tiny.pipelines import tiny_clap_text_model, tiny_decoder_tokenizer
from nextgpt_mini.tiny.pretrain import clap as C
from nextgpt_mini.tiny.registry import CLAP_TEXT_WEIGHTS
from nextgpt_mini.tiny.toy_decoder import all_items
from nextgpt_mini.utils import ASSETS

SOUNDS = sorted(all_items("audio"))


def test_a_random_clap_text_encoder_gives_targets_no_projector_could_tell_apart():
    # why the encoder is pretrained: at random init, two sound captions share nearly one vector
    torch.manual_seed(0)
    report = C.target_report(tiny_clap_text_model(len(tiny_decoder_tokenizer())), tiny_decoder_tokenizer(), SOUNDS)
    assert report["closest_pair"] < 0.1, report


def test_the_shipped_audio_decoder_gives_every_sound_caption_its_own_structured_target():
    text = Decoders("tiny")["audio"].pipe.text_encoder
    report = C.target_report(text, tiny_decoder_tokenizer(), SOUNDS)
    assert report["closest_pair"] > 0.5, report  # unit vectors: 1.41 is orthogonal
    assert report["additive_r2"] > 0.8, report  # pitch, pattern and noise: each a direction


def test_quick_build_learns_and_writes_weights_the_decoder_loads(tmp_path):
    _, report = C.pretrain_clap_text(C.ClapPretrainSettings.quick(), progress=False)
    first, last = report["loss"]
    assert last < first, report
    (path,), lines = C.build_tiny_clap_text(tmp_path, quick=True)
    fresh = tiny_clap_text_model(len(tiny_decoder_tokenizer()))
    fresh.load_state_dict(load_file(str(path)))  # strict: every weight present, no stray one
    assert path.name == CLAP_TEXT_WEIGHTS and not list(tmp_path.glob("*.tmp"))
    assert "held-out sounds -> their caption" in lines[-1]


def test_quick_build_refuses_to_overwrite_the_shipped_weights():
    with pytest.raises(ValueError, match="--out"):
        C.build_tiny_clap_text(ASSETS, quick=True)


def test_missing_clap_weights_say_how_to_rebuild_them(tmp_path, monkeypatch):
    from nextgpt_mini.tiny import pipelines

    monkeypatch.setattr(pipelines, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="build-tiny clap"):
        pipelines.tiny_clap_weights()


def test_rebuilding_reproduces_the_shipped_weights(tmp_path):
    (path,), _ = C.build_tiny_clap_text(tmp_path)  # the full build: 25 s
    shipped = load_file(str(ASSETS / CLAP_TEXT_WEIGHTS))
    rebuilt = load_file(str(path))
    assert set(rebuilt) == set(shipped)
    for name, value in shipped.items():
        # An attention key bias adds q.b to every key's score alike: softmax ignores it, so its
        # gradient is zero but for rounding, which Adam scales up into CPU-dependent drift (0.01
        # between two x86 machines). It changes no output; the targets below are compared instead.
        if not name.endswith("attention.self.key.bias"):
            torch.testing.assert_close(rebuilt[name], value, rtol=0, atol=1e-3, msg=f"{name}: run `nextgpt-mini build-tiny clap`")
    tok = tiny_decoder_tokenizer()
    targets = []
    for weights in (rebuilt, shipped):
        model = tiny_clap_text_model(len(tok))
        model.load_state_dict(weights)
        targets.append(C.caption_targets(model.eval(), tok, SOUNDS).detach())
    torch.testing.assert_close(targets[0], targets[1], rtol=0, atol=1e-4, msg="the rebuilt CLAP text encoder's targets differ")


def test_training_targets_are_the_ones_the_decoder_computes():
    # caption_targets re-derives AudioLDM's prompt encoding (with gradients, for training): pin it
    decoder = Decoders("tiny")["audio"]
    ours = C.caption_targets(decoder.pipe.text_encoder, tiny_decoder_tokenizer(), SOUNDS)
    torch.testing.assert_close(ours, decoder.encode_text(SOUNDS))
