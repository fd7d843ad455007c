"""ImageBind: parity with Meta's code, checkpoint handling, empty builds, weight resolution."""

from __future__ import annotations

import time

import pytest
import torch

from nextgpt_mini.config import HUB, EncoderConfig
from nextgpt_mini.hub import download_file, resolve_weights
from nextgpt_mini.models.imagebind import SKIPPED_MODALITIES, ImageBindEncoder, build_encoder, eot_positions
from nextgpt_mini.models.imagebind_weights import convert_to_safetensors, filter_state_dict, load_imagebind_state_dict
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.scaling.params import count

try:  # tests/ on sys.path (no tests/__init__.py) or tests as a package
    from _meta_imagebind import load_meta_imagebind
except ImportError:  # pragma: no cover
    from tests._meta_imagebind import load_meta_imagebind

EOT = 49407  # CLIP's <|endoftext|>
SOT = 49406  # CLIP's <|startoftext|>
# vision 632,829,440 + text 354,032,641 + audio 86,235,648. Meta's full imagebind_huge has
# 1,200,781,057: the "1.2 B" of the paper includes depth, thermal and IMU (127.7 M).
HUGE_PARAMS = 1_073_097_729
TOL = 1e-5


def _meta_module():
    try:
        return load_meta_imagebind()
    except ImportError as err:  # a broken dev install must fail, not pass quietly
        pytest.fail(f"Meta's ImageBind code unavailable ({err}); `make test` installs it: "
                    "pip install einops && pip install --no-deps imagebind-unofficial==0.1.1")


def _tiny_parity_config() -> EncoderConfig:
    """Tiny widths, but Meta's fixed sizes (image 224, vocabulary 49408, context 77)."""
    return EncoderConfig(
        weights=None, out_embed_dim=16,
        vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=2,
        text_embed_dim=32, text_num_blocks=1, text_num_heads=2,
        audio_embed_dim=32, audio_num_blocks=1, audio_num_heads=2,
    )


def _meta_tiny(ib):
    kw = {"out_embed_dim": 16}
    for m in ("vision", "text", "audio", "depth", "thermal", "imu"):
        kw.update({f"{m}_embed_dim": 32, f"{m}_num_blocks": 1, f"{m}_num_heads": 2})
    return ib.ImageBindModel(**kw).eval()


def _text_ids(batch_eot_positions, length=77, seed=0):
    """CLIP-style ids: SOT, random tokens, EOT at the given position, then 0 padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SOT, (len(batch_eot_positions), length), generator=g)
    ids[:, 0] = SOT
    for row, pos in enumerate(batch_eot_positions):
        ids[row, pos] = EOT
        ids[row, pos + 1:] = 0
    return ids


@pytest.fixture(scope="module")
def tiny_pair():
    """Meta's tiny ImageBindModel and ours holding the same random weights."""
    ib = _meta_module()
    torch.manual_seed(0)
    meta = _meta_tiny(ib)
    ours = ImageBindEncoder(_tiny_parity_config()).eval()
    skipped = load_imagebind_state_dict(ours, meta.state_dict())
    return meta, ours, skipped


