"""The tiny AudioLDM (tiny/pretrain/audio_decoder.py): its spectrogram, its STFT loss and its build end to end, at a few steps."""

import numpy as np
import pytest
import torch

from nextgpt_mini.cli import main
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.decoders import HOP, MEL_BANDS, load_trained_audio_pipeline
from nextgpt_mini.tiny.pretrain.audio_decoder import LogMel, sounds, stft_loss
from nextgpt_mini.tiny.registry import AUDIO_DECODER_WEIGHTS


def test_the_spectrogram_puts_a_tone_in_the_band_of_its_pitch():
    items = tw.sample_items("audio", 40, seed=3, split="any")
    mels = LogMel().fit(sounds(items))(sounds(items))
    assert mels.shape == (40, 16000 // HOP, MEL_BANDS)
    assert abs(float(mels.mean())) < 1e-3 and abs(float(mels.std()) - 1) < 1e-3  # standardised by what `fit` measured
    peak = {}
    for it, mel in zip(items, mels):
        if it.obj.sound == "steady tone":
            peak.setdefault(it.obj.colour, set()).add(int(mel.mean(0).argmax()))
    bands = [peak[c] for c in tw.PITCH_HZ if c in peak]
    assert all(len(b) == 1 for b in bands), peak  # one band per pitch, whatever the noise
    assert [min(b) for b in bands] == sorted(min(b) for b in bands)  # higher pitch, higher band


def test_the_stft_loss_is_zero_only_for_the_same_waveform():
    wave = sounds(tw.sample_items("audio", 2, seed=0))
    assert float(stft_loss(wave, wave)) < 1e-5
    assert float(stft_loss(0.5 * wave, wave)) > 0.1 and float(stft_loss(wave.flip(0), wave)) > 0.1


@pytest.mark.slow
def test_a_quick_audio_decoder_build_writes_weights_that_load_into_audioldm(tmp_path, capsys):
    assert main(["build-tiny", "audio-decoder", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for part in ("vocoder", "mel VAE", "UNet", "sounded from held-out captions"):
        assert part in out, out
    pipe = load_trained_audio_pipeline(tmp_path / AUDIO_DECODER_WEIGHTS)
    assert type(pipe).__name__ == "AudioLDMPipeline"
    audio = pipe(["a high steady tone over white noise"], num_inference_steps=2, audio_length_in_s=1.0,
                 generator=torch.Generator().manual_seed(0)).audios
    assert audio.shape == (1, 16000) and np.isfinite(audio).all()


def test_a_missing_audio_weights_file_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-tiny audio-decoder"):
        load_trained_audio_pipeline(tmp_path / "nope.safetensors")
