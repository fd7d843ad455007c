"""Chapter 08: the full-size decoders' architectures, written here so they can be built empty (meta device:
no download, no memory) to count parameters and plan memory, like `llm.FULL_SIZE_CONFIGS`.

Each hub id maps to its pipeline's models: {component: (class, config kwargs)}. The values are the
published `config.json` files' architecture keys (SD-1.5: stable-diffusion-v1-5/stable-diffusion-v1-5,
the sd-legacy mirror of the withdrawn runwayml repository; Zeroscope v2 576w: the
ModelScope text-to-video configs it was fine-tuned from, whose file sizes match; AudioLDM: what
diffusers' `convert_original_audioldm_to_diffusers.py` derives from the original configs, l = 256
base channels, s = 128). tests/test_full_size.py pins the resulting counts (SD-1.5 UNet
859,520,964; AudioLDM-l UNet 739,139,080, as its model card says 739 M).
"""

from __future__ import annotations

import functools

_SD_VAE = dict(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=4,
               layers_per_block=2, norm_num_groups=32, sample_size=512)

_CLIP_L_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")

# OpenCLIP ViT-H/14's text tower, cut to 23 layers as SD-2 (and so ModelScope / Zeroscope) use it
_OPENCLIP_H_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, projection_dim=512,
                        num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu")

# CLIP ViT-L/14's vision tower inside StableDiffusionSafetyChecker
_SAFETY = dict(projection_dim=768, vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                                      num_hidden_layers=24, patch_size=14, image_size=224,
                                                      hidden_act="quick_gelu"))

_CLAP_TEXT = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-12, projection_dim=512,
                  projection_hidden_act="relu", pad_token_id=1)

_HIFIGAN = dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
                upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
                resblock_dilation_sizes=[[1, 3, 5]] * 3, normalize_before=False)

_AUDIO_VAE = dict(in_channels=1, out_channels=1, down_block_types=["DownEncoderBlock2D"] * 3,
                  up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[128, 256, 512], latent_channels=8,
                  layers_per_block=2, norm_num_groups=32, sample_size=512)


def _audioldm_unet(base: int) -> dict:
    channels = [base * m for m in (1, 2, 3, 5)]
    return dict(sample_size=128, in_channels=8, out_channels=8,
                down_block_types=["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 3,
                up_block_types=["CrossAttnUpBlock2D"] * 3 + ["UpBlock2D"],
                block_out_channels=channels, layers_per_block=2, cross_attention_dim=list(channels),
                # the CLAP embedding enters as a FiLM-like class embedding, concatenated to the time embedding
                class_embed_type="simple_projection", projection_class_embeddings_input_dim=512,
                class_embeddings_concat=True, attention_head_dim=8)


FULL_SIZE_DECODERS: dict[str, dict[str, tuple[str, dict]]] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": {
        "unet": ("UNet2DConditionModel", dict(cross_attention_dim=768, attention_head_dim=8, sample_size=64)),
        "vae": ("AutoencoderKL", _SD_VAE),
        "text_encoder": ("CLIPTextModel", _CLIP_L_TEXT),
        "safety_checker": ("StableDiffusionSafetyChecker", _SAFETY),
    },
    "cerspense/zeroscope_v2_576w": {
        "unet": ("UNet3DConditionModel", dict(cross_attention_dim=1024, attention_head_dim=64, sample_size=32)),
        "vae": ("AutoencoderKL", _SD_VAE),
        "text_encoder": ("CLIPTextModel", _OPENCLIP_H_TEXT),
    },
    "cvssp/audioldm-l-full": {
        "unet": ("UNet2DConditionModel", _audioldm_unet(256)),
        "vae": ("AutoencoderKL", _AUDIO_VAE),
        "text_encoder": ("ClapTextModelWithProjection", _CLAP_TEXT),
        "vocoder": ("SpeechT5HifiGan", _HIFIGAN),
    },
    "cvssp/audioldm-s-full-v2": {
        "unet": ("UNet2DConditionModel", _audioldm_unet(128)),
        "vae": ("AutoencoderKL", _AUDIO_VAE),
        "text_encoder": ("ClapTextModelWithProjection", _CLAP_TEXT),
        "vocoder": ("SpeechT5HifiGan", _HIFIGAN),
    },
}


BUILDABLE = ("UNet2DConditionModel", "UNet3DConditionModel", "AutoencoderKL", "CLIPTextModel",
             "ClapTextModelWithProjection", "SpeechT5HifiGan", "StableDiffusionSafetyChecker")


def build_empty(class_name: str, config: dict, library: str | None = None):
    """One model of a pipeline on the meta device (no weights allocated). A class outside
    BUILDABLE is looked up in `library` (the module a saved pipeline's model_index.json names,
    as diffusers does when it loads the folder) if it is a transformers model; otherwise None."""
    from accelerate import init_empty_weights

    if class_name not in BUILDABLE:
        import importlib

        cls = getattr(importlib.import_module(library), class_name, None) if library else None
        config_class = getattr(cls, "config_class", None)
        if config_class is None:
            return None
        with init_empty_weights():
            return cls(config_class(**config))
    with init_empty_weights():
        if class_name in ("UNet2DConditionModel", "UNet3DConditionModel", "AutoencoderKL"):
            import diffusers

            return getattr(diffusers, class_name).from_config(config)
        import transformers

        if class_name == "StableDiffusionSafetyChecker":
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

            return StableDiffusionSafetyChecker(transformers.CLIPConfig(**config))
        config_class = {"CLIPTextModel": "CLIPTextConfig", "ClapTextModelWithProjection": "ClapTextConfig",
                        "SpeechT5HifiGan": "SpeechT5HifiGanConfig"}[class_name]
        return getattr(transformers, class_name)(getattr(transformers, config_class)(**config))


def full_size_counts(name_or_path: str) -> dict[str, int]:
    """{component: parameters} of a known full-size decoder pipeline, built empty (once per id)."""
    if name_or_path not in FULL_SIZE_DECODERS:
        raise KeyError(f"{name_or_path!r}: no full-size config in the package (known: {', '.join(FULL_SIZE_DECODERS)})")
    return dict(_counts(name_or_path))


@functools.cache
def _counts(name_or_path: str) -> tuple[tuple[str, int], ...]:
    return tuple((part, sum(p.numel() for p in build_empty(cls, cfg).parameters()))
                 for part, (cls, cfg) in FULL_SIZE_DECODERS[name_or_path].items())