# ------------------------------------------------------------------ parity with Meta (tiny)
def test_tiny_parity_all_modalities(tiny_pair):
    meta, ours, skipped = tiny_pair
    assert skipped > 0
    g = torch.Generator().manual_seed(1)
    inputs = {
        "vision": torch.randn(2, 3, 224, 224, generator=g),
        "text": _text_ids([5, 76]),  # a short caption and one that fills the context
        "audio": torch.randn(2, 3, 1, 128, 204, generator=g),
    }
    video = torch.randn(2, 15, 3, 2, 224, 224, generator=g)
    with torch.no_grad():
        ref = meta(inputs)
        ref["video"] = meta({"vision": video})["vision"]  # Meta folds the 15 clips and averages
        scaled = ours(inputs, logit_scale=True)
        plain = ours(inputs)  # what NExT-GPT uses: normalised, no logit scale
        plain_video = ours.encode_video(video)

    # Like with like: Meta's forward applies the text/audio logit scales.
    for m in ("vision", "text", "audio"):
        assert scaled[m].shape == (2, 16)
        assert (scaled[m] - ref[m]).abs().max().item() <= TOL, m
    assert (plain_video - ref["video"]).abs().max().item() <= TOL

    # Without the scales: Meta's outputs divided by its (constant) scale.
    text_scale = meta.modality_postprocessors["text"][1].log_logit_scale.exp()
    audio_scale = meta.modality_postprocessors["audio"][1].log_logit_scale.exp()
    assert torch.isclose(audio_scale, torch.tensor(20.0))
    assert (plain["vision"] - ref["vision"]).abs().max().item() <= TOL
    assert (plain["text"] - ref["text"] / text_scale).abs().max().item() <= TOL
    assert (plain["audio"] - ref["audio"] / audio_scale).abs().max().item() <= TOL
    # Single images and captions come out unit-norm; clip averages are not re-normalised.
    assert torch.allclose(plain["vision"].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(plain["text"].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert (plain["audio"].norm(dim=-1) <= 1 + 1e-5).all()


def test_tiny_convenience_methods_match_forward(tiny_pair):
    _, ours, _ = tiny_pair
    g = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, 224, 224, generator=g)
    audio = torch.randn(2, 3, 1, 128, 204, generator=g)
    ids = _text_ids([3, 40])
    with torch.no_grad():
        out = ours({"vision": image, "audio": audio, "text": ids})
        assert torch.equal(ours.encode_image(image), out["vision"])
        assert torch.equal(ours.encode_audio(audio), out["audio"])
        assert torch.equal(ours.encode_text(ids), out["text"])
        # An image is a still 2-frame video (PadIm2Video repeats it).
        still = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
        assert torch.allclose(ours.encode_video(still), out["vision"], atol=1e-6)
        # Causal attention: dropping the padding after the EOT changes nothing.
        assert torch.allclose(ours.encode_text(ids[:, :41]), out["text"], atol=1e-6)


def test_text_pools_first_eot():
    ids = torch.tensor([[SOT, 7, EOT, EOT, EOT], [SOT, 7, 8, 9, EOT]])  # EOT used as padding
    assert eot_positions(ids, EOT).tolist() == [2, 4]
    # A vocabulary whose EOT is not the largest id (argmax would be wrong here).
    assert eot_positions(torch.tensor([[1, 500, 3, 2, 0]]), 3).tolist() == [2]
    with pytest.raises(ValueError, match="end-of-text"):
        eot_positions(torch.tensor([[1, 2, 4]]), 3)


def test_tiny_profile_shapes():
    cfg = load_profile("tiny").encoder
    torch.manual_seed(0)
    model = build_encoder(cfg).eval()
    d, s = cfg.image_size, cfg.audio_num_mel_bins
    ids = torch.randint(3, cfg.vocab_size - 1, (2, cfg.context_length))
    ids[:, 10] = model.eot_token_id
    assert model.eot_token_id == 2  # the tiny tokenizer's "</s>", set in the profile
    with torch.no_grad():
        out = model({
            "vision": torch.randn(2, 3, d, d),
            "audio": torch.randn(2, cfg.audio_clips, 1, s, cfg.audio_target_len),
            "text": ids,
        })
        video = model.encode_video(torch.randn(2, cfg.video_clips, 3, cfg.video_frames, d, d))
    for emb in (*out.values(), video):
        assert emb.shape == (2, cfg.out_embed_dim)
        assert torch.isfinite(emb).all()
    with pytest.raises(ValueError, match="patches"):
        model.encode_image(torch.randn(1, 3, d + cfg.patch_size, d + cfg.patch_size))


# ------------------------------------------------------------------ checkpoints
def _tiny_model():
    torch.manual_seed(0)
    return build_encoder(load_profile("tiny").encoder).eval()


def test_missing_or_extra_key_fails_loudly():
    model = _tiny_model()
    state = model.state_dict()
    missing = dict(state)
    missing.pop("modality_trunks.audio.blocks.0.attn.bias_k")
    with pytest.raises(RuntimeError, match="bias_k"):
        load_imagebind_state_dict(_tiny_model(), missing)
    extra = dict(state)
    extra["modality_trunks.vision.blocks.0.layer_scale_gamma1"] = torch.ones(1, 1, 64)
    with pytest.raises(RuntimeError, match="layer_scale_gamma1"):
        load_imagebind_state_dict(_tiny_model(), extra)
    wrong_shape = dict(state)
    wrong_shape["modality_heads.vision.2.weight"] = torch.zeros(3, 64)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_imagebind_state_dict(_tiny_model(), wrong_shape)


def test_unused_modalities_are_skipped_and_reported(tmp_path, caplog):
    model = _tiny_model()
    state = dict(model.state_dict())
    for m in SKIPPED_MODALITIES:
        state[f"modality_trunks.{m}.blocks.0.norm_1.weight"] = torch.ones(8)
        state[f"modality_heads.{m}.0.bias"] = torch.zeros(8)
    kept, skipped = filter_state_dict(state)
    assert skipped == 6 and set(kept) == set(model.state_dict())

    path = tmp_path / "imagebind_tiny.pth"
    torch.save(state, path)
    fresh = build_encoder(load_profile("tiny").encoder, empty=True)
    with caplog.at_level("INFO"):
        assert load_imagebind_state_dict(fresh, path) == 6
    assert "skipped 6 keys" in caplog.text
    assert not any(p.is_meta for p in fresh.parameters())

    converted = convert_to_safetensors(path, tmp_path / "imagebind_tiny.safetensors")
    from_st = build_encoder(load_profile("tiny").encoder, empty=True)
    assert load_imagebind_state_dict(from_st, converted) == 0  # already filtered
    reference = model.state_dict()
    for loaded in (fresh, from_st):
        assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
    image = torch.randn(1, 3, 48, 48)
    with torch.no_grad():  # same weights; memory alignment may pick other kernels: allclose
        assert torch.allclose(from_st.eval().encode_image(image), model.encode_image(image), atol=1e-6)


# ------------------------------------------------------------------ resolving weights
def test_missing_weights_offline_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NEXTGPT_MINI_CACHE", str(tmp_path))
    url = HUB["imagebind_huge"]
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights(url)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "imagebind_huge.pth") in message
    assert "nextgpt-mini download --profile paper" in message


