"""Media loaders that reproduce ImageBind's own preprocessing without torchvision or torchaudio.

ImageBind prepares its inputs in `imagebind/data.py` with torchvision, torchaudio, pytorchvideo
and decord. None of those can live next to the CPU torch this project uses (see
environment-notes.md), so this module redoes each step with PIL, soundfile / PyAV and plain
torch, in the same order and with the same float32 arithmetic:

image  `Image.open(...).convert("RGB")` -> Resize(S, BICUBIC) of the shorter side (torchvision on a
       PIL image = PIL's own antialiased bicubic resize) -> CenterCrop(S) -> [0, 1] -> CLIP
       mean/std  =>  [3, S, S]
audio  float samples in [-1, 1] -> resample to 16 kHz (torchaudio's windowed-sinc algorithm)
       -> ConstantClipsPerVideoSampler clips -> per clip: subtract the mean, Kaldi fbank
       (torchaudio's formula; cross-checked against kaldi-native-fbank in the tests), zero-pad /
       cut to the target frame count, [mel, frames] -> (x + 4.268) / 9.138
       =>  [clips, 1, mel, frames]
video  decode (PyAV) -> ConstantClipsPerVideoSampler clips -> per clip `video_frames` frames by
       UniformTemporalSubsample -> / 255 -> ShortSideScale(S) (bilinear) -> CLIP mean/std ->
       SpatialCrop(S, num_crops)  =>  [clips * crops, 3, frames, S, S]
text   CLIP BPE ids identical to ImageBind's SimpleTokenizer (sot 49406, eot 49407, pad 0), or a
       `tokenizers` tokenizer.json shipped with the package for the tiny profile.

Every size comes from `EncoderConfig`, so the tiny and paper profiles run the same code. Where this
module departs from ImageBind it says so next to the code (search for "ImageBind would").
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import itertools
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini import utils
from nextgpt_mini.config import EncoderConfig

__all__ = [
    "AUDIO_EXTENSIONS",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipBPETokenizer",
    "MediaError",
    "MediaNotFoundError",
    "PackageTokenizer",
    "audio_to_tensor",
    "center_crop_box",
    "clip_bpe_path",
    "clip_timepoints",
    "image_to_tensor",
    "kaldi_fbank",
    "load_audio",
    "load_image",
    "load_media",
    "load_text_tokenizer",
    "load_video",
    "modality_of",
    "read_audio",
    "resample",
    "resize_shorter_side_size",
    "short_side_scale",
    "spatial_crops",
    "waveform2melspec",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_MEAN = -4.268  # ImageBind's fbank statistics (load_and_transform_audio_data defaults)
AUDIO_STD = 9.138
FBANK_FRAME_LENGTH_MS = 25.0
FBANK_FRAME_SHIFT_MS = 10.0

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3", "m4a")
VIDEO_EXTENSIONS = ("mp4", "avi", "mov", "mkv", "webm")
_SOUNDFILE_EXTENSIONS = ("wav", "flac", "ogg")

# pytorchvideo's ConstantClipsPerVideoSampler spaced clip starts by (duration - clip) / clips in
# release 0.1.5 (PyPI) and by (duration - clip) / max(clips - 1, 1) on its main branch, which is
# what ImageBind's requirements pin (a git commit) and what puts the last clip at the very end.
CLIP_SPACING = "pytorchvideo-main"


class MediaError(ValueError):
    """A media file that cannot be turned into model input; the message names the file."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The file does not exist (catchable as MediaError, ValueError or FileNotFoundError)."""


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------
def modality_of(path: str | os.PathLike) -> str:
    """'image', 'audio' or 'video' from the file extension; MediaError for anything else."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    raise MediaError(
        f"{path}: unsupported file extension {('.' + ext) if ext else '(none)'}; supported: "
        f"image {', '.join(IMAGE_EXTENSIONS)}; audio {', '.join(AUDIO_EXTENSIONS)}; "
        f"video {', '.join(VIDEO_EXTENSIONS)}"
    )


def load_media(path: str | os.PathLike, cfg: EncoderConfig) -> tuple[str, torch.Tensor]:
    """Load one media file by its extension: ("image", [3,S,S]), ("audio", [clips,1,mel,T])
    or ("video", [clips*crops,3,frames,S,S])."""
    modality = modality_of(path)
    loader = {"image": load_image, "audio": load_audio, "video": load_video}[modality]
    return modality, loader(path, cfg)


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: the file is empty (0 bytes)")
    return p


def _fail(path: Path, what: str, exc: BaseException) -> MediaError:
    detail = str(exc).strip() or type(exc).__name__
    return MediaError(f"{path}: cannot {what}; the file looks truncated or corrupt ({type(exc).__name__}: {detail})")


# --------------------------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------------------------
def resize_shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_w, new_h) of torchvision's Resize(size): shorter side -> size, longer side
    int(size * long / short), in this order of float operations."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's CenterCrop(size): offsets int(round(d / 2)),
    Python's round-half-to-even included."""
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return left, top, left + size, top + size


