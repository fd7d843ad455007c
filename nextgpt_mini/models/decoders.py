"""Chapter 05: the frozen diffusion decoders: Stable Diffusion (image), Zeroscope (video), AudioLDM (audio).

NExT-GPT never trains these. It trains output projectors whose outputs replace what each
decoder's own text encoder would have produced from a caption:

* Stable Diffusion reads CLIP-L's last hidden state, 77 x 768, through cross-attention;
* Zeroscope (TextToVideoSD) reads the last hidden state of a 23-layer OpenCLIP-H text encoder, i.e.
  OpenCLIP-H's penultimate layer after the final layer norm (SD-2's recipe), 77 x 1024, the same way;
* AudioLDM reads one L2-normalised CLAP text embedding (512), not through cross-attention but as
  a class label: it is projected and concatenated to the UNet's time embedding (FiLM-like).

So a decoder here is two things: `targets(captions)`, the conditioning a caption gives (what the
projector must hit, cached), and `generate(embeds)`, the pipeline run from given conditioning
(`prompt_embeds`, with the empty prompt's embedding as the negative for classifier-free guidance).

Profiles: `paper`/`colab` load diffusers pipelines by hub id or local folder, each with its
repository's own scheduler (SD-1.5: PNDM; Zeroscope: DDIM; AudioLDM: DDIM with betas 0.0015-0.0195);
`tiny` loads the same pipeline classes at toy size, trained on the toy world and shipped
(`tiny/decoders.py`), all three with SD's scaled-linear betas (0.00085-0.012) and DDIM sampling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nextgpt_mini.cache import EmbeddingCache, model_identity, text_key
from nextgpt_mini.config import DecoderConfig, ProfileConfig
from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.files import save_audio, save_image, save_video
from nextgpt_mini.losses import min_snr_weight
from nextgpt_mini.models.decoder_configs import FULL_SIZE_DECODERS, build_empty, full_size_counts
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.utils import frozen_dtype, pick_device

PIPELINE_CLASS = {"image": "StableDiffusionPipeline", "video": "TextToVideoSDPipeline", "audio": "AudioLDMPipeline"}


# --------------------------------------------------------------------------------------------
# Loading pipelines: hub id or local folder, or the tiny ones built locally
# --------------------------------------------------------------------------------------------
def diffusers_classes(*names: str):
    """Classes from diffusers, imported without transformers' notices about torchvision-backed image
    processors (never used here; the environment deliberately has no torchvision)."""
    import logging

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # some of those notices bypass transformers' own logger
    try:
        import diffusers

        return [getattr(diffusers, n) for n in names]
    finally:
        logging.disable(previous)
        hf_logging.set_verbosity(level)


def load_pipeline(modality: str, cfg: DecoderConfig, dtype: torch.dtype = torch.float32):
    """The decoder pipeline of a modality: built locally for "tiny", else `from_pretrained`.

    diffusers 0.42 lists TextToVideoSDPipeline and AudioLDMPipeline as deprecated (no new
    features; hence the upper bound on diffusers in pyproject.toml). They still work, and they are
    what NExT-GPT uses, so their notice is silenced while loading.

    diffusers also logs an *error* for every component of a repository whose main branch has no
    safetensors (Zeroscope, AudioLDM-l: .bin only) before it loads the .bin as it should; that line
    is dropped too (`BinFallbackNotice`). Failures still raise.
    """
    import logging

    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    models_logger, notice = logging.getLogger("diffusers.models.modeling_utils"), BinFallbackNotice()
    models_logger.addFilter(notice)
    try:
        return _load_pipeline(modality, cfg, dtype)
    finally:
        models_logger.removeFilter(notice)
        diffusers_logging.set_verbosity(level)


class BinFallbackNotice:
    """A logging filter: drops diffusers' "An error occurred while trying to fetch ..." for a
    missing safetensors file, which it logs before loading the .bin file that is there."""

    def filter(self, record) -> bool:
        return not record.getMessage().startswith("An error occurred while trying to fetch")


def _load_pipeline(modality: str, cfg: DecoderConfig, dtype: torch.dtype):
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}: expected one of {MODALITIES}")
    if cfg.name_or_path == "tiny":
        # The one place the core reaches up into tiny/, so imported here: tiny/ builds on the core
        # (tiny.decoders imports this module), and only the tiny profile needs it.
        from nextgpt_mini.tiny.decoders import TINY_PIPELINES

        return TINY_PIPELINES[modality]()
    (cls,) = diffusers_classes(PIPELINE_CLASS[modality])
    extra: dict[str, Any] = {name: None for name in NOT_LOADED} | {"requires_safety_checker": False} if modality == "image" else {}
    ref = cfg.name_or_path
    try:
        pipe = cls.from_pretrained(ref, dtype=dtype, **extra)
    except (OSError, ValueError) as err:
        if Path(ref).exists():
            raise OSError(f"{ref}: not a {PIPELINE_CLASS[modality]} folder (expected model_index.json written by "
                          f"save_pretrained): {err}") from err
        raise OSError(
            f"could not load the {modality} decoder {ref!r} ({type(err).__name__}). It is fetched from the Hugging "
            f"Face hub on first use (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). With internet, run "
            f"`hf download {ref}`, or point the profile's "
            f"{modality}_decoder.name_or_path at a local folder that holds it."
        ) from err
    # the VAE decodes one frame (or image) at a time, as `scaling/memory.py` plans: all 24 of
    # Zeroscope's frames at once would be the largest buffer of inference on a T4
    pipe.vae.enable_slicing()
    return pipe


def pipeline_identity(pipe, modality: str, cfg: DecoderConfig) -> str:
    """Cache identity of a decoder's text side: where it came from, the text encoder's weights and
    the tokenizer's length (sampling settings such as steps do not change a target)."""
    sampling = ("steps", "guidance_scale", "height", "width", "num_frames", "audio_seconds", "sample_rate", "fps")
    return model_identity(f"decoder-text-{modality}", cfg, state_dict=pipe.text_encoder.state_dict(), exclude=sampling,
                          extra={"max_length": pipe.tokenizer.model_max_length})


