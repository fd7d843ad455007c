"""nextgpt_mini.processing: each loader against a hand-computed expectation on a small
synthetic file written into tmp_path."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import gzip
import html
import importlib.util
import io
import math
import sys
import types
import typing
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextgpt_mini import processing as pp
from nextgpt_mini import utils
from nextgpt_mini.profiles import load_profile

MEAN = torch.tensor(pp.CLIP_MEAN)[:, None, None]
STD = torch.tensor(pp.CLIP_STD)[:, None, None]
FBANK_PAD = (0.0 - pp.AUDIO_MEAN) / pp.AUDIO_STD  # a zero-padded fbank frame after normalisation


@pytest.fixture
def tiny():
    return load_profile("tiny").encoder


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo the CLIP normalisation of a [3, H, W] tensor -> uint8 [H, W, 3]."""
    return ((x * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------------------------
def test_resize_and_centre_crop_arithmetic():
    # torchvision Resize(224): shorter side -> 224, longer int(224 * long / short).
    assert pp.resize_shorter_side_size(300, 200, 224) == (336, 224)
    assert pp.resize_shorter_side_size(200, 300, 224) == (224, 336)
    assert pp.resize_shorter_side_size(301, 224, 224) == (301, 224)  # already there: no resize
    assert pp.resize_shorter_side_size(640, 480, 48) == (64, 48)
    # CenterCrop: offsets int(round(d / 2)), and Python rounds halves to even.
    assert pp.center_crop_box(336, 224, 224) == (56, 0, 280, 224)
    assert pp.center_crop_box(225, 224, 224) == (0, 0, 224, 224)  # round(0.5) = 0
    assert pp.center_crop_box(227, 224, 224) == (2, 0, 226, 224)  # round(1.5) = 2
    assert pp.center_crop_box(224, 301, 224) == (0, 38, 224, 262)  # round(38.5) = 38


def test_centre_crop_without_resize_keeps_exactly_the_middle_pixels(tmp_path, tiny):
    cfg = dataclasses.replace(tiny, image_size=224)
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, size=(224, 300, 3), dtype=np.uint8)  # short side already 224
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = pp.load_image(tmp_path / "wide.png", cfg)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_array_equal(to_uint8(out), wide[:, 38:262])  # (300 - 224) / 2 = 38

    tall = rng.integers(0, 256, size=(301, 224, 3), dtype=np.uint8)
    Image.fromarray(tall).save(tmp_path / "tall.png")
    np.testing.assert_array_equal(to_uint8(pp.load_image(tmp_path / "tall.png", cfg)), tall[38:262])


def test_300x200_resizes_to_336x224_and_keeps_original_columns_50_to_250(tmp_path, tiny):
    cfg = dataclasses.replace(tiny, image_size=224)
    img = np.zeros((200, 300, 3), dtype=np.uint8)
    img[:, :40] = (255, 0, 0)  # outside the crop: 336x224, columns 56..279 = original x 50..250
    img[:, 40:260] = (0, 255, 0)
    img[:, 260:] = (0, 0, 255)
    img[:, 45:47] = 0  # a dark line just outside the crop
    img[:, 52:54] = 0  # a dark line just inside: original x 52 -> resized 58 -> output column 2
    Image.fromarray(img).save(tmp_path / "bands.png")
    out = to_uint8(pp.load_image(tmp_path / "bands.png", cfg))
    assert out.shape == (224, 224, 3)
    green = out[..., 1].astype(int)
    # output column c samples the original at (c + 56 + 0.5) / 1.12, bicubic reach 2 px: the inside
    # line (x 52-53) darkens columns 2-4 only; the outside line and the red/blue bands never show.
    assert (green[:, 3] == 0).all() and (green[:, 2] < 100).all() and (green[:, 4] < 200).all()
    assert (green[:, :2] == 255).all() and (green[:, 5:] == 255).all()
    assert out[..., 0].max() == 0 and out[..., 2].max() == 0
    # the same numbers as PIL's bicubic resize (what torchvision calls on a PIL image) + crop
    ref = np.asarray(Image.fromarray(img).resize((336, 224), Image.Resampling.BICUBIC).crop((56, 0, 280, 224)))
    np.testing.assert_array_equal(out, ref)


def test_image_modes_load_to_3xSxS(tmp_path, tiny):
    s = tiny.image_size
    gray = Image.fromarray(np.full((40, 60), 77, dtype=np.uint8))
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)  # fully transparent: ImageBind's convert("RGB") drops alpha
    palette = Image.fromarray(np.full((40, 60, 3), (200, 100, 50), dtype=np.uint8)).quantize(colors=4)
    deep = Image.fromarray(np.full((40, 60), 128 * 257, dtype=np.uint16))  # 16-bit mid-grey
    assert deep.mode == "I;16"
    files = {
        "gray.png": (gray, (77, 77, 77)),
        "rgba.png": (Image.fromarray(rgba), (10, 20, 30)),
        "palette.gif": (palette, (200, 100, 50)),
        "deep.png": (deep, (128, 128, 128)),
        "deep.tif": (deep, (128, 128, 128)),
        "gray.jpg": (gray, (77, 77, 77)),
    }
    for name, (image, rgb) in files.items():
        image.save(tmp_path / name)
        out = pp.load_image(tmp_path / name, tiny)
        assert out.shape == (3, s, s), name
        pixels = to_uint8(out).reshape(-1, 3).astype(int)
        assert np.abs(pixels - np.array(rgb)).max() <= 2, (name, pixels[0])


