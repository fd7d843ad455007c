"""Chapter 01: ImageBind's audio transform, without torchaudio.

float samples in [-1, 1] -> resample to 16 kHz (torchaudio's windowed-sinc algorithm)
-> ConstantClipsPerVideoSampler clips -> per clip: subtract the mean, Kaldi fbank (torchaudio's
formula; cross-checked against kaldi-native-fbank in the tests), zero-pad / cut to the target
frame count, [mel, frames] -> (x + 4.268) / 9.138  =>  float32 [clips, 1, mel, frames]

Files are decoded by soundfile (wav/flac/ogg) or PyAV (anything else, a video's soundtrack too).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.processing.clips import clip_timepoints
from nextgpt_mini.processing.errors import MediaError, check_file, decode_error

__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_MEAN",
    "AUDIO_STD",
    "audio_to_tensor",
    "kaldi_fbank",
    "load_audio",
    "read_audio",
    "resample",
    "waveform2melspec",
]

AUDIO_MEAN = -4.268  # ImageBind's fbank statistics (load_and_transform_audio_data defaults)
AUDIO_STD = 9.138
FBANK_FRAME_LENGTH_MS = 25.0
FBANK_FRAME_SHIFT_MS = 10.0

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3", "m4a")
_SOUNDFILE_EXTENSIONS = ("wav", "flac", "ogg")


def read_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decode an audio file (or a video's first audio track) -> (float32 [channels, samples] in
    [-1, 1], sample rate). Integer PCM is scaled by 1/2^(bits-1), as torchaudio.load does.

    wav/flac/ogg go through soundfile (libsndfile); anything else, or a file soundfile refuses,
    through PyAV (FFmpeg).
    """
    p = check_file(path)
    ext = p.suffix.lower().lstrip(".")
    sf_error: BaseException | None = None
    if ext in _SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            data, sr = sf.read(str(p), dtype="float32", always_2d=True)
            return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as exc:
            sf_error = exc
    try:
        return _read_audio_pyav(p)
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises FFmpegError subclasses, OSError, ValueError...
        if sf_error is not None:
            raise MediaError(
                f"{p}: cannot decode the audio; the file looks truncated or corrupt "
                f"(soundfile: {sf_error}; PyAV: {type(exc).__name__}: {exc})"
            ) from exc
        raise decode_error(p, "decode the audio", exc) from exc


def _read_audio_pyav(p: Path) -> tuple[torch.Tensor, int]:
    import av

    with av.open(str(p)) as container:
        if not container.streams.audio:
            raise MediaError(f"{p}: has no audio track")
        stream = container.streams.audio[0]
        # Planar float keeps the layout and rate of the source: [channels, samples] per frame.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = None
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    rate = rate or stream.rate
    if not chunks or not rate:
        raise MediaError(f"{p}: the audio track contains no samples")
    data = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(data)), int(rate)


@functools.lru_cache(maxsize=8)
def _sinc_resample_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """torchaudio.functional.resample's default kernel (sinc_interp_hann, lowpass_filter_width 6,
    rolloff 0.99) for already gcd-reduced rates, computed in float32 as torchaudio does for a
    float32 waveform."""
    width_zeros, rolloff = 6, 0.99
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float32)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new + idx
    t *= base
    t = t.clamp_(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t *= math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernel *= window * (base / orig)
    return kernel, width


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling of [..., samples] float32, numerically the algorithm of
    `torchaudio.functional.resample(waveform, orig_sr, new_sr)` that ImageBind calls (windowed
    sinc, Hann window, 6 zero crossings, roll-off 0.99), written again in plain torch.
    Output length ceil(samples * new_sr / orig_sr)."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return waveform
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    if new * (2 * math.ceil(6 * orig / (min(orig, new) * 0.99)) + orig) > 50_000_000:
        raise ValueError(
            f"cannot resample {orig_sr} Hz -> {new_sr} Hz: the rates share no large common factor, "
            "so the polyphase kernel would be enormous; convert the file to a common rate first"
        )
    kernel, width = _sinc_resample_kernel(orig, new)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1]).to(torch.float32)
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    # torchaudio: torch.ceil(torch.as_tensor(new * length / orig)) -- a float32 ceil, kept as is.
    target = int(torch.ceil(torch.as_tensor(new * length / orig)).long())
    return out[..., :target].reshape(shape[:-1] + (-1,))