# --------------------------------------------------------------------------------------------
# One decoder: targets (text side) and generation (denoising side)
# --------------------------------------------------------------------------------------------
class Decoder:
    """A frozen diffusion pipeline, built on first use and kept."""

    def __init__(self, modality: str, cfg: DecoderConfig, dtype: torch.dtype | None = None,
                 cache_dir: str | os.PathLike | None = None, device: str | torch.device | None = None):
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}: expected one of {MODALITIES}")
        # default: the one policy (utils): the best device there is, in the dtype it runs natively
        # (16-bit on a GPU, fp32 on a CPU); a pipeline left on the CPU in fp16 would crawl
        self.modality, self.cfg = modality, cfg
        self.place = pick_device(None if device is None else str(device))
        self.dtype = dtype or frozen_dtype(self.place)
        self.cache_dir = cache_dir
        self._pipe = None
        self._cache = None
        self._negative: torch.Tensor | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._pipe is not None else "not loaded"
        return f"Decoder({self.modality!r}, {self.cfg.name_or_path!r}, {state})"

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.modality, self.cfg, self.dtype)
            if self.place.type != "cpu":
                self._pipe.to(self.place)
            self._pipe.set_progress_bar_config(leave=False, desc=f"denoising ({self.modality})")
            for part in ("unet", "vae", "text_encoder", "vocoder"):
                module = getattr(self._pipe, part, None)
                if module is not None:
                    module.requires_grad_(False).eval()
        return self._pipe

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    def to(self, device) -> "Decoder":
        """Move the whole pipeline (e.g. to "cpu" to make room for another decoder on a small GPU)."""
        self.place = torch.device(device)
        if self._pipe is not None:
            self._pipe.to(device)
        return self

    # ------------------------------------------------------------------ text side: the targets
    @property
    def target_shape(self) -> tuple[int, ...]:
        """Shape of one caption's conditioning: (tokens, width), or (width,) for AudioLDM."""
        te = self.pipe.text_encoder.config
        if self.modality == "audio":
            return (te.projection_dim,)
        return (self.pipe.tokenizer.model_max_length, te.hidden_size)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """The decoder's own text encoder applied to `texts`, exactly as its pipeline does it."""
        pipe, device = self.pipe, self.pipe.device
        if self.modality == "audio":
            # a private diffusers method (AudioLDM has no public encode_prompt); the diffusers<0.43 pin
            # in pyproject.toml keeps it there
            emb = pipe._encode_prompt(list(texts), device, 1, False)  # CLAP text_embeds, L2-normalised
        else:
            emb, _ = pipe.encode_prompt(list(texts), device, 1, False)  # last hidden state
        return emb.float().cpu()

    def cache(self):
        if self.cache_dir is None:
            return None
        if self._cache is None:
            self._cache = EmbeddingCache(self.cache_dir, pipeline_identity(self.pipe, self.modality, self.cfg))
        return self._cache

    def targets(self, captions: list[str], batch_size: int = 64) -> torch.Tensor:
        """[N, *target_shape]: each caption's conditioning, computed once and cached."""
        cache = self.cache()
        keys = [text_key(c, prefix=f"cond-{self.modality}") for c in captions]
        found = cache.get_many(keys) if cache is not None else {}
        todo = list(dict.fromkeys(c for c, k in zip(captions, keys) if k not in found))
        new = {}
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            for c, e in zip(chunk, self.encode_text(chunk)):
                new[text_key(c, prefix=f"cond-{self.modality}")] = e.contiguous()
        if cache is not None and new:
            cache.put_many(new)
        values = {**found, **new}
        return torch.stack([values[k] for k in keys])

    def negative(self) -> torch.Tensor:
        """The empty prompt's conditioning: the 'unconditional' side of classifier-free guidance."""
        if self._negative is None:
            self._negative = self.encode_text([""])[0]
        return self._negative

    # ------------------------------------------------------------------ denoising side
    def generate(self, embeds: torch.Tensor, seed: int | Sequence[int] = 0, steps: int | None = None,
                 guidance_scale: float | None = None, progress: bool = True, **kwargs) -> list:
        """Media from conditioning `embeds` [N, *target_shape] (a projector's output or `targets`).

        Returns PIL images (image), uint8 frame arrays [F, H, W, 3] (video) or float waveforms
        (audio), one per row. Same seed, same embeddings: same media. `seed` may be one seed per
        row: row k then starts from the noise it would get alone with seed[k], so a batch of
        requests gives what they give one by one, in one denoising loop.
        """
        embeds = torch.as_tensor(embeds)
        if tuple(embeds.shape[1:]) != self.target_shape:
            raise ValueError(f"{self.modality} decoder: embeds of shape {tuple(embeds.shape)}, expected "
                             f"[N, {', '.join(map(str, self.target_shape))}]")
        pipe, cfg, n = self.pipe, self.cfg, embeds.shape[0]
        if isinstance(seed, int):
            generator = torch.Generator("cpu").manual_seed(seed)
        elif len(seed) == n:
            generator = [torch.Generator("cpu").manual_seed(int(s)) for s in seed]
        else:
            raise ValueError(f"{self.modality} decoder: {len(seed)} seeds for {n} rows of embeds (expected one seed, or one per row)")
        pipe.set_progress_bar_config(disable=not progress, leave=False, desc=f"denoising ({self.modality})")
        dtype = pipe.text_encoder.dtype
        common = {
            "prompt_embeds": embeds.to(pipe.device, dtype),
            "negative_prompt_embeds": self.negative().expand(n, *self.target_shape).to(pipe.device, dtype),
            "num_inference_steps": steps or cfg.steps,
            "guidance_scale": cfg.guidance_scale if guidance_scale is None else guidance_scale,
            "generator": generator,
        }
        if self.modality == "image":
            out = pipe(height=cfg.height, width=cfg.width, output_type="pil", **common, **kwargs)
            return list(out.images)
        if self.modality == "video":
            out = pipe(height=cfg.height, width=cfg.width, num_frames=cfg.num_frames, output_type="np", **common, **kwargs)
            frames = np.asarray(out.frames)  # [N, F, H, W, 3] in [0, 1]
            return [(f.clip(0, 1) * 255).round().astype(np.uint8) for f in frames]
        out = pipe(audio_length_in_s=cfg.audio_seconds, output_type="np", **common, **kwargs)
        return [np.asarray(a, dtype=np.float32) for a in out.audios]

    # ------------------------------------------------------------------ the optional denoising loss
    @torch.no_grad()
    def clean_latents(self, media: list) -> torch.Tensor:
        """VAE latents of real media, scaled as the UNet sees them: images (PIL or uint8 [H, W, 3]) ->
        [N, 4, h, w]; videos (uint8 [F, H, W, 3]) -> [N, 4, F, h, w]. Image and video decoders only."""
        if self.modality == "audio":
            raise ValueError("the denoising loss is implemented for the image and video decoders (AudioLDM's "
                             "mel-spectrogram front end is not); use the alignment distance for audio")
        vae = self.pipe.vae
        frames = np.stack([np.asarray(m) for m in media]).astype(np.float32) / 127.5 - 1.0
        x = torch.from_numpy(frames).to(vae.device, vae.dtype)
        if self.modality == "image":  # [N, H, W, 3]
            return vae.encode(x.permute(0, 3, 1, 2)).latent_dist.mean * vae.config.scaling_factor
        n, f = x.shape[:2]  # [N, F, H, W, 3]
        lat = vae.encode(x.flatten(0, 1).permute(0, 3, 1, 2)).latent_dist.mean * vae.config.scaling_factor
        return lat.reshape(n, f, *lat.shape[1:]).permute(0, 2, 1, 3, 4)

    def denoising_loss(self, cond: torch.Tensor, latents: torch.Tensor, snr_gamma: float = 5.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-example diffusion loss of the frozen UNet conditioned on `cond` (gradients reach `cond`).

        Random timestep and noise per example; the target is the noise (or the velocity for
        v-prediction models); Min-SNR-gamma weighting (Hang et al., 2023) keeps the easy,
        low-noise steps from dominating.
        """
        pipe = self.pipe
        sched = pipe.scheduler
        latents = latents.to(pipe.unet.device, pipe.unet.dtype)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(latents.device)
        noisy = sched.add_noise(latents, noise, t)
        pred = pipe.unet(noisy, t, encoder_hidden_states=cond.to(latents.dtype)).sample
        v_prediction = sched.config.prediction_type == "v_prediction"
        target = sched.get_velocity(latents, noise, t) if v_prediction else noise
        mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(1)
        alpha = sched.alphas_cumprod.to(latents.device)[t].float()
        return min_snr_weight(alpha, snr_gamma, v_prediction) * mse

    def save(self, result, path: str | os.PathLike) -> Path:
        """Write one generated result as PNG / MP4 / WAV (atomically)."""
        if self.modality == "image":
            return save_image(result, path)
        if self.modality == "video":
            return save_video(result, path, fps=self.cfg.fps)
        return save_audio(result, path, sample_rate=self.sample_rate)

    @property
    def sample_rate(self) -> int:
        if self.modality != "audio":
            raise AttributeError("only the audio decoder has a sample rate")
        return int(self.pipe.vocoder.config.sampling_rate)


class Decoders:
    """The three decoders of a profile, each built on first use; `only(m)` frees the GPU for one."""

    def __init__(self, profile: ProfileConfig | str = "tiny", dtype: torch.dtype | None = None,
                 cache_dir: str | os.PathLike | None = None, device: str | torch.device | None = None):
        profile = load_profile(profile) if isinstance(profile, str) else profile
        self.profile = profile
        self.decoders = {m: Decoder(m, profile.decoder(m), dtype, cache_dir, device) for m in MODALITIES}

    def __getitem__(self, modality: str) -> Decoder:
        if modality not in self.decoders:
            raise KeyError(f"no decoder for {modality!r}: expected one of {MODALITIES}")
        return self.decoders[modality]

    def only(self, modality: str, device) -> Decoder:
        """Move every loaded decoder but `modality` to the CPU and `modality` to `device`."""
        for m, d in self.decoders.items():
            if m != modality:
                d.to("cpu")
        return self[modality].to(device)


# Pipeline components that `load_pipeline` never loads (SD's safety checker, a 304 M CLIP vision
# tower: the outputs are toy or research images), so a memory plan must not count them.
NOT_LOADED = ("safety_checker",)


def decoder_parameter_counts(profile, modality: str) -> dict[str, int]:
    """{component: parameters} of the profile's decoder for `modality`, without loading weights:
    full-size hub ids are built empty from `decoder_configs`; the tiny decoders are built (small);
    a local folder is built empty from the configs saved in it."""
    cfg = profile.decoder(modality)
    if cfg.name_or_path in FULL_SIZE_DECODERS:
        return full_size_counts(cfg.name_or_path)
    if cfg.name_or_path == "tiny":
        pipe = load_pipeline(modality, cfg)
        return {name: sum(p.numel() for p in part.parameters()) for name, part in pipe.components.items()
                if isinstance(part, torch.nn.Module)}
    folder = Path(cfg.name_or_path)
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder}: no model_index.json (expected a diffusers pipeline folder or a known hub id)")
    import json

    counts = {}
    for name, spec in json.loads(index.read_text()).items():
        config_file = folder / name / "config.json"
        if name.startswith("_") or not isinstance(spec, list) or not config_file.is_file():
            continue  # schedulers, tokenizers and the like hold no parameters
        config = json.loads(config_file.read_text())
        model = build_empty(spec[1], {k: v for k, v in config.items() if not k.startswith("_")}, library=spec[0])
        if model is not None:
            counts[name] = sum(p.numel() for p in model.parameters())
    return counts
