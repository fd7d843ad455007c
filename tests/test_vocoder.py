"""The tiny AudioLDM's vocoder (`tiny/vocoder.py`): why a plain HiFi-GAN cannot hold a tone between
multiples of the frame rate, and that the sine bank lets it."""

import numpy as np
import pytest
import torch
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from nextgpt_mini.tiny.decoders import HOP, MEL_BANDS, SAMPLE_RATE, trained_vocoder
from nextgpt_mini.tiny.vocoder import SineBankHifiGan, sine_bank

SMALL = dict(model_in_dim=MEL_BANDS, sampling_rate=SAMPLE_RATE, upsample_initial_channel=32, upsample_rates=[8, 5, 4],
             upsample_kernel_sizes=[16, 15, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
             normalize_before=False)


def test_sine_bank_lies_on_the_grid_through_its_anchor():
    bank = sine_bank(200.0, 900.0, per_octave=12)
    assert bank[0] >= 200.0 and bank[-1] <= 900.0
    assert any(abs(f - 220.0) < 1e-9 for f in bank) and any(abs(f - 880.0) < 1e-6 for f in bank)
    assert np.allclose(np.diff(np.log2(bank)), 1 / 12)


def test_plain_hifigan_repeats_every_hop_on_a_steady_spectrogram():
    """The lesson: frame-shift equivariance. One spectrogram frame repeated gives a waveform with
    period HOP (away from the zero-padded ends), so only multiples of 100 Hz."""
    torch.manual_seed(0)
    plain = SpeechT5HifiGan(SpeechT5HifiGanConfig(**SMALL)).eval()
    steady = torch.randn(1, MEL_BANDS).repeat(40, 1)[None]
    with torch.no_grad():
        wave = plain(steady)[0]
    middle = wave[10 * HOP : 30 * HOP]
    assert middle.abs().max() > 0
    assert torch.allclose(middle[HOP:], middle[:-HOP], atol=1e-6 * float(middle.abs().max()) + 1e-9)


def test_sine_bank_vocoder_sounds_a_steady_tone_off_the_frame_grid():
    """With one bank sine turned up (466 Hz, not a multiple of 100), the output is no longer
    hop-periodic and its spectral peak is that sine."""
    torch.manual_seed(0)
    voc = SineBankHifiGan(SpeechT5HifiGanConfig(**SMALL, sine_bank_hz=[466.16, 700.0])).eval()
    with torch.no_grad():
        voc.sine_gain[-1].bias.copy_(torch.tensor([4.0, -30.0]))
        voc.sine_gain[-1].weight.zero_()
        wave = voc(torch.zeros(40, MEL_BANDS)).numpy()
    assert wave.shape == (40 * HOP,)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    peak_hz = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)[spectrum.argmax()]
    assert abs(peak_hz - 466.16) < 5, peak_hz
    assert np.abs(wave[HOP:] - wave[:-HOP]).max() > 1.0


def test_the_tiny_vocoder_outputs_one_hop_a_frame_batched_or_not():
    voc = trained_vocoder().eval()
    with torch.no_grad():
        assert voc(torch.randn(2, 25, MEL_BANDS)).shape == (2, 25 * HOP)
        assert voc(torch.randn(25, MEL_BANDS)).shape == (25 * HOP,)


def test_a_bank_is_required():
    with pytest.raises(ValueError, match="sine_bank_hz"):
        SineBankHifiGan(SpeechT5HifiGanConfig(**SMALL))
