import dataclasses

import pytest

from nextgpt_mini.config import HUB, ProfileConfig, parse_overrides
from nextgpt_mini.profiles import PROFILES, load_profile
from nextgpt_mini.utils import pick_device, pick_dtype, seed_everything


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_round_trips_through_json(name):
    profile = load_profile(name)
    assert profile.name == name
    again = ProfileConfig.from_dict(profile.to_dict())
    assert again == profile


def test_paper_profile_has_the_papers_numbers():
    p = load_profile("paper")
    assert (p.signal_tokens.image, p.signal_tokens.video, p.signal_tokens.audio) == (4, 24, 8)
    assert p.signal_tokens.tokens("video")[-1] == "[VID23]"
    assert (p.lora.r, p.lora.alpha, p.lora.dropout) == (32, 32, 0.1)
    assert p.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert p.encoder.out_embed_dim == 1024 and p.encoder.vision_embed_dim == 1280 and p.encoder.vision_num_blocks == 32
    assert p.llm.hidden_size == 4096 and p.llm.num_layers == 32 and p.llm.template == "nextgpt"
    for proj in (p.image_projector, p.video_projector, p.audio_projector):
        assert (proj.d_model, proj.num_heads, proj.num_encoder_layers, proj.num_decoder_layers, proj.dim_feedforward) == (
            512, 4, 4, 4, 2048)
    assert (p.image_projector.num_queries, p.image_projector.out_dim) == (77, 768)
    assert (p.video_projector.num_queries, p.video_projector.out_dim) == (77, 1024)
    assert (p.audio_projector.num_queries, p.audio_projector.out_dim) == (1, 512)
    assert p.image_decoder.name_or_path == HUB["sd_v1_5"]
    assert p.video_decoder.name_or_path == HUB["zeroscope_576w"] and (p.video_decoder.height, p.video_decoder.width) == (320, 576)
    assert p.audio_decoder.name_or_path == HUB["audioldm_l_full"]
    assert p.image_decoder.guidance_scale == 7.5 and p.image_decoder.steps == 50
    assert p.train.lr == 5e-4 and p.train.betas == (0.9, 0.95) and p.train.video_alignment_scale == 2.0


def test_hub_ids_live_in_one_place():
    # every non-tiny decoder/LLM path of every profile is one of HUB's values
    for name in ("colab", "paper"):
        p = load_profile(name)
        for path in (p.llm.name_or_path, p.image_decoder.name_or_path, p.video_decoder.name_or_path,
                     p.audio_decoder.name_or_path, p.encoder.weights):
            assert path in HUB.values()


def test_tiny_profile_uses_package_assets_and_toy_sizes():
    p = load_profile("tiny")
    assert p.encoder.weights.startswith("package:") and p.llm.name_or_path.startswith("package:")
    assert p.encoder.out_embed_dim < 128 and p.llm.hidden_size < 256


def test_overrides_from_python_and_cli_strings():
    p = load_profile("tiny", {"llm.max_length": 64, "train.lr": 1e-3})
    assert p.llm.max_length == 64 and p.train.lr == 1e-3
    p = load_profile("tiny", ["llm.max_length=32", "llm.template=chat", "train.gradient_checkpointing=true",
                              "train.steps.1=5"])
    assert p.llm.max_length == 32 and p.llm.template == "chat" and p.train.gradient_checkpointing is True
    assert p.train.steps["1"] == 5
    # the default profile is untouched by an earlier override
    assert load_profile("tiny").llm.max_length == 128


@pytest.mark.parametrize(
    "bad, message",
    [
        (["nope.field=1"], "unknown config field"),
        (["llm.nope=1"], "unknown config field"),
        (["llm=3"], "group of settings"),
        (["llm.max_length=abc"], "expected a value like"),
        (["llm.max_length"], "key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        load_profile("tiny", bad)


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="tiny, colab, paper"):
        load_profile("huge")


def test_parse_overrides_reads_json_values():
    assert parse_overrides(["a.b=1", "a.c=0.5", "a.d=x", "a.e=[1,2]"]) == {"a.b": 1, "a.c": 0.5, "a.d": "x", "a.e": [1, 2]}


def test_device_dtype_and_seed_helpers():
    assert pick_device("cpu").type == "cpu"
    assert pick_dtype("cpu") is __import__("torch").float32
    import torch

    g1 = seed_everything(3)
    a = torch.rand(3, generator=g1), torch.rand(3)
    g2 = seed_everything(3)
    b = torch.rand(3, generator=g2), torch.rand(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_profiles_are_dataclasses_all_the_way_down():
    p = load_profile("paper")
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        assert dataclasses.is_dataclass(value) or isinstance(value, (str, int))
