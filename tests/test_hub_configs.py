"""Issue 18: the memory planner's weights are those of the published models.

configs/hub/ holds the hub repositories' own config files (or, where a repository's file could not
be had, the closest published relative whose weight-file size confirms it: configs/hub/SOURCES.md).
Each component is built from them at full depth on the meta device and counted; the planner
(`scaling.memory.component_counts`, from the package's own configs) must count exactly as many
parameters, so that its weight bytes (count x dtype bytes) are the real ones.
"""

import json
from pathlib import Path

import pytest
from accelerate import init_empty_weights

from nextgpt_mini import load_profile
from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.scaling.memory import component_counts, plan

HUB = Path(__file__).resolve().parents[1] / "configs" / "hub"


def config(*parts) -> dict:
    return {k: v for k, v in json.loads(HUB.joinpath(*parts).read_text()).items() if not k.startswith("_")}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def llm(folder: str) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    with init_empty_weights():
        return count(LlamaForCausalLM(LlamaConfig(**config(folder, "config.json"))))


def clip_text(*parts) -> int:
    from transformers import CLIPTextConfig, CLIPTextModel

    with init_empty_weights():
        return count(CLIPTextModel(CLIPTextConfig(**config(*parts))))


def diffusers_model(cls_name: str, cfg: dict) -> int:
    import diffusers

    with init_empty_weights():
        return count(getattr(diffusers, cls_name).from_config(cfg))


def audioldm(base: int) -> int:
    """AudioLDM at UNet width `base` x [1, 2, 3, 5]: m-full's UNet config (the only one published
    as text) rescaled as the model card's "UNet dim" column says, completed as its note says."""
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    unet = config("audioldm", "unet_config_m_full.PROXY.json")
    widths = [base * k for k in (1, 2, 3, 5)]
    unet.update(block_out_channels=widths, cross_attention_dim=widths, out_channels=8,
                up_block_types=["CrossAttnUpBlock2D"] * 3 + ["UpBlock2D"], projection_class_embeddings_input_dim=512)
    with init_empty_weights():
        text = count(ClapTextModelWithProjection(ClapTextConfig(**config("audioldm", "text_encoder_config.PROXY.json"))))
        vocoder = count(SpeechT5HifiGan(SpeechT5HifiGanConfig(**config("audioldm", "vocoder_config.json"))))
    return (diffusers_model("UNet2DConditionModel", unet) + diffusers_model("AutoencoderKL", config("audioldm_l_full", "vae_config.json"))
            + text + vocoder)


def stable_diffusion() -> int:  # what the loader loads: no safety checker
    return (diffusers_model("UNet2DConditionModel", config("sd15", "unet_config.json"))
            + diffusers_model("AutoencoderKL", config("sd15", "vae_config.json")) + clip_text("sd15", "text_encoder_config.json"))


def zeroscope() -> int:  # its VAE is SD's
    return (diffusers_model("UNet3DConditionModel", config("zeroscope_v2_576w", "unet_config.PROXY.json"))
            + diffusers_model("AutoencoderKL", config("sd15", "vae_config.json"))
            + clip_text("zeroscope_v2_576w", "text_encoder_config.PROXY.json"))


@pytest.mark.parametrize("profile", ["colab", "paper"])
def test_the_planner_counts_the_published_models_exactly(profile):
    planned = component_counts(load_profile(profile))
    real = {"LLM": llm("tinyllama_chat_v1.0" if profile == "colab" else "vicuna_7b_v1.5"),
            "image decoder": stable_diffusion(), "video decoder": zeroscope(),
            "audio decoder": audioldm(128 if profile == "colab" else 256)}
    assert {k: planned[k] for k in real} == real
    # and so the planner's bytes are the real ones: the LLM's line is its count at the dtype
    llm_line = plan(profile, dtype="fp16").items[1]
    assert llm_line.gpu == 2 * real["LLM"]


def test_the_encoder_config_is_meta_imagebind_huge():
    kwargs = json.loads((HUB / "imagebind_huge" / "imagebind_huge_kwargs.json").read_text())
    ours = EncoderConfig()
    given = {k: v for k, v in kwargs.items() if not k.startswith("_") and not k.startswith("imu")}
    assert {k: getattr(ours, k) for k in given} == given
    defaults = kwargs["_defaults_used"]
    assert (ours.video_frames, ours.patch_size, ours.audio_embed_dim, ours.audio_num_blocks, ours.audio_num_heads,
            ours.audio_num_mel_bins, ours.audio_target_len, ours.audio_kernel_size, ours.audio_stride,
            ours.context_length, ours.vocab_size) == \
        (defaults["video_frames"], defaults["kernel_size"][1], defaults["audio_embed_dim"], defaults["audio_num_blocks"],
         defaults["audio_num_heads"], defaults["audio_num_mel_bins"], defaults["audio_target_len"],
         defaults["audio_kernel_size"], defaults["audio_stride"], defaults["text_context_length"], defaults["text_vocab_size"])
