"""Chapter 05: the tiny AudioLDM, trained on the toy world's sounds so that it really sounds its conditioning.

AudioLDM draws a mel spectrogram as Stable Diffusion draws a picture, then a vocoder turns the
spectrogram into a waveform. Its parts, trained here in the order AudioLDM's were made, each
frozen before the next:

1. the **vocoder** (SpeechT5HifiGan at toy size with a bank of sines, `tiny/vocoder.py`), on
   the training sounds' own spectrograms: HiFi-GAN's mel loss plus a multi-resolution STFT loss
   (Parallel WaveGAN's), without the adversarial losses;
2. the **VAE** (AutoencoderKL with one input channel), on the spectrograms: 100 frames x 64
   bands <-> 8 x 25 x 16 latents;
3. the **UNet**, conditioned as AudioLDM's is, on the caption's CLAP vector as a class label (the
   shipped tiny CLAP text encoder, `clap.py`), with the objective of `diffusion.py`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini.tiny import reader
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.decoders import (
    F_MAX,
    HOP,
    MEL_BANDS,
    N_FFT,
    SAMPLE_RATE,
    decoder_state,
    trained_audio_components,
    trained_audio_pipeline,
)
from nextgpt_mini.tiny.pipelines import tiny_decoder_tokenizer
from nextgpt_mini.tiny.pretrain.clap import caption_targets
from nextgpt_mini.tiny.pretrain.diffusion import train_denoiser
from nextgpt_mini.tiny.pretrain.image_decoder import percent, train_vae
from nextgpt_mini.tiny.pretrain.loop import refuse_quick_build_into_package, train_loop
from nextgpt_mini.tiny.registry import AUDIO_DECODER_WEIGHTS
from nextgpt_mini.utils import atomic_path, save_safetensors, torch_threads

SECONDS = 1.0  # profiles.py: the tiny audio decoder's audio_seconds
FRAMES = int(SECONDS * SAMPLE_RATE / HOP)


@dataclasses.dataclass
class AudioDecoderSettings:
    renders: int = 1500
    vocoder_steps: int = 800
    vocoder_batch: int = 16
    vocoder_frames: int = 32  # a 0.32 s crop per example
    vocoder_lr: float = 2e-3
    vae_steps: int = 800
    vae_batch: int = 16
    vae_lr: float = 3e-3
    unet_steps: int = 1200
    unet_batch: int = 32
    unet_lr: float = 2e-3
    drop_caption: float = 0.1
    gamma: float = 5.0
    eval_items: int = 96
    eval_steps: int = 20
    eval_guidance: float = 3.0
    seed: int = 0

    @classmethod
    def quick(cls) -> "AudioDecoderSettings":
        return cls(renders=32, vocoder_steps=3, vae_steps=3, unet_steps=3, eval_items=4, eval_steps=2)


class LogMel:
    """Waveforms -> the tiny AudioLDM's spectrograms [N, frames, 64]: log-mel standardised by
    `mean` and `std` (measured on the training sounds by `fit`)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        from transformers.audio_utils import mel_filter_bank

        bank = mel_filter_bank(N_FFT // 2 + 1, MEL_BANDS, 0.0, F_MAX, SAMPLE_RATE, norm="slaney", mel_scale="slaney")
        self.bank = torch.from_numpy(bank).float()  # [freqs, bands]
        self.window = torch.hann_window(N_FFT)
        self.mean, self.std = mean, std

    def raw(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveforms, N_FFT, HOP, window=self.window, center=True, return_complex=True).abs()
        mel = spec.transpose(1, 2) @ self.bank
        return torch.log(mel.clamp(min=1e-5))[:, : waveforms.shape[-1] // HOP]

    def fit(self, waveforms: torch.Tensor) -> "LogMel":
        raw = self.raw(waveforms)
        self.mean, self.std = float(raw.mean()), float(raw.std())
        return self

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        return (self.raw(waveforms) - self.mean) / self.std


def sounds(items: list[tw.ToyItem]) -> torch.Tensor:
    return torch.from_numpy(np.stack([tw.render_audio(it, SECONDS, SAMPLE_RATE) for it in items]))


def stft_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1 at three resolutions."""
    total = 0.0
    for n_fft, hop in ((256, 64), (512, 128), (1024, 256)):
        window = torch.hann_window(n_fft)
        s_out, s_tgt = (torch.stft(w, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-7)
                        for w in (output, target))
        total = total + torch.linalg.norm(s_tgt - s_out) / torch.linalg.norm(s_tgt) + F.l1_loss(s_out.log(), s_tgt.log())
    return total / 3


def train_vocoder(vocoder, mels: torch.Tensor, waves: torch.Tensor, features: LogMel, settings: AudioDecoderSettings,
                  progress: bool) -> list[dict]:
    """Step 1: random crops of the training sounds; the vocoder rebuilds each crop's waveform from its spectrogram."""
    g = torch.Generator().manual_seed(settings.seed + 1)
    crop = settings.vocoder_frames

    def loss_fn():
        idx = torch.randint(len(mels), (settings.vocoder_batch,), generator=g)
        start = torch.randint(0, mels.shape[1] - crop + 1, (1,), generator=g).item()
        out = vocoder(mels[idx, start : start + crop])
        target = waves[idx, start * HOP : (start + crop) * HOP]
        mel = F.l1_loss(features(out), mels[idx, start : start + crop])
        stft = stft_loss(out, target)
        return stft + mel, {"mel": mel, "stft": stft}

    vocoder.train()
    history = train_loop(loss_fn, list(vocoder.named_parameters()), settings.vocoder_steps, settings.vocoder_lr,
                         betas=(0.8, 0.99), warmup=50, floor=0.1, grad_clip=5.0, desc="vocoder", progress=progress)
    vocoder.eval().requires_grad_(False)
    return history


def _read(waves, items) -> dict[str, float]:
    return reader.accuracy([reader.read_audio(np.asarray(w, dtype=np.float64), SAMPLE_RATE) for w in waves], items)


@torch.no_grad()
def measure_sounding(pipe, items: list[tw.ToyItem], steps: int, guidance: float, seed: int = 0) -> dict:
    """What the reader hears in sounds generated from `items`' own captions (the decoder's ceiling)."""
    start = time.perf_counter()
    audios = pipe([it.caption for it in items], num_inference_steps=steps, guidance_scale=guidance,
                  audio_length_in_s=SECONDS, generator=torch.Generator().manual_seed(seed)).audios
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    held = [k for k, it in enumerate(items) if it.obj.held_out]
    return {"all": _read(audios, items), "seconds_per_sound": seconds,
            "held_out_pairs": _read([audios[k] for k in held], [items[k] for k in held])}


def train_audio_decoder(settings: AudioDecoderSettings | None = None, progress: bool = True):
    """All three steps; returns (the AudioLDMPipeline, the measured numbers, the LogMel)."""
    settings = settings or AudioDecoderSettings()
    tok = tiny_decoder_tokenizer()
    text, vae, unet, vocoder = trained_audio_components(len(tok))
    items = tw.sample_items("audio", settings.renders, seed=settings.seed, split="train")
    test = tw.sample_items("audio", settings.eval_items, seed=settings.seed + 1, split="test")
    waves = sounds(items)
    features = LogMel().fit(waves)
    mels = features(waves)
    numbers: dict = {"renders": _read(sounds(test).numpy(), test)}
    clock = time.perf_counter()
    history = train_vocoder(vocoder, mels, waves, features, settings, progress)
    numbers["vocoder_loss"] = (history[0]["loss"], float(np.mean([h["loss"] for h in history[-50:]])))
    numbers["vocoder_seconds"] = time.perf_counter() - clock
    with torch.no_grad():
        test_mels = features(sounds(test))
        numbers["vocoded"] = _read(vocoder(test_mels).numpy(), test)
    clock = time.perf_counter()
    history = train_vae(vae, mels[:, None], settings, progress, seed_offset=2, desc="mel VAE")
    numbers["vae_mse"] = (history[0]["mse"], float(np.mean([h["mse"] for h in history[-50:]])))
    numbers["vae_seconds"] = time.perf_counter() - clock
    with torch.no_grad():
        latents = torch.cat([vae.encode(mels[i : i + 256, None]).latent_dist.mode() for i in range(0, len(mels), 256)])
        vae.register_to_config(scaling_factor=float(1 / latents.std()))
        rec = vae.decode(vae.encode(test_mels[:, None]).latent_dist.mode()).sample[:, 0]
        numbers["vae_vocoded"] = _read(vocoder(rec).numpy(), test)
        captions = sorted({it.caption for it in items})
        vectors = caption_targets(text, tok, captions + [""])  # as AudioLDMPipeline computes them
    condition_of = torch.tensor([captions.index(it.caption) for it in items])
    clock = time.perf_counter()
    history = train_denoiser(unet, latents * vae.config.scaling_factor, vectors, condition_of,
                             lambda u, x, t, c: u(x, t, encoder_hidden_states=None, class_labels=c).sample,
                             steps=settings.unet_steps, batch=settings.unet_batch, lr=settings.unet_lr,
                             drop=settings.drop_caption, gamma=settings.gamma, seed=settings.seed + 3,
                             desc="audio UNet", progress=progress)
    losses = [h["loss"] for h in history]
    numbers["unet_loss"] = (float(np.mean(losses[:50])), float(np.mean(losses[-100:])))
    numbers["unet_seconds"] = time.perf_counter() - clock
    pipe = trained_audio_pipeline(text, vae, unet, vocoder, tok)
    numbers["sounding"] = measure_sounding(pipe, test, settings.eval_steps, settings.eval_guidance)
    numbers["parameters"] = {name: sum(p.numel() for p in m.parameters()) for name, m in
                             (("VAE", vae), ("UNet", unet), ("vocoder", vocoder))}
    return pipe, numbers, features


def result_lines(n: dict) -> list[str]:
    s = n["sounding"]
    return [
        "parameters: " + ", ".join(f"{k} {v:,}" for k, v in n["parameters"].items()) + " (the CLAP text encoder: shipped)",
        f"the reader on the held-out renders themselves: {percent(n['renders'])}",
        f"vocoder ({n['vocoder_seconds']:.0f} s): loss {n['vocoder_loss'][0]:.3f} -> {n['vocoder_loss'][1]:.3f}; "
        f"the reader on held-out sounds rebuilt from their spectrograms: {percent(n['vocoded'])}",
        f"mel VAE ({n['vae_seconds']:.0f} s): reconstruction MSE {n['vae_mse'][0]:.4f} -> {n['vae_mse'][1]:.4f}; "
        f"through the VAE and the vocoder: {percent(n['vae_vocoded'])}",
        f"UNet ({n['unet_seconds']:.0f} s): loss {n['unet_loss'][0]:.3f} -> {n['unet_loss'][1]:.3f}",
        f"sounded from held-out captions ({s['seconds_per_sound'] * 1000:.0f} ms a {SECONDS:.0f}-s sound): "
        f"{percent(s['all'])}; held-out colour+shape pairs: {percent(s['held_out_pairs'])}",
    ]


def build_tiny_audio_decoder(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny audio-decoder`: train, write `out/tiny_audio_decoder.safetensors`."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    settings = AudioDecoderSettings.quick() if quick else AudioDecoderSettings()
    with torch_threads(2):
        pipe, numbers, features = train_audio_decoder(settings)
    path = out / AUDIO_DECODER_WEIGHTS
    meta = {"build": json.dumps({"settings": dataclasses.asdict(settings), "scaling_factor": pipe.vae.config.scaling_factor,
                                 "mel_mean": features.mean, "mel_std": features.std}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_safetensors(decoder_state(pipe, ("vae", "unet", "vocoder")), tmp, meta)
    return [path], result_lines(numbers)