# --------------------------------------------------------------------------------------------
# Clip sampling
# --------------------------------------------------------------------------------------------
def test_constant_clips_per_video_timepoints():
    def starts(tps):
        return [s for s, _ in tps]

    # step = (duration - clip) / (clips - 1): clips spread from the start to the very end
    assert starts(pp.clip_timepoints(10.0, 2, 5)) == [0, 2, 4, 6, 8]
    assert starts(pp.clip_timepoints(10.0, 2, 3)) == [0, 4, 8]
    assert pp.clip_timepoints(10.0, 2, 3)[-1] == (8, 10)
    assert starts(pp.clip_timepoints(5.0, 2, 3)) == [0, Fraction(3, 2), 3]
    assert pp.clip_timepoints(7.0, 2, 1) == [(0, 2)]
    # shorter than one clip: every clip is (0, clip_duration)
    assert pp.clip_timepoints(1.5, 2, 3) == [(0, 2)] * 3
    # pytorchvideo 0.1.5 (PyPI) divided by clips instead
    assert starts(pp.clip_timepoints(10.0, 2, 3, spacing="pytorchvideo-0.1.5")) == [0, Fraction(8, 3), Fraction(16, 3)]
    # durations are floats (samples / rate) and the arithmetic is exact Fractions of them
    assert pp.clip_timepoints(0.1 * 30, 1, 2)[1][0] == Fraction(0.1 * 30 - 1)


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------
def _write_wav(path, samples: np.ndarray, rate: int, subtype: str = "PCM_16"):
    import soundfile as sf

    sf.write(str(path), samples, rate, subtype=subtype)