def test_resolve_weights_cache_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = HUB["imagebind_huge"]
    with pytest.raises(FileNotFoundError):
        resolve_weights(url, cache_dir=tmp_path, download=False)
    (tmp_path / "imagebind_huge.pth").write_bytes(b"x")
    assert resolve_weights(url, cache_dir=tmp_path) == tmp_path / "imagebind_huge.pth"
    (tmp_path / "imagebind_huge.safetensors").write_bytes(b"x")  # a conversion wins
    assert resolve_weights(url, cache_dir=tmp_path) == tmp_path / "imagebind_huge.safetensors"
    assert resolve_weights(str(tmp_path / "imagebind_huge.pth")) == tmp_path / "imagebind_huge.pth"
    with pytest.raises(FileNotFoundError):
        resolve_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError):
        resolve_weights("package:does_not_exist.safetensors")


# ------------------------------------------------------------------ the paper size
def test_empty_huge_build_is_fast_and_allocates_nothing():
    start = time.perf_counter()
    model = build_encoder(EncoderConfig(), empty=True)
    assert time.perf_counter() - start < 10
    assert all(p.is_meta for p in model.parameters())
    assert count(model)[0] == HUGE_PARAMS


@pytest.mark.slow
def test_huge_parity_vision_audio():
    """Meta's imagebind_huge with random weights vs ours holding the same tensors (batch 1)."""
    ib = _meta_module()
    torch.manual_seed(0)
    meta = ib.imagebind_huge(pretrained=False).eval()
    ours = build_encoder(EncoderConfig(), empty=True)
    # Assigned, not copied: ours shares Meta's tensors, so no second 4.3 GB copy is made.
    assert load_imagebind_state_dict(ours, meta.state_dict()) == 447
    ours.eval()
    assert count(ours)[0] == HUGE_PARAMS
    g = torch.Generator().manual_seed(3)
    image = torch.randn(1, 3, 224, 224, generator=g)
    audio = torch.randn(1, 3, 1, 128, 204, generator=g)
    with torch.no_grad():
        ref = meta({"vision": image, "audio": audio})
        out = ours({"vision": image, "audio": audio}, logit_scale=True)
    for m in ("vision", "audio"):
        assert out[m].shape == (1, 1024)
        assert (out[m] - ref[m]).abs().max().item() <= TOL, m


def test_an_interrupted_weights_download_resumes_where_it_stopped(tmp_path):
    """A local HTTP server that honours Range requests: a half-written .part is continued."""
    import functools
    import http.server
    import threading

    payload = bytes(range(256)) * 4000
    served = tmp_path / "srv"
    served.mkdir()
    (served / "weights.pth").write_bytes(payload)
    ranges = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            first = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            ranges.append(first)
            self.send_response(206 if first else 200)
            self.send_header("Content-Length", str(len(payload) - first))
            self.end_headers()
            self.wfile.write(payload[first:])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = tmp_path / "cache" / "weights.pth"
        target.parent.mkdir()
        (target.parent / "weights.pth.part").write_bytes(payload[:300_000])  # an earlier attempt
        download_file(f"http://127.0.0.1:{server.server_port}/weights.pth", target)
    finally:
        server.shutdown()
    assert ranges == [300_000] and target.read_bytes() == payload
    assert not (target.parent / "weights.pth.part").exists()
