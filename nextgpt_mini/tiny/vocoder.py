"""Chapter 05: the tiny AudioLDM's vocoder: HiFi-GAN with a bank of sines it can turn up and down.

A HiFi-GAN is fully convolutional over spectrogram frames: shift its input by one frame and its
output shifts by one hop (160 samples, 10 ms). Given the same frame over and over, as a steady
tone's spectrogram is, it can only answer with a waveform that repeats every hop, whose partials
are multiples of 100 Hz. Trained on the toy world's sounds, the plain tiny HiFi-GAN did exactly
that: a falling chirp came out as a staircase of 100-Hz steps, and the reader heard the chirps as
steady tones (BUILD_RESULTS.md, History). Neural source-filter vocoders
(NSF, and the NSF-HiFiGAN of singing-voice synthesis) fix this with a sine excitation; here the
excitation is a fixed bank of sines an eighth of a tone apart, whose loudness a small network reads
off each spectrogram frame. The HiFi-GAN part makes the rest (the coloured noise, the onsets).
It stays a `SpeechT5HifiGan`, so `AudioLDMPipeline` calls it as it calls AudioLDM's own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, SpeechT5HifiGan, SpeechT5HifiGanConfig

# A saved pipeline names this module as the vocoder's library; diffusers finds how to load a
# component by looking its base classes up in that library's namespace, so the name must be here.
__all__ = ["PreTrainedModel", "SineBankHifiGan", "sine_bank"]


def sine_bank(low_hz: float, high_hz: float, per_octave: int = 48, anchor_hz: float = 220.0) -> list[float]:
    """Frequencies from `low_hz` to `high_hz`, `per_octave` to an octave, on the grid through `anchor_hz`."""
    first = math.ceil(per_octave * math.log2(low_hz / anchor_hz))
    last = math.floor(per_octave * math.log2(high_hz / anchor_hz))
    return [anchor_hz * 2 ** (k / per_octave) for k in range(first, last + 1)]


class SineBankHifiGan(SpeechT5HifiGan):
    """`SpeechT5HifiGan` plus `config.sine_bank_hz`: waveform = HiFi-GAN output + sum over the bank
    of gain(frame) x sin(2 pi f t), the gains read from the spectrogram and interpolated per sample."""

    def __init__(self, config: SpeechT5HifiGanConfig):
        super().__init__(config)
        bank = list(getattr(config, "sine_bank_hz", None) or [])
        if not bank:
            raise ValueError("SineBankHifiGan: config.sine_bank_hz must list the bank's frequencies in Hz")
        self.sine_gain = nn.Sequential(
            nn.Conv1d(config.model_in_dim, 128, kernel_size=3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv1d(128, len(bank), kernel_size=1),
        )
        with torch.no_grad():
            self.sine_gain[-1].bias.fill_(-6.0)  # start quiet: softplus(-6) = 0.0025 a sine

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """[batch, frames, bands] -> [batch, frames x hop] (unbatched [frames, bands] -> [samples])."""
        residual = super().forward(spectrogram)  # the HiFi-GAN itself
        frames = (spectrogram if spectrogram.dim() == 3 else spectrogram[None]).transpose(2, 1)
        if self.config.normalize_before:
            frames = (frames - self.mean[:, None]) / self.scale[:, None]
        samples = residual.shape[-1]
        gains = F.interpolate(F.softplus(self.sine_gain(frames)), size=samples, mode="linear", align_corners=False)
        tone = (gains * self.sines(samples, gains.dtype)).sum(1)
        return residual + (tone if spectrogram.dim() == 3 else tone[0])

    def sines(self, samples: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The bank [sines, samples], phases computed in float64 so long sounds stay in tune. (From the
        config each call, not a buffer: `from_pretrained` builds models on the meta device and
        would leave a non-persistent buffer uninitialised.)"""
        device = self.conv_post.weight.device
        where = torch.device("cpu") if device.type == "mps" else device  # MPS has no float64
        hz = torch.tensor(self.config.sine_bank_hz, dtype=torch.float64, device=where)
        t = torch.arange(samples, dtype=torch.float64, device=where) / self.config.sampling_rate
        return torch.sin(2 * math.pi * ((hz[:, None] * t) % 1.0)).to(dtype).to(device)