def _knf_fbank(wave: np.ndarray, rate: int, bins: int) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.mel_opts.num_bins = bins
    opts.htk_compat = True
    opts.use_energy = False
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(rate, wave.astype(np.float32))
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def test_pure_tone_fbank_equals_kaldi_native_fbank_and_peaks_in_its_mel_bin(tmp_path, tiny):
    import soundfile as sf

    rate, bins, k = tiny.sample_rate, tiny.audio_num_mel_bins, 10

    # the tone sits on the centre of mel bin k: Kaldi mel = 1127 ln(1 + f / 700), 20 Hz .. Nyquist
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    delta = (mel(rate / 2) - mel(20.0)) / (bins + 1)
    f0 = 700.0 * (math.exp((mel(20.0) + (k + 1) * delta) / 1127.0) - 1.0)
    t = np.arange(rate) / rate  # 1 s = one tiny clip
    _write_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * f0 * t), rate)
    out = pp.load_audio(tmp_path / "tone.wav", tiny)
    assert out.shape == (tiny.audio_clips, 1, bins, tiny.audio_target_len)

    wave, _ = sf.read(str(tmp_path / "tone.wav"), dtype="float32")
    expected = _knf_fbank(wave - wave.mean(), rate, bins)  # ImageBind subtracts the clip mean first
    n = 1 + (rate - 400) // 160  # 98 frames of 25 ms every 10 ms
    assert expected.shape == (n, bins)
    fbank = out[0, 0] * pp.AUDIO_STD + pp.AUDIO_MEAN  # undo ImageBind's normalisation
    # equal to float32 rounding (the largest gaps sit in near-empty bins, log energy around -15)
    np.testing.assert_allclose(fbank[:, :n].T.numpy(), expected, rtol=1e-3, atol=1e-3)
    assert torch.allclose(out[0, 0, :, n:], torch.tensor(FBANK_PAD))  # zero-padded to 100 frames
    assert int(fbank[:, :n].mean(1).argmax()) == k
    # Scale: [-1, 1] floats, as torchaudio.load gives them; int16-valued samples would add 2 ln 32768.
    # (checked where the tone has energy; near-empty bins are float-rounding noise at any scale)
    louder = _knf_fbank((wave - wave.mean()) * 32768, rate, bins)
    loud = expected > -5
    assert loud[:, k].all()
    np.testing.assert_allclose((louder - expected)[loud], 2 * math.log(32768), atol=1e-2)


def test_stereo_44k_is_resampled_to_16k(tmp_path, tiny):
    n = 44101
    t = np.arange(n) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(n)], axis=1)
    _write_wav(tmp_path / "stereo.wav", stereo, 44100)
    wave, rate = pp.read_audio(tmp_path / "stereo.wav")
    assert (wave.shape, rate) == ((2, n), 44100)
    res = pp.resample(wave, 44100, 16000)
    assert res.shape == (2, math.ceil(n * 16000 / 44100)) == (2, 16001)
    spectrum = torch.fft.rfft(res[0, 1000:-1000]).abs()
    assert abs(float(spectrum.argmax()) * 16000 / (res.shape[1] - 2000) - 440) < 2
    assert abs(float(res[0, 1000:-1000].pow(2).mean().sqrt()) - 0.5 / math.sqrt(2)) < 0.01
    assert float(res[1].abs().max()) == 0.0

    out = pp.load_audio(tmp_path / "stereo.wav", tiny)
    assert out.shape == (2, 1, tiny.audio_num_mel_bins, tiny.audio_target_len)
    # ImageBind's fbank reads the first channel; "mean" mixes down first.
    _write_wav(tmp_path / "right.wav", stereo[:, ::-1], 44100)
    silent_left = pp.load_audio(tmp_path / "right.wav", tiny)
    floor = (math.log(torch.finfo(torch.float32).eps) - pp.AUDIO_MEAN) / pp.AUDIO_STD
    assert torch.allclose(silent_left[:, :, :, :50], torch.tensor(floor, dtype=torch.float32))
    mixed = pp.load_audio(tmp_path / "right.wav", tiny, channels="mean")
    assert float(mixed[0, 0, :, :50].max()) > 0.5


