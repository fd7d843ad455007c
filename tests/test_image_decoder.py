"""The trained tiny Stable Diffusion (tiny/pretrain/image_decoder.py): its build code end to end, at a few steps."""

import numpy as np
import pytest
import torch

from nextgpt_mini.cli import main
from nextgpt_mini.tiny.decoders import load_trained_image_pipeline
from nextgpt_mini.tiny.registry import IMAGE_DECODER_WEIGHTS


@pytest.mark.slow
def test_a_quick_image_decoder_build_writes_weights_that_load_into_stable_diffusion(tmp_path, capsys):
    assert main(["build-tiny", "image-decoder", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for part in ("text encoder", "VAE", "UNet", "drawn from held-out captions", "linear probe"):
        assert part in out, out
    pipe = load_trained_image_pipeline(tmp_path / IMAGE_DECODER_WEIGHTS)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.vae.config.scaling_factor != 0.18215  # measured for this VAE, not SD's
    images = pipe(["a big red circle on the left"], num_inference_steps=2, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    assert (tmp_path / "BUILD_RESULTS.md").read_text().count("image-decoder") >= 1


def test_a_quick_build_refuses_to_write_into_the_package():
    assert main(["build-tiny", "image-decoder", "--quick"]) == 2


def test_a_missing_weights_file_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-tiny image-decoder"):
        load_trained_image_pipeline(tmp_path / "nope.safetensors")
