"""nextgpt_mini.tiny.pretrain.encoder: the tiny ImageBind's pretraining on the toy world, and the
shipped weights it produced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nextgpt_mini import processing as pp
from nextgpt_mini.cache import sha256_file
from nextgpt_mini.cli import main
from nextgpt_mini.files import read_video_frames, save_video
from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import render as R
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.build import build
from nextgpt_mini.tiny.pretrain import encoder as P
from nextgpt_mini.tiny.pretrain import encoder_train as T
from nextgpt_mini.tiny.registry import ENCODER_WEIGHTS, read_manifest
from nextgpt_mini.utils import ASSETS


@pytest.fixture
def tiny():
    return load_profile("tiny").encoder


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# Inputs are made exactly as the file loaders make them
# --------------------------------------------------------------------------------------------
def _frames(kind: str) -> tuple[np.ndarray, int]:
    if kind == "toy 64px 2s 8fps":
        return tw.render_video(tw.sample_items("video", 1, seed=3)[0], 64, 2.0, 8), 8
    if kind == "toy 32px 1s 4fps":
        return tw.render_video(tw.sample_items("video", 1, seed=4)[0], 32, 1.0, 4), 4
    # wide (72 x 40), 5 frames at 6 fps: shorter than one clip, so both clips cover the whole video
    yy, xx = np.mgrid[0:40, 0:72]
    frames = np.zeros((5, 40, 72, 3), np.uint8)
    for t in range(5):
        frames[t, ..., 0] = 40 + 2 * xx
        frames[t, ..., 1] = 60 + 3 * yy
        frames[t, 10:26, 8 + 10 * t : 24 + 10 * t, 2] = 220  # a blue square moving right
    return frames, 6


@pytest.mark.parametrize("kind", ["toy 64px 2s 8fps", "toy 32px 1s 4fps", "wide 5 frames 6fps"])
def test_frames_to_tensor_is_load_video_after_decoding(tmp_path, tiny, kind):
    frames, fps = _frames(kind)
    path = save_video(frames, tmp_path / "v.mp4", fps)
    from_file = pp.load_video(path, tiny)
    decoded, decoded_fps = read_video_frames(path)
    # The same function on the same decoded frames: identical to the last bit.
    assert torch.equal(pp.frames_to_tensor(decoded, decoded_fps, tiny), from_file)
    # And on the frames before H.264: equal up to the codec's loss (crf 18), what training sees.
    rendered = pp.frames_to_tensor(frames, fps, tiny)
    assert rendered.shape == from_file.shape == (tiny.video_clips * tiny.video_spatial_crops, 3, tiny.video_frames, 48, 48)
    assert (rendered - from_file).abs().mean() < 0.06


def test_toy_set_tensors_have_the_loader_shapes(tiny):
    s = P.EncoderPretrainSettings.quick(n_images=3, n_videos=2, progress=False)
    data = P.render_toy_set(tiny, s)
    assert data.images.shape == (3, 3, 48, 48) and data.stills.shape == (2, 3, 48, 48)
    assert data.videos.shape == (2, 2, 3, 2, 48, 48) and data.audio.shape == (2, 2, 1, 32, 100)
    assert data.image_text.shape == (3, 24) and (data.video_text == tiny.eot_token_id).any(1).all()


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def test_contrastive_loss_is_symmetric_infonce_and_counts_duplicates_as_positives():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    logits = 20 * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    t = torch.arange(6)
    plain = 0.5 * (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t))
    torch.testing.assert_close(T.contrastive_loss(a, b, 20.0), plain)
    torch.testing.assert_close(T.contrastive_loss(a, b, 20.0, torch.arange(6) * 7), plain)  # distinct keys
    key = torch.tensor([5, 5, 1, 2, 3, 4])
    # Identical captions give identical text rows: then the keyed loss *is* plain InfoNCE.
    b_same = b.clone()
    b_same[1] = b_same[0]
    torch.testing.assert_close(T.contrastive_loss(a, b_same, 20.0, key), T.contrastive_loss(a, b_same, 20.0))
    # Two renders of one object, matched crosswise (image 0 looks like sound 1 and vice versa):
    # plain InfoNCE calls that wrong, the keyed loss does not.
    b_cross = a.clone()
    b_cross[[0, 1]] = a[[1, 0]]
    assert T.contrastive_loss(a, b_cross, 20.0, key) < T.contrastive_loss(a, b_cross, 20.0) - 1.0


# --------------------------------------------------------------------------------------------
# The build code, in quick mode
# --------------------------------------------------------------------------------------------
def test_attribute_loss_is_zero_shot_cross_entropy_per_attribute():
    gen = torch.Generator().manual_seed(0)
    phrases = [torch.randn(3, 8, generator=gen), torch.randn(5, 8, generator=gen)]
    labels = torch.tensor([[0, 4], [2, 1]])
    # an item that sits exactly on its two phrases' directions beats one that sits on wrong ones
    right = torch.stack([F.normalize(phrases[0][0], dim=0) + F.normalize(phrases[1][4], dim=0),
                         F.normalize(phrases[0][2], dim=0) + F.normalize(phrases[1][1], dim=0)])
    wrong = right[[1, 0]]
    assert T.attribute_loss(right, labels, phrases, 20.0) < T.attribute_loss(wrong, labels, phrases, 20.0)
    by_hand = 0.5 * sum(F.cross_entropy(20.0 * F.normalize(right, dim=-1) @ F.normalize(p, dim=-1).T, labels[:, a])
                        for a, p in enumerate(phrases))
    torch.testing.assert_close(T.attribute_loss(right, labels, phrases, 20.0), by_hand)


def test_attribute_labels_index_the_phrases_each_caption_uses():
    for modality in ("image", "video"):
        items = tw.sample_items(modality, 20, seed=2)
        phrases = P.attribute_phrases(modality)
        labels = P.attribute_labels(items)
        assert labels.shape == (20, len(phrases))
        for it, row in zip(items, labels.tolist()):
            for (attr, values), k in zip(phrases.items(), row):
                assert values[k] in it.caption, (attr, values[k], it.caption)


def test_quick_pretraining_lowers_both_losses_and_returns_a_frozen_model(tiny):
    settings = P.EncoderPretrainSettings.quick(progress=False)
    model, history = T.pretrain_encoder(tiny, settings)
    for stage in ("clip", "bind"):
        losses = [h["loss"] for h in history if h["stage"] == stage]
        assert len(losses) == 12
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, (stage, losses)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_pretraining_is_deterministic_for_a_seed(tiny):
    settings = P.EncoderPretrainSettings.quick(n_images=16, n_videos=16, clip_steps=3, bind_steps=3, batch_size=8,
                                        progress=False)
    data = P.render_toy_set(tiny, settings)
    (m1, _), (m2, _) = T.pretrain_encoder(tiny, settings, data), T.pretrain_encoder(tiny, settings, data)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_build_tiny_encoder_quick_writes_weights_that_load(tmp_path, tiny, capsys):
    assert main(["build-tiny", "encoder", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out retrieval" in out and "audio -> image" in out
    weights = tmp_path / ENCODER_WEIGHTS
    model = load_encoder(dataclasses.replace(tiny, weights=str(weights)))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert weights.stat().st_size < 4e6


def test_quick_build_refuses_to_overwrite_the_shipped_weights():
    with pytest.raises(ValueError, match="--out"):
        build("encoder", quick=True)


# --------------------------------------------------------------------------------------------
# The shipped weights
# --------------------------------------------------------------------------------------------
def test_shipped_weights_are_in_the_manifest():
    manifest = read_manifest()
    assert ENCODER_WEIGHTS in manifest
    assert sha256_file(ASSETS / ENCODER_WEIGHTS) == manifest[ENCODER_WEIGHTS]


@pytest.fixture(scope="module")
def shipped():
    cfg = load_profile("tiny").encoder
    return cfg, load_encoder(cfg)


def test_shipped_encoder_is_frozen_and_gives_normalised_embeddings(shipped):
    cfg, model = shipped
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    item = tw.sample_items("video", 1, seed=5, split="test")[0]
    with torch.no_grad():
        img = model.encode_image(R.image_tensor(tw.still_of(item), 64, cfg)[None])
        txt = model.encode_text(pp.load_text_tokenizer(cfg)([item.caption]))
        vid = model.encode_video(R.video_tensor(item, 64, 2.0, 8, cfg)[None])
        aud = model.encode_audio(R.audio_tensor(tw.soundtrack_of(item), 2.0, cfg)[None])
    for emb in (img, txt):
        assert emb.shape == (1, 64)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(1))
    # Videos and audio average their (unit) clip embeddings without re-normalising, as Meta does:
    # the norm drops below 1 only as much as the clips disagree.
    for emb in (vid, aud):
        assert 0.8 < float(emb.norm()) <= 1.0 + 1e-6


def test_shipped_encoder_retrieves_held_out_items_far_above_chance(shipped):
    cfg, model = shipped
    results = P.evaluate_retrieval(model, cfg, gallery_size=12, galleries=2, seed=99)
    for name in ("text -> image", "audio -> image", "video -> image"):
        r = results[name]
        assert r["top1"] >= 3 * r["chance"], (name, r)
        assert r["held_out_top1"] >= 3 * r["chance"], (name, r)


def test_shipped_encoder_sees_the_shape_of_held_out_colour_shape_pairs(shipped):
    """The composition the later stages rely on: shape readable whatever the colour (zero-shot,
    through the text tower's phrases), on test renders of held-out pairs."""
    cfg, model = shipped
    items = [it for it in tw.sample_items("image", 120, seed=11, split="test") if it.obj.held_out]
    tokenize = pp.load_text_tokenizer(cfg)
    with torch.no_grad():
        img = F.normalize(model.encode_image(torch.stack([R.image_tensor(it, 64, cfg) for it in items])), dim=-1)
        shapes = F.normalize(model.encode_text(tokenize(list(tw.SHAPES))), dim=-1)
    right = ((img @ shapes.T).argmax(1) == torch.tensor([tw.SHAPES.index(it.obj.shape) for it in items])).float().mean()
    assert len(items) >= 50 and right >= 0.8, (len(items), float(right))
