"""Chapter 05: the trained tiny Stable Diffusion, Zeroscope and AudioLDM, the real diffusers pipeline classes.

Their components at initial weights, the sampler, and the loaders of the shipped weights files;
`tiny/pretrain/image_decoder.py`, `video_decoder.py` and `audio_decoder.py` train them. Each
weights file holds a whole pipeline's modules ("text_encoder.", "vae.", "unet.", "vocoder."
prefixes) and, in its metadata, the VAE's measured scaling factor, so each pipeline loads from its
one file, as from a hub folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nextgpt_mini.models.decoders import diffusers_classes
from nextgpt_mini.tiny.pipelines import (
    TINY_UNET,
    TINY_WIDTH,
    tiny_clap_text_model,
    tiny_clap_weights,
    tiny_clip_text,
    tiny_decoder_tokenizer,
)
from nextgpt_mini.tiny.registry import AUDIO_DECODER_WEIGHTS, IMAGE_DECODER_WEIGHTS, VIDEO_DECODER_WEIGHTS
from nextgpt_mini.tiny.vocoder import SineBankHifiGan, sine_bank
from nextgpt_mini.utils import ASSETS

# The three UNet levels (16 x 16, 8 x 8, 4 x 4 latents), cross-attention at the lower two: at 4 x 4
# the zero padding tells every cell where it is, which is what lets the pictures follow "on the
# left" / "at the top" (measured: BUILD_RESULTS.md, History); full-resolution attention is what
# makes CPU training slow.
LEVELS = dict(TINY_UNET, block_out_channels=(16, 32, 32))


def trained_scheduler():
    """The trained decoders' sampler: DDIM on SD's betas rescaled to zero terminal SNR, velocity
    prediction, "trailing" timesteps so that sampling starts at the pure-noise step it was trained
    on (Lin et al., 2023; why: `tiny/pretrain/diffusion.py`)."""
    (DDIMScheduler,) = diffusers_classes("DDIMScheduler")
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                         timestep_spacing="trailing", steps_offset=1)


def trained_vae(seed: int = 1):
    """SD's AutoencoderKL at toy size: 32 x 32 pictures <-> 16 x 16 x 4 latents, no attention
    (attention at 16 x 16 costs more on a CPU than the whole rest)."""
    (AutoencoderKL,) = diffusers_classes("AutoencoderKL")
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=4, sample_size=32, mid_block_add_attention=False)


def trained_image_components(vocab_size: int, seed: int = 0):
    """(text encoder, VAE, UNet) of the trained tiny Stable Diffusion, at their initial weights."""
    (UNet2DConditionModel,) = diffusers_classes("UNet2DConditionModel")
    text = tiny_clip_text(vocab_size, seed + 2)
    vae = trained_vae(seed + 1)
    torch.manual_seed(seed)
    # the caption also enters the time embedding, attention-pooled (diffusers' "text" addition
    # embedding, DeepFloyd IF's): a path for colour and size, which hold over the whole object,
    # besides cross-attention at 8 x 8 and 4 x 4 (measured: BUILD_RESULTS.md, History)
    unet = UNet2DConditionModel(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                addition_embed_type="text", addition_embed_type_num_heads=4, **LEVELS)
    return text, vae, unet


def trained_video_unet(seed: int = 3):
    """The UNet3D with the image UNet's levels, block for block (so that it can be inflated from it).
    The 2D UNet reads `attention_head_dim` as the number of heads, the 3D one as their width:
    swapped here, so that both split attention into the same 8 heads."""
    (UNet3DConditionModel,) = diffusers_classes("UNet3DConditionModel")
    torch.manual_seed(seed)
    return UNet3DConditionModel(down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
                                up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
                                **{**LEVELS, "attention_head_dim": LEVELS["block_out_channels"][-1] // LEVELS["attention_head_dim"]})


# The tiny AudioLDM's spectrogram: AudioLDM's (16 kHz, 64 mel bands up to 8 kHz, 1024-point
# windows, a 160-sample hop: 100 frames a second), as a log-mel standardised by two numbers
# measured on the training sounds (stored in the weights file's metadata).
SAMPLE_RATE, MEL_BANDS, HOP, N_FFT, F_MAX = 16000, 64, 160, 1024, 8000.0


def trained_mel_vae(seed: int = 4):
    """AutoencoderKL on [1, 100 frames, 64 bands] spectrograms <-> [8, 25, 16] latents (AudioLDM's 8 channels)."""
    (AutoencoderKL,) = diffusers_classes("AutoencoderKL")
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 16, 32), in_channels=1, out_channels=1, latent_channels=8,
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         norm_num_groups=4, sample_size=64, mid_block_add_attention=False)


def trained_audio_unet(seed: int = 5):
    """AudioLDM's UNet shape at toy size: the CLAP vector enters as a class label (projected and
    concatenated to the time embedding); attention (to itself: AudioLDM passes no text states)
    only at the lowest level and the middle."""
    (UNet2DConditionModel,) = diffusers_classes("UNet2DConditionModel")
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=1, in_channels=8, out_channels=8, sample_size=16,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), cross_attention_dim=(32, 32, 64),
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=TINY_WIDTH,
        class_embeddings_concat=True, attention_head_dim=8, norm_num_groups=8)