def test_short_audio_is_padded_with_a_warning(tmp_path, tiny):
    rate = tiny.sample_rate
    _write_wav(tmp_path / "short.flac", 0.3 * np.sin(np.arange(rate // 2) * 0.3), rate)
    with pytest.warns(UserWarning, match="padded"):
        out = pp.load_audio(tmp_path / "short.flac", tiny)
    n = 1 + (rate // 2 - 400) // 160  # 48 frames in 0.5 s
    assert out.shape == (2, 1, tiny.audio_num_mel_bins, tiny.audio_target_len)
    # both clips are the whole recording (equal up to the float residue of ImageBind's in-place
    # mean subtraction, which the second clip sees again)
    assert torch.allclose(out[0], out[1], atol=1e-3)
    assert torch.allclose(out[:, :, :, n:], torch.tensor(FBANK_PAD))
    assert not torch.allclose(out[:, :, :, n - 1], torch.tensor(FBANK_PAD))

    _write_wav(tmp_path / "blip.wav", np.zeros(100), rate)  # shorter than one 25 ms frame
    with pytest.raises(pp.MediaError, match="blip.wav"):
        pp.load_audio(tmp_path / "blip.wav", tiny)


def test_audio_track_of_an_mp4_goes_through_pyav(tmp_path, tiny):
    av = pytest.importorskip("av")
    path = tmp_path / "beep.mp4"
    rate = 22050
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        t = np.arange(rate) / rate
        samples = (0.4 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        for start in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    wave, got_rate = pp.read_audio(path)
    assert got_rate == rate and wave.shape[0] == 1 and abs(wave.shape[1] - rate) < 2048
    out = pp.load_audio(path, tiny)
    assert out.shape == (2, 1, tiny.audio_num_mel_bins, tiny.audio_target_len)


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------
def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    av = pytest.importorskip("av")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[3, ...] normalised -> grey level 0..255 (mean over channels)."""
    shape = (3,) + (1,) * (x.ndim - 1)
    return ((x * STD.reshape(shape) + MEAN.reshape(shape)) * 255).mean(0)


def test_video_spatial_crops_left_centre_right_and_top_centre_bottom(tmp_path, tiny):
    cfg = dataclasses.replace(tiny, image_size=16, video_clips=1, video_spatial_crops=3)
    levels = [30, 100, 170, 240]
    wide = np.zeros((8, 32, 64, 3), dtype=np.uint8)  # 8 frames, 32 high, 64 wide, 4 bands of 16 px
    for b, level in enumerate(levels):
        wide[:, :, 16 * b : 16 * (b + 1)] = level
    _write_video(tmp_path / "wide.mp4", wide, fps=8)
    out = pp.load_video(tmp_path / "wide.mp4", cfg)
    assert out.shape == (3, 3, 2, 16, 16)
    # ShortSideScale(16): 64x32 -> 32x16, bands 8 px; crops at x = 0, ceil(16 / 2) = 8, 16
    g = _grey(out.transpose(0, 1))  # [crops, T, H, W]
    for crop, (left, right) in enumerate([(30, 100), (100, 170), (170, 240)]):
        assert torch.allclose(g[crop, :, :, :8], torch.tensor(float(left)), atol=4), crop
        assert torch.allclose(g[crop, :, :, 8:], torch.tensor(float(right)), atol=4), crop

    tall = np.ascontiguousarray(wide.transpose(0, 2, 1, 3))  # 64 high, 32 wide, horizontal bands
    _write_video(tmp_path / "tall.mov", tall, fps=8)
    g = _grey(pp.load_video(tmp_path / "tall.mov", cfg).transpose(0, 1))
    for crop, (top, bottom) in enumerate([(30, 100), (100, 170), (170, 240)]):
        assert torch.allclose(g[crop, :, :8, :], torch.tensor(float(top)), atol=4), crop
        assert torch.allclose(g[crop, :, 8:, :], torch.tensor(float(bottom)), atol=4), crop


def test_video_clips_and_frames_follow_the_clip_sampler(tmp_path, tiny):
    cfg = dataclasses.replace(tiny, image_size=16)  # 2 clips of 1 s, 2 frames each, 1 crop
    frames = np.zeros((24, 32, 32, 3), dtype=np.uint8)  # 3 s at 8 fps, frame k has grey 20 + 10 k
    for k in range(24):
        frames[k] = 20 + 10 * k
    _write_video(tmp_path / "ramp.mp4", frames, fps=8)
    out = pp.load_video(tmp_path / "ramp.mp4", cfg)
    assert out.shape == (2, 3, 2, 16, 16)
    # clips start at 0 s and (3 - 1) / (2 - 1) = 2 s: frames 0..7 and 16..23, first and last of each
    means = _grey(out.transpose(0, 1)).mean(dim=(-1, -2))  # [clips, frames]
    expected = torch.tensor([[20.0, 90.0], [180.0, 250.0]])
    assert torch.allclose(means, expected, atol=4), means


def test_single_frame_video_repeats_its_frame(tmp_path, tiny):
    cfg = dataclasses.replace(tiny, video_spatial_crops=3)
    _write_video(tmp_path / "still.mp4", np.full((1, 48, 64, 3), 128, dtype=np.uint8), fps=8)
    out = pp.load_video(tmp_path / "still.mp4", cfg)
    s = tiny.image_size
    assert out.shape == (tiny.video_clips * 3, 3, tiny.video_frames, s, s)
    assert torch.equal(out[:, :, 0], out[:, :, 1])
    assert torch.allclose(_grey(out.transpose(0, 1)), torch.tensor(128.0), atol=4)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
def _imagebind_simple_tokenizer():
    """Meta's SimpleTokenizer, executed from the installed imagebind source without importing
    the package (it needs torchaudio, timm and iopath)."""
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("imagebind-unofficial is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    source = (root / "models" / "multimodal_preprocessors.py").read_text()
    wanted = {"bytes_to_unicode", "get_pairs", "basic_clean", "whitespace_clean", "SimpleTokenizer"}
    nodes = [n for n in ast.parse(source).body if getattr(n, "name", None) in wanted]
    assert len(nodes) == len(wanted)
    regex = pytest.importorskip("regex")
    ftfy = pytest.importorskip("ftfy")
    ns = {
        "gzip": gzip,
        "html": html,
        "io": io,
        "ftfy": ftfy,
        "re": regex,
        "torch": torch,
        "List": list,
        "Tuple": tuple,
        "Optional": typing.Optional,
        "lru_cache": lru_cache,
        "g_pathmgr": types.SimpleNamespace(open=builtins.open),
    }
    code = compile(ast.Module(body=nodes, type_ignores=[]), str(root / "models/multimodal_preprocessors.py"), "exec")
    exec(code, ns)  # noqa: S102 - Meta's own source, read from the installed package
    return ns["SimpleTokenizer"](bpe_path=str(root / "bpe" / "bpe_simple_vocab_16e6.txt.gz"))


def test_clip_bpe_ids_equal_imagebind_simple_tokenizer(tiny):
    reference = _imagebind_simple_tokenizer()
    cfg = dataclasses.replace(tiny, tokenizer="clip-bpe", context_length=77)
    tokenize = pp.load_text_tokenizer(cfg)
    texts = [
        "A dog.",
        "",
        "Hello, World!! It's 3:45pm -- isn't it?",
        "  tabs\tand\nnewlines   ",
        "Café déjà vu, naïve façade; Ünïcödé",
        "日本語のテキスト and 中文 🐶🚀 emoji",
        "&amp; &lt;b&gt;html&lt;/b&gt; &#39;entities&#39;",
        "mojibake: Ã©tÃ© donâ€™t",
        "<|startoftext|> literal specials <|endoftext|>",
        " ".join(f"word{i}" for i in range(60)),  # longer than 77 tokens
    ]
    ids = tokenize(texts)
    assert ids.shape == (len(texts), 77) and ids.dtype == torch.long
    expected = torch.stack([reference(t) for t in texts])
    assert torch.equal(ids, expected)
    assert ids[0, 0] == 49406 and (ids[:, 0] == 49406).all()
    assert ids[1, :3].tolist() == [49406, 49407, 0]
    assert ids[-1, -1] == 49407  # truncated, eot kept at the last position
    assert tokenize("A dog.").shape == (1, 77)
    assert tokenize.vocab_size == 49408


def test_missing_clip_vocabulary_says_how_to_install_it(monkeypatch, tiny):
    monkeypatch.delenv("NEXTGPT_MINI_CLIP_BPE", raising=False)
    monkeypatch.delitem(sys.modules, "imagebind", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps imagebind-unofficial==0\.1\.1"):
        pp.clip_bpe_path()
    with pytest.raises(FileNotFoundError, match="nowhere.txt.gz"):
        pp.clip_bpe_path("/nowhere/nowhere.txt.gz")


def test_package_tokenizer_from_tokenizer_json(tmp_path, monkeypatch, tiny):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(["a red circle hums", "a blue square beeps", "the green triangle chirps"] * 5, trainer)
    # a post-processor that adds <s>/</s> itself must not double them
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))]
    )
    (tmp_path / "toy_tok").mkdir()
    tok.save(str(tmp_path / "toy_tok" / "tokenizer.json"))
    monkeypatch.setattr(utils, "ASSETS", tmp_path)

    cfg = dataclasses.replace(tiny, tokenizer="package:toy_tok", context_length=8)
    tokenize = pp.load_text_tokenizer(cfg)
    pad, bos, eos = (tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>"))
    assert (pad, bos, eos) == (0, 1, 2)
    body = tok.encode("a red circle", add_special_tokens=False).ids
    long = tok.encode("a blue square beeps the green triangle chirps", add_special_tokens=False).ids
    assert len(body) <= 5 < len(long) + 2
    ids = tokenize(["a red circle", "a blue square beeps the green triangle chirps"])
    assert ids.shape == (2, 8) and ids.dtype == torch.long
    assert ids[0].tolist() == [bos] + body + [eos] + [pad] * (8 - len(body) - 2)
    assert ids[1].tolist() == [bos] + long[:6] + [eos]


# --------------------------------------------------------------------------------------------
# Dispatch and errors
# --------------------------------------------------------------------------------------------
def test_load_media_dispatches_by_extension(tmp_path, tiny):
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "x.JPEG")
    _write_wav(tmp_path / "x.wav", 0.1 * np.sin(np.arange(20000) * 0.1), 16000)
    _write_video(tmp_path / "x.mkv", np.zeros((4, 16, 16, 3), dtype=np.uint8), fps=4)
    s = tiny.image_size
    modality, x = pp.load_media(tmp_path / "x.JPEG", tiny)
    assert modality == "image" and x.shape == (3, s, s)
    modality, x = pp.load_media(tmp_path / "x.wav", tiny)
    assert modality == "audio" and x.shape == (2, 1, 32, 100)
    modality, x = pp.load_media(tmp_path / "x.mkv", tiny)
    assert modality == "video" and x.shape == (2, 3, 2, s, s)


def test_bad_files_raise_errors_that_name_the_file(tmp_path, tiny):
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        pp.load_media(missing, tiny)
    with pytest.raises(pp.MediaError, match="no such file"):
        pp.load_media(missing, tiny)

    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(pp.MediaError, match=r"empty\.wav: the file is empty"):
        pp.load_media(tmp_path / "empty.wav", tiny)

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(pp.MediaError, match=r"cut\.png: cannot read the image"):
        pp.load_media(tmp_path / "cut.png", tiny)

    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(pp.MediaError, match=r"noise\.wav: cannot decode the audio"):
        pp.load_media(tmp_path / "noise.wav", tiny)

    _write_video(tmp_path / "whole.mp4", np.zeros((8, 16, 16, 3), dtype=np.uint8), fps=8)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(pp.MediaError, match=r"cut\.mp4: cannot decode the video"):
        pp.load_media(tmp_path / "cut.mp4", tiny)

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(pp.MediaError, match=r"notes\.txt: unsupported file extension \.txt.*png.*wav.*mp4"):
        pp.load_media(tmp_path / "notes.txt", tiny)
    with pytest.raises(ValueError):  # MediaError is a ValueError
        pp.load_media(tmp_path / "notes.txt", tiny)