def _to_rgb(img):
    """ImageBind's `.convert("RGB")`, except for high-bit-depth greyscale.

    PIL's convert clips 16-bit ('I;16*', 'I') and float ('F') pixels to 0..255, which turns a
    16-bit image white; ImageBind would pass that on. Here 16-bit values are scaled by 255/65535
    ('I' is read as 16-bit too: that is how PIL represents 16-bit PNG/TIFF greyscale), and
    'F' images are read as [0, 1] when they fit there, else clipped to 0..255.
    Everything else (L, 1, P, LA, PA, RGBA, CMYK, YCbCr, ...) goes through `.convert("RGB")`
    exactly as in ImageBind: alpha is dropped, not composited.
    """
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        arr8 = np.rint(np.clip(arr, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            arr = arr * 255.0
        arr8 = np.rint(np.clip(np.nan_to_num(arr), 0, 255)).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    return img.convert("RGB")


def image_to_tensor(img, size: int) -> torch.Tensor:
    """ImageBind's vision transform on an open PIL image -> float32 [3, size, size]."""
    from PIL import Image

    img = _to_rgb(img)
    new_w, new_h = resize_shorter_side_size(img.width, img.height, size)
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    box = center_crop_box(new_w, new_h, size)
    if box != (0, 0, new_w, new_h):
        img = img.crop(box)
    # ToTensor: uint8 HWC -> float CHW / 255; Normalize: in-place sub then div, float32.
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    mean = torch.as_tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return x.sub_(mean).div_(std)


def load_image(path: str | os.PathLike, cfg: EncoderConfig) -> torch.Tensor:
    """Image file -> float32 [3, cfg.image_size, cfg.image_size]."""
    from PIL import Image

    p = _check_file(path)
    try:
        with Image.open(p) as img:
            img.load()  # PIL opens lazily: force the decode here, where errors are caught
            with warnings.catch_warnings():
                # "Palette images with Transparency expressed in bytes should be converted to
                # RGBA": ImageBind converts straight to RGB too.
                warnings.filterwarnings("ignore", message="Palette images with Transparency")
                return image_to_tensor(img, cfg.image_size)
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise _fail(p, "read the image", exc) from exc


# --------------------------------------------------------------------------------------------
# Clip sampling (pytorchvideo's ConstantClipsPerVideoSampler, as driven by ImageBind)
# --------------------------------------------------------------------------------------------
def clip_timepoints(
    duration: float,
    clip_duration: float,
    clips_per_video: int,
    *,
    spacing: str = CLIP_SPACING,
) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of each clip, as ImageBind's `get_clip_timepoints` reads them out of
    ConstantClipsPerVideoSampler, with the same Fraction arithmetic.

    Starts are k * (max(duration - clip, 0) / max(clips - 1, 1)) for k = 0 .. clips-1
    (`spacing="pytorchvideo-0.1.5"`: divided by `clips` instead). A source shorter than one clip
    gets `clips` copies of (0, clip_duration).
    """
    if clips_per_video < 1:
        raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
    if spacing == "pytorchvideo-main":
        divisor = max(clips_per_video - 1, 1)
    elif spacing == "pytorchvideo-0.1.5":
        divisor = clips_per_video
    else:
        raise ValueError(f"spacing must be 'pytorchvideo-main' or 'pytorchvideo-0.1.5', got {spacing!r}")
    clip = Fraction(clip_duration)
    max_start = Fraction(max(duration - clip, 0))  # float - Fraction -> float, as in pytorchvideo
    step = Fraction(max_start, divisor)
    out = []
    index = 0
    while True:
        start = step * index
        out.append((start, start + clip))
        index += 1
        if index >= clips_per_video or step * index > max_start:
            return out


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------
def read_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decode an audio file (or a video's first audio track) -> (float32 [channels, samples] in
    [-1, 1], sample rate). Integer PCM is scaled by 1/2^(bits-1), as torchaudio.load does.

    wav/flac/ogg go through soundfile (libsndfile); anything else, or a file soundfile refuses,
    through PyAV (FFmpeg).
    """
    p = _check_file(path)
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
        raise _fail(p, "decode the audio", exc) from exc


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
    p = _check_file(path)
    waveform, sr = read_audio(p)
    return audio_to_tensor(waveform, sr, cfg, channels=channels, source=str(p))


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------
def short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
    """pytorchvideo's ShortSideScale on float32 [C, T, H, W]: bilinear, align_corners=False,
    no antialiasing; the long side becomes floor(long / short * size)."""
    _, _, h, w = x.shape
    if w < h:
        new_h, new_w = math.floor((float(h) / w) * size), size
    else:
        new_h, new_w = size, math.floor((float(w) / h) * size)
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)


def _uniform_crop_offsets(height: int, width: int, size: int, spatial_idx: int) -> tuple[int, int]:
    """(y, x) offsets of ImageBind's uniform_crop: 0/1/2 = left/centre/right along a wide frame,
    top/centre/bottom along a tall one (a square frame counts as wide)."""
    y = math.ceil((height - size) / 2)
    x = math.ceil((width - size) / 2)
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_idx]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_idx]
    return y, x


