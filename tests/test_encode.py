import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nextgpt_mini import processing as pp
from nextgpt_mini.cache import EmbeddingCache, encoder_identity
from nextgpt_mini.cli import main
from nextgpt_mini.encode import Text, encode, encode_dataset, load_encoder_for, resolve_inputs
from nextgpt_mini.models.imagebind import build_encoder
from nextgpt_mini.profiles import load_profile

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
IMG0, IMG1 = SAMPLES / "images/image_00.png", SAMPLES / "images/image_01.png"
WAV16K = SAMPLES / "audio/audio_00.wav"
WAV44K = SAMPLES / "audio/audio_07.wav"  # the 44.1 kHz stereo one
MP4 = SAMPLES / "videos/video_00.mp4"
RANDOM = ["--set", "encoder.weights=null", "--no-progress"]  # the CLI with seeded random weights


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cfg():
    return load_profile("tiny").encoder


@pytest.fixture(scope="module")
def enc(cfg):
    torch.manual_seed(0)
    return build_encoder(cfg).eval()


def _cache(root, enc):
    return EmbeddingCache(root, encoder_identity(enc.cfg, state_dict=enc.state_dict()))


def _files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


# ------------------------------------------------------------------ inputs
def test_how_inputs_are_read(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    items = resolve_inputs([str(IMG0), MP4, str(WAV44K), "a red circle", Text(str(IMG0)), "no_such_file", "x.MOV.txt"])
    assert [i.modality for i in items] == ["image", "video", "audio", "text", "text", "text", "text"]
    with pytest.raises(pp.MediaNotFoundError, match="missing.png: no such file"):
        resolve_inputs(["a dog", "missing.png"])  # a media extension makes it a file
    with pytest.raises(pp.MediaError, match="notes.txt: unsupported file extension"):
        resolve_inputs([str(notes)])  # an existing file is a file
    assert resolve_inputs(Text("missing.png"))[0].modality == "text"


# ------------------------------------------------------------------ encode
def test_mixed_inputs_give_unit_rows_in_input_order(enc, cfg):
    inputs = ["a red circle", str(IMG0), WAV44K, str(MP4), Text("a blue square"), str(WAV16K), str(IMG1)]
    out = encode(inputs, encoder=enc, batch_size=2, progress=False)
    assert out.shape == (7, cfg.out_embed_dim) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(7), atol=1e-5)
    with torch.no_grad():
        image = torch.nn.functional.normalize(enc.encode_image(pp.load_image(IMG1, cfg)[None]), dim=-1)[0]
        audio = torch.nn.functional.normalize(enc.encode_audio(pp.load_audio(WAV44K, cfg)[None]), dim=-1)[0]
        text = enc.encode_text(pp.load_text_tokenizer(cfg)(["a blue square"]))[0]
    assert torch.allclose(out[6], image, atol=1e-5)
    assert torch.allclose(out[2], audio, atol=1e-5)
    assert torch.allclose(out[4], text, atol=1e-5)
    # the raw clip mean is what NExT-GPT's code passes on; here it is renormalised
    raw = encode([MP4], encoder=enc, progress=False, renormalize=False)
    assert raw.norm() < 1 and torch.allclose(raw[0] / raw.norm(), out[3], atol=1e-5)
    assert encode([], encoder=enc).shape == (0, cfg.out_embed_dim)


def test_cache_gives_the_same_result_and_hits_on_the_second_pass(tmp_path, enc, cfg):
    inputs = [str(IMG0), str(MP4), str(WAV44K), "a red circle", "a red circle", str(IMG0)]
    plain = encode(inputs, encoder=enc, progress=False)
    cache = _cache(tmp_path, enc)
    first = encode(inputs, encoder=enc, cache=cache, progress=False)
    assert cache.stats() == {"hits": 0, "misses": 4, "corrupt": 0, "writes": 4}  # duplicates encoded once
    cache.reset_stats()
    # all hits: no encoder is needed (cfg.weights points at a file that need not exist)
    second = encode(inputs, encoder=None, cfg=cfg, cache=cache, progress=False)
    assert cache.stats() == {"hits": 4, "misses": 0, "corrupt": 0, "writes": 0}
    assert torch.allclose(plain, first, atol=1e-6) and torch.equal(first, second)


