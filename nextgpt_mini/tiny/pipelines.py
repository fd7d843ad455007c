"""Chapter 05: the tiny decoders' shared parts, and the same pipelines at random weights (the controls).

The tokenizer, the CLIP and CLAP text-tower shapes and the UNet shape the trained tiny decoders
share (`tiny/decoders.py` builds and loads those). `TINY_BUILDERS` makes the three pipeline
classes at toy size with random denoising weights, in the style of diffusers' own tests: the
"untrained" control beside the trained decoders (tests/test_shipped_decoders.py), and what the
full-size checks build when they need a pipeline without weights files.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from nextgpt_mini.models.decoders import diffusers_classes
from nextgpt_mini.tiny.registry import CLAP_TEXT_WEIGHTS
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer
from nextgpt_mini.utils import ASSETS

TINY_TEXT_LENGTH = 16  # the tiny decoders' tokenizer length (the paper's CLIP: 77)
TINY_WIDTH = 32  # the tiny decoders' text width (the paper's: 768 / 1024 / 512)
# The CLIP text towers' initial weights, 5x the default scale (what the random controls keep, and
# where the trained towers start: `tiny/pretrain/decoder_text.py`).
TINY_TEXT_INIT = {"initializer_range": 0.1, "initializer_factor": 5.0}


def tiny_decoder_tokenizer():
    tok = load_tiny_tokenizer()
    tok.model_max_length = TINY_TEXT_LENGTH
    return tok


def tiny_clip_text(vocab_size: int, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=TINY_WIDTH, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=TINY_TEXT_LENGTH, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, projection_dim=TINY_WIDTH, **TINY_TEXT_INIT)
    return CLIPTextModel(cfg).eval()


def tiny_clap_text_model(vocab_size: int):
    """AudioLDM's text side: a CLAP text encoder with projection (weights: `tiny/pretrain/clap.py`)."""
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    # RoBERTa-style positions start after the pad id, hence the two spare positions
    return ClapTextModelWithProjection(ClapTextConfig(
        vocab_size=vocab_size, hidden_size=TINY_WIDTH, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=TINY_TEXT_LENGTH + 2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        projection_dim=TINY_WIDTH))


def tiny_clap_weights() -> dict[str, torch.Tensor]:
    """The shipped pretrained CLAP text encoder (see `tiny/pretrain/clap.py` for why it is not random)."""
    path = ASSETS / CLAP_TEXT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the tiny audio decoder's text encoder is missing; "
                                "rebuild it with `nextgpt-mini build-tiny clap`")
    return load_file(str(path))


def _tiny_vae(channels: int, seed: int):
    (AutoencoderKL,) = diffusers_classes("AutoencoderKL")

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 16), in_channels=channels, out_channels=channels, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=4, sample_size=32)


# The image and video denoisers' shared shape (16 x 16 latents, two levels, attention at the lower one).
TINY_UNET = dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                 cross_attention_dim=TINY_WIDTH, attention_head_dim=8, norm_num_groups=8)


def _scheduler():
    (DDIMScheduler,) = diffusers_classes("DDIMScheduler")

    # Stable Diffusion's noise schedule (scaled-linear betas); DDIM sampling
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def tiny_image_pipeline(seed: int = 0):
    StableDiffusionPipeline, UNet2DConditionModel = diffusers_classes("StableDiffusionPipeline", "UNet2DConditionModel")

    tok = tiny_decoder_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **TINY_UNET)
    return StableDiffusionPipeline(vae=_tiny_vae(3, seed + 1), text_encoder=tiny_clip_text(len(tok), seed + 2),
                                   tokenizer=tok, unet=unet, scheduler=_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def tiny_video_pipeline(seed: int = 0):
    TextToVideoSDPipeline, UNet3DConditionModel = diffusers_classes("TextToVideoSDPipeline", "UNet3DConditionModel")

    tok = tiny_decoder_tokenizer()
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), **TINY_UNET)
    return TextToVideoSDPipeline(vae=_tiny_vae(3, seed + 1), text_encoder=tiny_clip_text(len(tok), seed + 3),
                                 tokenizer=tok, unet=unet, scheduler=_scheduler())


def tiny_audio_pipeline(seed: int = 0, sample_rate: int = 16000):
    AudioLDMPipeline, UNet2DConditionModel = diffusers_classes("AudioLDMPipeline", "UNet2DConditionModel")
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    tok = tiny_decoder_tokenizer()
    torch.manual_seed(seed)
    # AudioLDM's UNet takes the CLAP embedding as a class label (projected, concatenated to the
    # time embedding), so its cross-attention blocks attend to themselves only.
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(16, 32),
                                class_embed_type="simple_projection", projection_class_embeddings_input_dim=TINY_WIDTH,
                                class_embeddings_concat=True, attention_head_dim=8, norm_num_groups=8)
    text = tiny_clap_text_model(len(tok))
    text.load_state_dict(tiny_clap_weights())
    text.eval()
    torch.manual_seed(seed + 5)
    # a hop of 5*4*2*2*2 = 160 samples (10 ms at 16 kHz), AudioLDM's; 16 mel bins instead of 64.
    # A random HiFi-GAN at the default init (0.01) is all but silent; at 0.15 it is audible.
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=16, sampling_rate=sample_rate, upsample_initial_channel=64, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False, initializer_range=0.15)).eval()
    return AudioLDMPipeline(vae=_tiny_vae(1, seed + 1), text_encoder=text, tokenizer=tok, unet=unet,
                            scheduler=_scheduler(), vocoder=vocoder)


TINY_BUILDERS = {"image": tiny_image_pipeline, "video": tiny_video_pipeline, "audio": tiny_audio_pipeline}
