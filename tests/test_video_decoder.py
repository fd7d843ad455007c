"""The tiny Zeroscope (tiny/pretrain/video_decoder.py): inflated from the tiny SD's UNet, built end to end at a few steps."""

import numpy as np
import pytest
import torch

from nextgpt_mini.cli import main
from nextgpt_mini.tiny.decoders import load_trained_video_pipeline, trained_image_components, trained_video_unet
from nextgpt_mini.tiny.pretrain.video_decoder import inflate
from nextgpt_mini.tiny.registry import VIDEO_DECODER_WEIGHTS


def test_an_inflated_unet3d_draws_every_frame_as_the_image_unet_does():
    _, _, unet2d = trained_image_components(vocab_size=300)
    with torch.no_grad():  # weights unlike their initial ones, so that the copy is tested, not the init
        for p in unet2d.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        for p in unet2d.add_embedding.parameters():  # the path UNet3D has no place for, switched off
            p.zero_()
    unet3d = trained_video_unet()
    temporal = inflate(unet2d, unet3d)
    assert temporal and all(("temp_" in n or n.startswith("transformer_in.")) for n in temporal), temporal[:5]
    frames, states = torch.randn(2, 4, 3, 16, 16), torch.randn(2, 16, 32)
    t = torch.tensor([500, 20])
    with torch.no_grad():
        video = unet3d(frames, t, encoder_hidden_states=states).sample  # [B, C, F, H, W]
        for f in range(3):
            still = unet2d(frames[:, :, f], t, encoder_hidden_states=states).sample
            torch.testing.assert_close(video[:, :, f], still, atol=1e-5, rtol=1e-4)


def test_inflating_into_a_unet3d_of_another_shape_says_so():
    _, _, unet2d = trained_image_components(vocab_size=300)
    from diffusers import UNet3DConditionModel

    other = UNet3DConditionModel(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
                                 cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4)
    with pytest.raises((ValueError, RuntimeError), match="UNet3D|size"):
        inflate(unet2d, other)


@pytest.mark.slow
def test_a_quick_video_decoder_build_inflates_the_shipped_image_decoder(tmp_path, capsys):
    assert main(["build-tiny", "video-decoder", "--quick", "--out", str(tmp_path)]) == 0  # no image decoder in tmp_path
    out = capsys.readouterr().out
    assert "inflated from tiny_image_decoder.safetensors" in out and "animated from held-out captions" in out, out
    pipe = load_trained_video_pipeline(tmp_path / VIDEO_DECODER_WEIGHTS)
    assert type(pipe).__name__ == "TextToVideoSDPipeline"
    frames = pipe(["a red circle moving right quickly"], num_inference_steps=2, height=32, width=32, num_frames=4,
                  output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert np.asarray(frames).shape == (1, 4, 32, 32, 3) and np.isfinite(frames).all()


def test_a_missing_video_weights_file_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-tiny video-decoder"):
        load_trained_video_pipeline(tmp_path / "nope.safetensors")