def test_changed_file_or_other_encoder_misses(tmp_path, enc):
    copy = tmp_path / "media" / "pic.png"
    copy.parent.mkdir()
    shutil.copyfile(IMG0, copy)
    cache = _cache(tmp_path / "cache", enc)
    before = encode([copy, "a dog"], encoder=enc, cache=cache, progress=False)
    cache.reset_stats()
    shutil.copyfile(IMG1, copy)  # same name, new content
    after = encode([copy, "a dog"], encoder=enc, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (1, 1) and not torch.allclose(before[0], after[0])
    assert torch.allclose(after[0], encode([IMG1], encoder=enc, progress=False)[0], atol=1e-6)

    torch.manual_seed(1)
    other = build_encoder(enc.cfg).eval()
    other_cache = _cache(tmp_path / "cache", other)
    assert other_cache.dir != cache.dir
    encode([copy, "a dog"], encoder=other, cache=other_cache, progress=False)
    assert (other_cache.hits, other_cache.misses) == (0, 2)


def test_truncated_cache_entry_is_recomputed(tmp_path, enc):
    cache = _cache(tmp_path, enc)
    good = encode([IMG0], encoder=enc, cache=cache, progress=False)
    (entry,) = _files(tmp_path)
    entry.write_bytes(entry.read_bytes()[:-20])
    with pytest.warns(UserWarning, match="unreadable entry"):
        again = encode([IMG0], encoder=enc, cache=cache, progress=False)
    assert torch.allclose(good, again, atol=1e-6) and cache.corrupt == 1 and cache.writes == 2
    cache.reset_stats()
    encode([IMG0], encoder=enc, cache=cache, progress=False)
    assert cache.hits == 1  # repaired


def test_bad_file_is_named_and_its_batch_is_not_cached(tmp_path, enc):
    bad = tmp_path / "bad.png"
    bad.write_bytes(IMG0.read_bytes()[:300])
    cache = _cache(tmp_path / "cache", enc)
    with pytest.raises(pp.MediaError, match="bad.png"):
        encode(["a dog", str(IMG0), str(bad), str(IMG1)], encoder=enc, cache=cache, batch_size=8, progress=False)
    assert cache.writes == 0  # images come first: the failing batch writes nothing
    with pytest.raises(pp.MediaError, match="bad.png"):
        encode([str(IMG0), str(bad)], encoder=enc, cache=cache, batch_size=1, progress=False)
    assert cache.writes == 1  # the batch finished before the bad one stays cached


def test_encode_dataset_reads_pair_files(enc):
    ds = encode_dataset(SAMPLES / "videos.json", encoder=enc, captions=True, progress=False)
    records = json.loads((SAMPLES / "videos.json").read_text())
    assert ds.modality == "video" and len(ds) == len(records) == ds.embeddings.shape[0]
    assert ds.captions == [r["caption"] for r in records] and ds.files[0].name == records[0]["video_name"]
    assert ds.caption_embeddings.shape == ds.embeddings.shape


# ------------------------------------------------------------------ CLI
def test_cli_encode_writes_embeddings_and_reuses_the_cache(tmp_path, capsys):
    out, cache = tmp_path / "e.safetensors", tmp_path / "cache"
    args = ["encode", str(IMG0), str(WAV44K), "a red circle", "text:x.png", "--out", str(out), "--cache-dir", str(cache)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random encoder weights"
        assert main(args + RANDOM) == 0
        assert "encoded 4 inputs -> embeddings [4, 64]" in capsys.readouterr().out
        emb = load_file(out)["embeddings"]
        with safe_open(out, "pt") as f:
            meta = f.metadata()
        assert emb.shape == (4, 64) and torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
        assert json.loads(meta["modalities"]) == ["image", "audio", "text", "text"] and meta["profile"] == "tiny"
        assert json.loads(meta["inputs"])[2:] == ["a red circle", "x.png"]
        assert main(args + RANDOM) == 0  # a fresh random encoder: same seed, same identity
        assert "4 hits, 0 misses" in capsys.readouterr().out
    assert torch.equal(load_file(out)["embeddings"], emb)


@pytest.mark.parametrize("bad, message", [("missing.png", "missing.png: no such file"),
                                          ("notes.txt", "unsupported file extension"),
                                          ("broken.wav", "broken.wav: cannot decode")])
def test_cli_errors_are_one_line_and_leave_out_untouched(tmp_path, capsys, bad, message):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    out = tmp_path / "new.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["encode", str(IMG0), str(tmp_path / bad), "--out", str(out)] + RANDOM) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and bad in err and "Traceback" not in err
    assert not out.exists()

    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"precious")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["encode", str(tmp_path / bad), "--out", str(existing)] + RANDOM) == 2
    assert existing.read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_out_that_is_a_directory_is_refused(tmp_path, capsys):
    assert main(["encode", "a dog", "--out", str(tmp_path)] + RANDOM) == 2
    assert "is a directory" in capsys.readouterr().err


def test_random_weights_are_reproducible(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_encoder_for(load_profile("tiny", {"encoder.weights": None}), device="cpu")
        b = load_encoder_for(load_profile("tiny", {"encoder.weights": None}), device="cpu")
    assert encoder_identity(cfg, state_dict=a.state_dict()) == encoder_identity(cfg, state_dict=b.state_dict())


def test_progress_bar_only_for_two_batches_or_more(enc, capsys):
    encode(["a dog", "a cat"], encoder=enc, batch_size=2, progress=True)
    assert "encode" not in capsys.readouterr().err
    encode(["a dog", "a cat"], encoder=enc, batch_size=1, progress=True)
    assert "encode" in capsys.readouterr().err
    encode(["a dog", "a cat"], encoder=enc, batch_size=1, progress=False)
    assert "encode" not in capsys.readouterr().err