def spatial_crops(video: torch.Tensor, size: int, num_crops: int) -> list[torch.Tensor]:
    """ImageBind's SpatialCrop on one [C, T, H, W] clip: 3 crops (0, 1, 2) or 1 crop (centre)."""
    if num_crops == 3:
        indices = [0, 1, 2]
    elif num_crops == 1:
        indices = [1]
    else:
        raise ValueError(f"video_spatial_crops must be 1 or 3 (as in ImageBind's SpatialCrop), got {num_crops}")
    h, w = video.shape[-2:]
    out = []
    for idx in indices:
        y, x = _uniform_crop_offsets(h, w, size, idx)
        out.append(video[:, :, y : y + size, x : x + size])
    return out


def _uniform_temporal_subsample(n: int, num_samples: int) -> list[int]:
    """pytorchvideo's UniformTemporalSubsample indices: linspace(0, n-1, k).clamp.long();
    repeats frames when the clip has fewer than k."""
    idx = torch.linspace(0, n - 1, num_samples)
    return torch.clamp(idx, 0, n - 1).long().tolist()


def load_video(path: str | os.PathLike, cfg: EncoderConfig) -> torch.Tensor:
    """Video file -> float32 [video_clips * video_spatial_crops, 3, video_frames, S, S].

    Frame bookkeeping follows pytorchvideo's decord backend: frame count = number of packets in
    the video stream, fps = the stream's average frame rate, duration = count / fps; clip k holds
    frames ceil(fps * start) .. ceil(fps * end) - 1 (cut at the last frame), from which
    `video_frames` are picked uniformly. A video shorter than one clip (a single frame included)
    works: every clip covers the whole video and frames repeat when there are fewer than
    `video_frames`. Frames are decoded by PyAV to RGB24 (decord uses the same FFmpeg converter,
    but its scaler flags may differ by a grey level here and there).
    """
    import av

    p = _check_file(path)
    size = int(cfg.image_size)
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"{p}: has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        if num_frames == 0:
            raise MediaError(f"{p}: the video stream contains no frames")
        if not rate or float(rate) <= 0:
            raise MediaError(f"{p}: the video stream has no usable frame rate")
        fps = float(rate)
        duration = float(num_frames) / fps
        wanted: list[list[int]] = []
        for start, end in clip_timepoints(duration, cfg.video_clip_duration, cfg.video_clips):
            first = math.ceil(fps * start)
            last = min(math.ceil(fps * end), num_frames)
            indices = list(range(first, last))
            if not indices:  # cannot happen with ConstantClipsPerVideoSampler's starts; be explicit
                raise MediaError(f"{p}: no frames between {float(start):.3f} s and {float(end):.3f} s")
            wanted.append([indices[k] for k in _uniform_temporal_subsample(len(indices), cfg.video_frames)])
        needed = {i for clip in wanted for i in clip}
        decoded: dict[int, np.ndarray] = {}
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            last_needed = max(needed)
            for i, frame in enumerate(container.decode(stream)):
                if i in needed:
                    decoded[i] = frame.to_ndarray(format="rgb24")
                if i >= last_needed:
                    break
    except MediaError:
        raise
    except Exception as exc:  # FFmpegError subclasses, OSError, ValueError, ...
        raise _fail(p, "decode the video", exc) from exc
    if not decoded:
        raise MediaError(f"{p}: no video frame could be decoded")
    missing = sorted(needed - decoded.keys())
    if missing:
        # The container announced more packets than the decoder produced frames; decord would
        # fail or repeat here. Use the nearest decoded frame before each missing one.
        warnings.warn(f"{p}: frames {missing} could not be decoded; using the nearest earlier frame", stacklevel=2)
        have = sorted(decoded)
        for i in missing:
            before = [j for j in have if j <= i]
            decoded[i] = decoded[before[-1] if before else have[0]]

    mean = torch.as_tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None, None]
    std = torch.as_tensor(CLIP_STD, dtype=torch.float32)[:, None, None, None]
    out: list[torch.Tensor] = []
    for clip in wanted:
        frames = torch.from_numpy(np.stack([decoded[i] for i in clip]))  # [T, H, W, 3] uint8
        x = frames.to(torch.float32).permute(3, 0, 1, 2)  # decord -> thwc_to_cthw -> float32
        x = x / 255.0
        x = short_side_scale(x, size)
        x = x.sub_(mean).div_(std)
        out.extend(spatial_crops(x, size, cfg.video_spatial_crops))
    return torch.stack(out, dim=0).contiguous()


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
CLIP_BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
_CLIP_BPE_ENV = "NEXTGPT_MINI_CLIP_BPE"


