"""Chapter 00: the three profiles, one schema (`config.py`) at three sizes.

`load_profile("paper")` is NExT-GPT's own set-up (nextgpt-facts.md); `colab` keeps the same
design with real weights small enough for a free 15 GB T4; `tiny` builds the same classes at
toy width so that everything runs on a laptop CPU in seconds.
"""

from __future__ import annotations

from typing import Any

from nextgpt_mini.config import (
    HUB,
    DecoderConfig,
    EncoderConfig,
    LLMConfig,
    LoRAConfig,
    OutputProjectorConfig,
    ProfileConfig,
    SignalTokenConfig,
    TrainConfig,
    parse_overrides,
    set_field,
)

PROFILES = ("tiny", "colab", "paper")


def _paper() -> ProfileConfig:
    return ProfileConfig(
        name="paper",
        encoder=EncoderConfig(),
        llm=LLMConfig(),
        lora=LoRAConfig(),
        signal_tokens=SignalTokenConfig(image=4, video=24, audio=8),
        # SD-1.5 reads CLIP-L's last hidden state (77 x 768) through cross-attention.
        image_projector=OutputProjectorConfig(num_queries=77, out_dim=768),
        # Zeroscope reads OpenCLIP-H's hidden state (77 x 1024) through cross-attention.
        video_projector=OutputProjectorConfig(num_queries=77, out_dim=1024),
        # AudioLDM takes one L2-normalised CLAP text embedding (1 x 512) as FiLM conditioning.
        audio_projector=OutputProjectorConfig(num_queries=1, out_dim=512),
        image_decoder=DecoderConfig(name_or_path=HUB["sd_v1_5"], height=512, width=512),
        video_decoder=DecoderConfig(
            name_or_path=HUB["zeroscope_576w"], height=320, width=576, num_frames=24, fps=8
        ),
        audio_decoder=DecoderConfig(
            name_or_path=HUB["audioldm_l_full"], height=0, width=0, audio_seconds=5.0
        ),
        train=TrainConfig(checkpoint_minutes=10.0),
    )


def _colab() -> ProfileConfig:
    p = _paper()
    p.name = "colab"
    # ImageBind-huge stays: it is the system's eyes and ears and takes 2.4 GB in fp16.
    p.llm = LLMConfig(
        name_or_path=HUB["tinyllama_chat"],
        template="chat",
        hidden_size=2048,
        num_layers=22,
        num_heads=32,
        intermediate_size=5632,
        vocab_size=32000,
        max_length=384,
    )
    p.lora = LoRAConfig(r=16, alpha=32, dropout=0.05)
    p.signal_tokens = SignalTokenConfig(image=4, video=8, audio=4)
    # Fewer frames and AudioLDM-s keep every decoder inside a T4 next to the LLM.
    p.video_decoder = DecoderConfig(
        name_or_path=HUB["zeroscope_576w"], steps=30, height=320, width=576, num_frames=16, fps=8
    )
    p.audio_decoder = DecoderConfig(
        name_or_path=HUB["audioldm_s_full_v2"], steps=50, height=0, width=0, audio_seconds=5.0
    )
    p.image_decoder.steps = 30
    p.train = TrainConfig(batch_size=2, grad_accum=8, gradient_checkpointing=True, checkpoint_minutes=10.0)
    return p


def _tiny() -> ProfileConfig:
    return ProfileConfig(
        name="tiny",
        encoder=EncoderConfig(
            weights="package:tiny_imagebind.safetensors",
            out_embed_dim=64,
            image_size=48,
            patch_size=8,
            video_frames=2,
            vision_embed_dim=64,
            vision_num_blocks=2,
            vision_num_heads=4,
            text_embed_dim=64,
            text_num_blocks=2,
            text_num_heads=4,
            vocab_size=512,
            context_length=24,
            tokenizer="package:tiny_tokenizer",
            eot_token_id=2,  # the tiny tokenizer's "</s>"
            audio_embed_dim=64,
            audio_num_blocks=2,
            audio_num_heads=4,
            audio_num_mel_bins=32,
            audio_target_len=100,
            audio_kernel_size=8,
            audio_stride=8,
            audio_drop_path=0.0,
            sample_rate=16000,
            audio_clip_duration=1.0,
            audio_clips=2,
            video_clip_duration=1.0,
            video_clips=2,
            video_spatial_crops=1,
        ),
        llm=LLMConfig(
            name_or_path="package:tiny_llm",
            template="nextgpt",
            hidden_size=128,
            num_layers=4,
            num_heads=4,
            intermediate_size=384,
            vocab_size=512,
            max_length=128,
        ),
        lora=LoRAConfig(r=8, alpha=16, dropout=0.0),
        signal_tokens=SignalTokenConfig(image=4, video=8, audio=4),
        image_projector=OutputProjectorConfig(
            d_model=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=128, num_queries=16, out_dim=32, linear_path=True,
        ),
        video_projector=OutputProjectorConfig(
            d_model=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=128, num_queries=16, out_dim=32, linear_path=True,
        ),
        audio_projector=OutputProjectorConfig(
            d_model=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=128, num_queries=1, out_dim=32, linear_path=True,
        ),
        # the trained tiny decoders (tiny/decoders.py) at the steps and guidance their builds measured
        image_decoder=DecoderConfig(name_or_path="tiny", steps=20, guidance_scale=5.0, height=32, width=32),
        video_decoder=DecoderConfig(
            name_or_path="tiny", steps=20, guidance_scale=5.0, height=32, width=32, num_frames=4, fps=4
        ),
        audio_decoder=DecoderConfig(
            name_or_path="tiny", steps=20, guidance_scale=3.0, height=0, width=0, audio_seconds=1.0
        ),
        train=TrainConfig(
            lr=1e-2, batch_size=16, steps={"1": 2000, "2": 1500, "3": 1000}, mixed_precision="no", eval_every=50,
            checkpoint_every=100,
            # stage 2 at 1500 steps, not 500: the projected conditioning must be nearest its own
            # caption among all the world's, not only among the 48 its report compares (at 500 the
            # colour was often another's: BUILD_RESULTS.md, History).
            # the output projectors are transformers: a gentler rate, and more (smaller) steps in the
            # same minute than the one-layer input projector needs; stage 3 trains them too and keeps
            # that rate, since stage 1's rate there undoes stage 2's alignment.
            # stage 1 at 2000 steps over 1200 items a modality, not 300 over 400: the frozen LLM reads
            # the projected token only once the projector is precise (BUILD_RESULTS.md, History);
            # greedy captions of every held-out item at each evaluation cost seconds, so few of them.
            stage_overrides={"1": {"eval_every": 500},
                             "2": {"lr": 3e-3, "batch_size": 8, "eval_every": 100},
                             "3": {"lr": 3e-3, "batch_size": 8, "eval_every": 500}},
        ),
    )


_BUILDERS = {"tiny": _tiny, "colab": _colab, "paper": _paper}


def load_profile(name: str, overrides: dict[str, Any] | list[str] | None = None) -> ProfileConfig:
    """Return a fresh profile. `overrides` is {"llm.max_length": 64} or ["llm.max_length=64"]."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    if overrides:
        if isinstance(overrides, (list, tuple)):
            overrides = parse_overrides(overrides)
        for key, value in overrides.items():
            set_field(profile, key, value)
    return profile
