import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from nextgpt_mini.data import mosit
from nextgpt_mini.files import read_video_frames
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import TASKS, toy_dialogues
from nextgpt_mini.tiny.samples import make_samples


def test_items_are_a_pure_function_of_the_seed():
    a = tw.sample_items("image", 5, seed=1)
    b = tw.sample_items("image", 5, seed=1)
    assert a == b and a != tw.sample_items("image", 5, seed=2)
    assert np.array_equal(tw.render_image(a[0], 32), tw.render_image(b[0], 32))
    assert np.array_equal(tw.render_audio(tw.sample_items("audio", 1)[0], 0.5), tw.render_audio(tw.sample_items("audio", 1)[0], 0.5))


def test_train_split_never_shows_held_out_pairs_and_test_split_does():
    train = tw.sample_items("image", 2000, seed=0, split="train")
    assert not any(i.obj.held_out for i in train)
    test = tw.sample_items("image", 200, seed=0, split="test")
    assert sum(i.obj.held_out for i in test) == 100
    assert {(i.obj.colour, i.obj.shape) for i in test if i.obj.held_out} == set(tw.HELD_OUT_PAIRS)


def test_captions_name_the_attributes():
    item = tw.ToyItem("image", tw.ToyObject("orange", "circle", "big"), position="left")
    assert item.caption == "a big orange circle on the left"
    video = tw.ToyItem("video", tw.ToyObject("orange", "square", "small"), direction="up", speed="fast")
    assert video.caption == "an orange square moving up quickly"
    assert tw.soundtrack_of(video).caption == "a low beeping rhythm over white noise"
    for modality in ("image", "video", "audio"):
        for it in tw.sample_items(modality, 20):
            for value in it.attributes.values():
                assert value in it.caption


def test_renderers_show_what_the_caption_says():
    # The object's colour is the dominant non-background colour, placed where the caption says.
    item = tw.ToyItem("image", tw.ToyObject("red", "square", "big"), position="left", seed=3)
    img = tw.render_image(item, 64).astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 100)
    ys, xs = np.nonzero(red)
    assert red.sum() > 200 and xs.mean() < 26 and abs(ys.mean() - 32) < 5
    # A video moving right: the object's x grows frame to frame.
    video = tw.ToyItem("video", tw.ToyObject("blue", "circle", "small"), direction="right", speed="fast", seed=1)
    frames = tw.render_video(video, 48, 2.0, 8)
    xs = [np.nonzero(f[..., 2] > 150)[1].mean() for f in frames]
    assert frames.shape == (16, 48, 48, 3) and all(b > a for a, b in zip(xs, xs[1:]))
    # A steady tone's spectrum peaks at its colour's pitch.
    tone = tw.render_audio(tw.ToyItem("audio", tw.ToyObject("green", "circle", "small")), 1.0, 16000)
    peak_hz = np.argmax(np.abs(np.fft.rfft(tone))) * 16000 / len(tone)
    assert abs(peak_hz - tw.PITCH_HZ["green"]) < 2


def test_dialogues_cover_every_task_and_mark_media_outputs():
    dialogues = toy_dialogues(len(TASKS), seed=0)
    assert [d["task"] for d in dialogues] == list(TASKS)
    for d in dialogues:
        inputs, outputs = d["task"].split("->")
        has_media_in = any(t.get("media") for t in d["turns"])
        assert has_media_in == (inputs != "T")
        wanted = {t["output"]["modality"][0].upper() for t in d["turns"] if "output" in t}
        assert wanted == (set(outputs.split(",")) - {"T"})


def test_make_samples_is_deterministic_and_complete(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    counts = make_samples(a, seed=0)
    make_samples(b, seed=0)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert counts == {"images": 12, "audio": 8, "videos": 6, "dialogues": 33}
    assert sum((a / r).stat().st_size for r in files_a) < 10e6


def test_committed_data_samples_match_the_generator(repo, tmp_path):
    """data_samples/ is exactly what `nextgpt-mini make-samples --seed 0` writes today."""
    fresh = tmp_path / "fresh"
    make_samples(fresh, seed=0)
    committed = repo / "data_samples"
    rels = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert rels == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    changed = [r for r in rels if (fresh / r).read_bytes() != (committed / r).read_bytes()]
    assert not changed, f"data_samples is stale, run `make samples`: {changed[:5]}"


def test_sample_formats(repo):
    root = repo / "data_samples"
    images = json.loads((root / "images.json").read_text())
    assert len(images) >= 12 and set(images[0]) == {"caption", "image_name"}
    for row in images:
        assert Image.open(root / "images" / row["image_name"]).format == "PNG"
    audio = json.loads((root / "audio.json").read_text())
    assert len(audio) >= 8 and set(audio[0]) == {"audio_name", "caption"}
    infos = [sf.info(str(root / "audio" / row["audio_name"])) for row in audio]
    assert all(2.0 <= i.duration <= 6.0 for i in infos)
    assert any(i.samplerate == 44100 and i.channels == 2 for i in infos)
    assert sum(i.samplerate == 16000 and i.channels == 1 for i in infos) >= 7
    videos = json.loads((root / "videos.json").read_text())
    assert len(videos) >= 6 and set(videos[0]) == {"caption", "video_name"}
    for row in videos:
        frames, fps = read_video_frames(root / "videos" / row["video_name"])
        assert 2.0 <= len(frames) / fps <= 4.0 and frames.shape[-1] == 3
    dialogues = mosit.load_dialogues(root / "mosit" / "mosit.json")
    assert len(dialogues) >= 24 and {d["task"] for d in dialogues} >= {"T->T", "T->I", "T->V", "T->A", "I->T", "V->T", "A->T", "I->A"}
    for d in dialogues:
        for t in d["turns"]:
            for m in t.get("media", []):
                assert (root / "mosit" / m["path"]).is_file()


def test_load_dialogues_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        mosit.load_dialogues(bad)
    bad.write_text(json.dumps([{"turns": [{"role": "robot", "text": "hi"}]}]))
    with pytest.raises(ValueError, match="role user/assistant"):
        mosit.load_dialogues(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        mosit.load_dialogues(tmp_path / "missing.json")