def clip_bpe_path(path: str | os.PathLike | None = None) -> Path:
    """The CLIP BPE merges file: `path`, else $NEXTGPT_MINI_CLIP_BPE, else the copy inside the
    installed `imagebind` package (located without importing it)."""
    if path is None:
        path = os.environ.get(_CLIP_BPE_ENV) or None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"CLIP BPE vocabulary not found at {p}")
        return p
    locations: list[str] = []
    module = sys.modules.get("imagebind")
    if module is not None:
        locations.extend(getattr(module, "__path__", []) or [])
    try:
        spec = importlib.util.find_spec("imagebind")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        locations.extend(spec.submodule_search_locations)
    for loc in locations:
        candidate = Path(loc) / "bpe" / CLIP_BPE_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the CLIP BPE vocabulary ({CLIP_BPE_FILENAME}) was not found. Install Meta's ImageBind code, "
        "which ships it, without its dependencies: `pip install --no-deps imagebind-unofficial==0.1.1`; "
        f"or pass bpe_path=... to load_text_tokenizer, or set ${_CLIP_BPE_ENV} to the file"
    )


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


class ClipBPETokenizer:
    """CLIP's BPE tokenizer, id for id ImageBind's `SimpleTokenizer`.

    Text is cleaned (ftfy, HTML unescaped twice, whitespace collapsed, lower-cased), split by
    CLIP's pattern, byte-encoded and merged by rank. Each row is [sot] + ids, cut to
    context_length - 1, then [eot]: eot always ends the sequence (at the last position when the
    text is too long); the rest is padded with 0.
    """

    SOT, EOT = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, bpe_path: str | os.PathLike, context_length: int = 77) -> None:
        import regex

        with gzip.open(bpe_path, "rb") as fh:
            lines = fh.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [self.SOT, self.EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.bpe_ranks = {pair: i for i, pair in enumerate(merges)}
        self.cache: dict[str, list[str]] = {self.SOT: [self.SOT], self.EOT: [self.EOT]}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._regex = regex
        self.context_length = int(context_length)
        self.sot_id = self.encoder[self.SOT]
        self.eot_id = self.encoder[self.EOT]
        self.pad_id = 0
        self.vocab_size = len(vocab)

    def _clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._regex.sub(r"\s+", " ", text).strip().lower()

    def _bpe(self, token: str) -> list[str]:
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(itertools.pairwise(word))
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, math.inf))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        if len(token) > 1:  # SimpleTokenizer leaves single characters uncached; harmless either way
            self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self.pattern.findall(self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(token))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.sot_id] + self.encode(text))[: self.context_length - 1] + [self.eot_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result


class PackageTokenizer:
    """A `tokenizers` tokenizer.json with "<pad>", "<s>" and "</s>": each row is
    <s> ids </s> (cut so that </s> stays, at the last position when too long), padded with <pad>."""

    def __init__(self, tokenizer_file: str | os.PathLike, context_length: int) -> None:
        from tokenizers import Tokenizer

        self.path = Path(tokenizer_file)
        self.tokenizer = Tokenizer.from_file(str(self.path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        ids = {tok: self.tokenizer.token_to_id(tok) for tok in ("<pad>", "<s>", "</s>")}
        absent = [tok for tok, i in ids.items() if i is None]
        if absent:
            raise ValueError(f"{self.path}: the tokenizer has no {', '.join(absent)} token")
        self.pad_id, self.sot_id, self.eot_id = ids["<pad>"], ids["<s>"], ids["</s>"]
        self.context_length = int(context_length)
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {context_length}")
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        result = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        if not texts:
            return result
        for row, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = ([self.sot_id] + enc.ids)[: self.context_length - 1] + [self.eot_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result


@functools.lru_cache(maxsize=4)
def _clip_tokenizer(path: str, context_length: int) -> ClipBPETokenizer:
    return ClipBPETokenizer(path, context_length)


def load_text_tokenizer(
    cfg: EncoderConfig, bpe_path: str | os.PathLike | None = None
) -> Callable[[str | Sequence[str]], torch.Tensor]:
    """Tokenizer for the encoder's text tower: list[str] -> LongTensor [N, cfg.context_length].

    cfg.tokenizer: "clip-bpe" (ImageBind's CLIP BPE; the vocabulary file comes from `bpe_path`,
    $NEXTGPT_MINI_CLIP_BPE or the installed imagebind package), "package:<folder>" (a
    tokenizer.json shipped in nextgpt_mini/assets), or a local folder / tokenizer.json path.
    """
    name = cfg.tokenizer
    if name == "clip-bpe":
        return _clip_tokenizer(str(clip_bpe_path(bpe_path)), int(cfg.context_length))
    if name.startswith("package:"):
        location = utils.asset_path(name)
    else:
        location = Path(name)
        if not location.exists():
            raise ValueError(
                f"unknown text tokenizer {name!r}: expected 'clip-bpe', 'package:<folder>' or a path to a "
                "tokenizer.json or its folder"
            )
    file = location / "tokenizer.json" if location.is_dir() else location
    if not file.is_file():
        raise FileNotFoundError(f"text tokenizer {name!r}: {file} not found")
    return PackageTokenizer(file, int(cfg.context_length))
