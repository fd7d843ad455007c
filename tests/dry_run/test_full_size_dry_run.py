"""Issue 18: the colab and paper profiles run their real code paths end to end on the CPU, through
hub ids and offline, at the published interfaces (every width, vocabulary, token length, channel
count and dtype; depth cut, random weights): the three stages through `nextgpt-mini train` on the
sample data, then generation with each decoder from the trained checkpoint."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nextgpt_mini.cli import main
from nextgpt_mini.models.nextgpt import load_system

from .conftest import REPO

SHAPES = {"paper": {"hidden": 4096, "image": (512, 512), "video": (2, 320, 576, 3), "audio": 80000, "rows": 38},
          "colab": {"hidden": 2048, "image": (512, 512), "video": (2, 320, 576, 3), "audio": 80000, "rows": 18}}


@pytest.mark.parametrize("profile", ["paper", "colab"])
def test_three_stages_then_every_decoder_at_full_size(profile, dry_cache, tmp_path, capsys):
    depth = [a for k, v in dry_cache.DEPTH.items() for a in ("--set", f"{k}={v}")]
    # 2 video frames instead of 16-24: a frame count is no interface, and 24 frames take minutes on a CPU
    sets = depth + ["--set", "video_decoder.num_frames=2"]
    out = tmp_path / "run"
    rc = main(["train", "--stages", "1,2,3", "--profile", profile, *sets, "--steps", "1", "--data", str(REPO / "data_samples"),
               "--dialogues", str(REPO / "data_samples" / "mosit" / "mosit.json"), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for stage in "123":
        assert f"stage {stage}: 1 steps" in printed
    weights = load_file(next((out / "stage3" / "checkpoint").glob("*.safetensors")))
    assert any("lora_" in k for k in weights) and "input_projector.proj.weight" in weights
    assert weights["input_projector.proj.weight"].shape == (SHAPES[profile]["hidden"], 1024)
    rows = [v for k, v in weights.items() if k.endswith("embed_tokens.new_rows")]
    assert rows and rows[0].shape == (SHAPES[profile]["rows"], SHAPES[profile]["hidden"])

    from nextgpt_mini.profiles import load_profile

    system = load_system(out / "stage3", load_profile(profile, [s for s in sets if s != "--set"]))
    assert system.profile.name == profile and system.llm.config.hidden_size == SHAPES[profile]["hidden"]
    image = str(REPO / "data_samples" / "images" / "image_00.png")
    for modality in ("image", "video", "audio"):
        result = system.generate("Show me what you see.", media=[image], require=modality, steps=1, max_new_tokens=4)
        (item,) = result.media(modality)
        got = item.size[::-1] if modality == "image" else np.asarray(item).shape
        want = SHAPES[profile][modality]
        assert (got == want) if modality != "audio" else (got[0] == want), (modality, got)
        cond = result.conditioning[modality]
        assert cond.dtype == torch.float32 and torch.isfinite(cond).all()