def trained_vocoder(seed: int = 6):
    """SpeechT5HifiGan at toy size with a sine bank (`tiny/vocoder.py`): 64 bands in, upsampled
    8 x 5 x 4 = 160 (AudioLDM's hop), 16 channels at the sample rate (five 2x-or-more stages left
    4, and 1,500 steps with them read chirps no better than chance); sines an eighth of a tone apart
    over every pitch the world's tones and chirps reach (155-1,318 Hz)."""
    from transformers import SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    return SineBankHifiGan(SpeechT5HifiGanConfig(
        model_in_dim=MEL_BANDS, sampling_rate=SAMPLE_RATE, upsample_initial_channel=128, upsample_rates=[8, 5, 4],
        upsample_kernel_sizes=[16, 15, 8], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3], [1, 3]],
        normalize_before=False, sine_bank_hz=sine_bank(130.0, 1500.0)))


def trained_audio_components(vocab_size: int):
    """(CLAP text encoder with the shipped weights, mel VAE, UNet, vocoder), the last three at initial weights."""
    text = tiny_clap_text_model(vocab_size)
    text.load_state_dict(tiny_clap_weights())
    return text.eval().requires_grad_(False), trained_mel_vae(), trained_audio_unet(), trained_vocoder()


def trained_image_pipeline(text, vae, unet, tokenizer):
    (StableDiffusionPipeline,) = diffusers_classes("StableDiffusionPipeline")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=trained_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def trained_video_pipeline(text, vae, unet, tokenizer):
    from diffusers.utils import logging as diffusers_logging

    (TextToVideoSDPipeline,) = diffusers_classes("TextToVideoSDPipeline")
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its deprecation notice (models/decoders.load_pipeline says why)
    try:
        pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                     scheduler=trained_scheduler())
    finally:
        diffusers_logging.set_verbosity(level)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def trained_audio_pipeline(text, vae, unet, vocoder, tokenizer):
    (AudioLDMPipeline,) = diffusers_classes("AudioLDMPipeline")
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=trained_scheduler(),
                            vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _read_weights(path: Path, name: str, builder: str) -> tuple[dict, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the trained tiny {name} is missing; build it with "
                                f"`nextgpt-mini build-tiny {builder}`")
    with safe_open(str(path), "pt") as fh:
        build = json.loads((fh.metadata() or {}).get("build", "{}"))
    if "scaling_factor" not in build:
        raise ValueError(f"{path}: not a tiny {name} weights file (its metadata has no VAE scaling factor); "
                         f"rebuild it with `nextgpt-mini build-tiny {builder}`")
    return load_file(str(path)), build


def _load_modules(state: dict, modules: dict, path: Path) -> None:
    for name, module in modules.items():
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(part)
        except RuntimeError as err:
            raise ValueError(f"{path}: its {name} weights do not fit the tiny decoder's {name}: {err}") from None
        module.eval().requires_grad_(False)


def load_trained_image_pipeline(path: Path | None = None):
    """The trained tiny Stable Diffusion from its weights file (default: the one in the package)."""
    path = Path(path) if path is not None else ASSETS / IMAGE_DECODER_WEIGHTS
    state, build = _read_weights(path, "image decoder", "image-decoder")
    tok = tiny_decoder_tokenizer()
    text, vae, unet = trained_image_components(len(tok))
    _load_modules(state, {"text_encoder": text, "vae": vae, "unet": unet}, path)
    vae.register_to_config(scaling_factor=build["scaling_factor"])
    return trained_image_pipeline(text, vae, unet, tok)


def load_trained_video_pipeline(path: Path | None = None):
    """The trained tiny Zeroscope from its weights file (default: the one in the package)."""
    path = Path(path) if path is not None else ASSETS / VIDEO_DECODER_WEIGHTS
    state, build = _read_weights(path, "video decoder", "video-decoder")
    tok = tiny_decoder_tokenizer()
    text, vae, _ = trained_image_components(len(tok))
    unet = trained_video_unet()
    _load_modules(state, {"text_encoder": text, "vae": vae, "unet": unet}, path)
    vae.register_to_config(scaling_factor=build["scaling_factor"])
    return trained_video_pipeline(text, vae, unet, tok)


def load_trained_audio_pipeline(path: Path | None = None):
    """The trained tiny AudioLDM from its weights file (default: the one in the package); its CLAP
    text encoder is the shipped one (`tiny/pretrain/clap.py`)."""
    path = Path(path) if path is not None else ASSETS / AUDIO_DECODER_WEIGHTS
    state, build = _read_weights(path, "audio decoder", "audio-decoder")
    tok = tiny_decoder_tokenizer()
    text, vae, unet, vocoder = trained_audio_components(len(tok))
    _load_modules(state, {"vae": vae, "unet": unet, "vocoder": vocoder}, path)
    vae.register_to_config(scaling_factor=build["scaling_factor"])
    return trained_audio_pipeline(text, vae, unet, vocoder, tok)


def decoder_state(pipe, parts: tuple[str, ...] = ("text_encoder", "vae", "unet")) -> dict:
    """A pipeline's modules as one flat state dict, the layout the loaders read."""
    return {f"{name}.{k}": v.contiguous() for name in parts for k, v in getattr(pipe, name).state_dict().items()}


# What the tiny profile's decoders load.
TINY_PIPELINES = {"image": load_trained_image_pipeline, "video": load_trained_video_pipeline,
                  "audio": load_trained_audio_pipeline}