def _mel_scale(freq):
    return 1127.0 * (1.0 + freq / 700.0).log()


def _mel_scale_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=8)
def _mel_banks(num_bins: int, padded_window_size: int, sample_rate: float) -> torch.Tensor:
    """Kaldi's triangular mel filters (low 20 Hz, high = Nyquist, no VTLN) as torchaudio builds
    them, with its zero column for the Nyquist bin: float32 [num_bins, padded_window_size // 2 + 1].

    Unlike Kaldi (and kaldi-native-fbank), torchaudio accepts filters that catch no FFT bin: at
    16 kHz with a 512-point FFT, ImageBind's 128 bins include a few such empty low bins, which
    always read log(FLT_EPSILON) = -15.94. Kaldi refuses that configuration outright
    ("You may have set num_mel_bins too large"), so this is computed here, not by a Kaldi port.
    """
    if num_bins <= 3:
        raise ValueError(f"Kaldi fbank needs more than 3 mel bins, got {num_bins}")
    num_fft_bins = padded_window_size / 2
    nyquist = 0.5 * sample_rate
    low_freq, high_freq = 20.0, nyquist
    fft_bin_width = sample_rate / padded_window_size
    mel_low, mel_high = _mel_scale_scalar(low_freq), _mel_scale_scalar(high_freq)
    mel_delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + index * mel_delta
    center = mel_low + (index + 1.0) * mel_delta
    right = mel_low + (index + 2.0) * mel_delta
    mel = _mel_scale(fft_bin_width * torch.arange(num_fft_bins)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(up, down)).to(torch.float32)
    return F.pad(banks, (0, 1), mode="constant", value=0.0)


def kaldi_fbank(waveform: torch.Tensor | np.ndarray, sample_rate: int, num_mel_bins: int) -> torch.Tensor:
    """Log mel filterbank of a 1-D float waveform -> float32 [frames, num_mel_bins]: the numbers of
    `torchaudio.compliance.kaldi.fbank(w[None], htk_compat=True, sample_frequency=sr,
    use_energy=False, window_type='hanning', num_mel_bins=m, dither=0.0, frame_length=25,
    frame_shift=10)`, ImageBind's call, with the same float32 operations in the same order.

    Kaldi recipe: 25 ms frames every 10 ms that fit entirely (snip_edges), per-frame DC removal,
    pre-emphasis 0.97, symmetric Hann window, zero-padding to a power of two, power spectrum,
    triangular mel filters 20 Hz .. Nyquist, log floored at FLT_EPSILON.

    Scale: the samples are used as given; ImageBind gives torchaudio.load's [-1, 1] floats (Kaldi's
    command-line tools read int16-valued samples instead, which would put every value
    2 * ln(32768) = 20.79 higher). kaldi-native-fbank, fed the same [-1, 1] floats, gives the same
    numbers to float rounding wherever Kaldi accepts the bin count (it rejects 128 bins at
    16 kHz, see `_mel_banks`); tests/test_preprocess.py checks both.
    """
    x = torch.as_tensor(np.asarray(waveform, dtype=np.float32) if not torch.is_tensor(waveform) else waveform)
    x = x.to(torch.float32).reshape(-1).contiguous()
    shift = int(sample_rate * FBANK_FRAME_SHIFT_MS * 0.001)
    size = int(sample_rate * FBANK_FRAME_LENGTH_MS * 0.001)
    padded = 1 if size == 0 else 2 ** (size - 1).bit_length()
    if x.numel() < size:
        raise ValueError(
            f"waveform has {x.numel()} samples, fewer than one {FBANK_FRAME_LENGTH_MS:g} ms frame ({size})"
        )
    num_frames = 1 + (x.numel() - size) // shift
    frames = x.as_strided((num_frames, size), (shift, 1))
    frames = frames - torch.mean(frames, dim=1).unsqueeze(1)  # remove_dc_offset
    previous = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
    frames = frames - 0.97 * previous[:, :-1]  # pre-emphasis
    frames = frames * torch.hann_window(size, periodic=False, dtype=torch.float32).unsqueeze(0)
    if padded != size:
        frames = F.pad(frames.unsqueeze(0), (0, padded - size), mode="constant", value=0).squeeze(0)
    spectrum = torch.fft.rfft(frames).abs().pow(2.0)
    energies = torch.mm(spectrum, _mel_banks(int(num_mel_bins), padded, float(sample_rate)).T)
    return torch.max(energies, torch.tensor(torch.finfo(torch.float32).eps)).log()


def waveform2melspec(
    waveform: torch.Tensor, sample_rate: int, num_mel_bins: int, target_length: int, channel: int = 0
) -> torch.Tensor:
    """ImageBind's waveform2melspec on a [channels, samples] clip -> [1, mel, target_length].

    Like ImageBind it subtracts the clip mean IN PLACE (over all channels): when `waveform` is a
    view of the whole recording, overlapping clips see each other's subtraction, exactly as in
    ImageBind. torchaudio's fbank then reads channel 0 only (its `channel=-1` means "first").
    """
    waveform -= waveform.mean()
    fbank = kaldi_fbank(waveform[channel], sample_rate, num_mel_bins).transpose(0, 1)
    n_frames = fbank.shape[1]
    p = target_length - n_frames
    if p > 0:
        fbank = F.pad(fbank, (0, p), mode="constant", value=0.0)
    elif p < 0:
        fbank = fbank[:, :target_length]
    return fbank.unsqueeze(0)


def audio_to_tensor(
    waveform: torch.Tensor,
    sample_rate: int,
    cfg: EncoderConfig,
    *,
    channels: str = "first",
    source: str = "audio",
) -> torch.Tensor:
    """ImageBind's audio transform on a decoded [channels, samples] float waveform ->
    float32 [cfg.audio_clips, 1, cfg.audio_num_mel_bins, cfg.audio_target_len].

    channels="first" (default) is what ImageBind computes: torchaudio's fbank reads only the first
    channel of a multichannel file. channels="mean" mixes to mono first instead.
    """
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2 or waveform.shape[-1] == 0:
        raise MediaError(f"{source}: the audio contains no samples")
    if not torch.isfinite(waveform).all():
        raise MediaError(f"{source}: the audio contains NaN or infinite samples")
    if channels == "mean":
        waveform = waveform.mean(0, keepdim=True)
    elif channels != "first":
        raise ValueError(f"channels must be 'first' or 'mean', got {channels!r}")
    waveform = waveform.to(torch.float32).clone()
    sr = int(cfg.sample_rate)
    if int(sample_rate) != sr:
        waveform = resample(waveform, int(sample_rate), sr)
    n = waveform.shape[1]
    window = int(sr * FBANK_FRAME_LENGTH_MS * 0.001)
    if n < window:
        # ImageBind would stop on torchaudio's assertion (window larger than the waveform).
        raise MediaError(
            f"{source}: the audio is {n / sr * 1000:.1f} ms long, shorter than one "
            f"{FBANK_FRAME_LENGTH_MS:g} ms analysis frame; nothing to encode"
        )
    duration = n / sr
    if duration < cfg.audio_clip_duration:
        warnings.warn(
            f"{source}: the audio lasts {duration:.3f} s, shorter than one {cfg.audio_clip_duration:g} s clip; "
            f"each of the {cfg.audio_clips} clips is the whole recording, its filterbank zero-padded "
            f"to {cfg.audio_target_len} frames (as ImageBind does)",
            stacklevel=3,
        )
    mean = torch.tensor([AUDIO_MEAN], dtype=torch.float32)[:, None, None]
    std = torch.tensor([AUDIO_STD], dtype=torch.float32)[:, None, None]
    clips = []
    for start, end in clip_timepoints(duration, cfg.audio_clip_duration, cfg.audio_clips):
        view = waveform[:, int(start * sr) : int(end * sr)]  # a view: the in-place mean leaks, as in ImageBind
        mel = waveform2melspec(view, sr, cfg.audio_num_mel_bins, cfg.audio_target_len)
        clips.append(mel.sub_(mean).div_(std))
    return torch.stack(clips, dim=0)


def load_audio(path: str | os.PathLike, cfg: EncoderConfig, *, channels: str = "first") -> torch.Tensor:
    """Audio file (or a video's audio track) -> float32 [audio_clips, 1, mel_bins, target_len]."""
    p = check_file(path)
    waveform, sr = read_audio(p)
    return audio_to_tensor(waveform, sr, cfg, channels=channels, source=str(p))

