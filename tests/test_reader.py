"""The toy-world attribute reader (tiny/reader.py): right on ground truth before it judges anything."""

import ast
from pathlib import Path

import numpy as np
import pytest

from nextgpt_mini.tiny import reader as rd
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.toy_decoder import unstated_attributes


def test_the_reader_reads_every_attribute_of_ground_truth_renders_at_95_percent_or_more():
    table = rd.validate(n=150, seed=3)
    assert len(table) == 6
    low = {(where, a): acc for where, accs in table.items() for a, acc in accs.items() if acc < 0.95}
    assert not low, low
    assert set(table["image, decoder size"]) == {"colour", "shape", "size", "position"}
    assert set(table["video, decoder size"]) == {"colour", "shape", "direction", "speed"}
    assert set(table["audio, decoder size"]) == {"sound", "pitch", "noise"}


def test_the_reader_is_near_chance_on_noise_and_reads_nothing_in_a_blank_picture():
    rng = np.random.default_rng(0)
    items = tw.sample_items("image", 100, seed=4, split="test")
    noise = [rd.read_image(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)) for _ in items]
    assert all(acc < 0.5 for acc in rd.accuracy(noise, items).values())
    assert set(rd.read_image(np.full((32, 32, 3), 30, np.uint8)).values()) == {None}
    assert set(rd.read_video(np.full((4, 32, 32, 3), 30, np.uint8)).values()) == {None}
    sounds = tw.sample_items("audio", 60, seed=4, split="test")
    hiss = [rd.read_audio(rng.standard_normal(16000) * 0.1) for _ in sounds]
    assert rd.accuracy(hiss, sounds)["pitch"] < 0.6 and rd.accuracy(hiss, sounds)["sound"] < 0.5


def test_the_reader_holds_at_other_sizes_and_sample_rates():
    images = tw.sample_items("image", 80, seed=5, split="test")
    assert min(rd.accuracy([rd.read_image(tw.render_image(it, 48)) for it in images], images).values()) >= 0.95
    sounds = tw.sample_items("audio", 60, seed=5, split="test")
    at_22k = [rd.read_audio(tw.render_audio(it, 1.0, 22050), 22050) for it in sounds]
    assert min(rd.accuracy(at_22k, sounds).values()) >= 0.95


def test_the_reader_does_not_look_through_the_tiny_encoder():
    tree = ast.parse(Path(rd.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
               {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in imported if m and m.startswith("nextgpt_mini")}
    assert ours == {"nextgpt_mini.tiny"}, ours  # the world only (`from nextgpt_mini.tiny import world`)


@pytest.mark.parametrize("modality", ["image", "video", "audio"])
def test_read_dispatches_by_modality(modality):
    item = tw.sample_items(modality, 1, seed=6, split="train")[0]
    media = {"image": lambda: tw.render_image(item, 32), "video": lambda: tw.render_video(item, 32, 1.0, 4),
             "audio": lambda: tw.render_audio(item, 1.0, 16000)}[modality]()
    assert rd.read(modality, media) == item.attributes
    with pytest.raises(ValueError, match="unknown modality"):
        rd.read("smell", media)


def test_a_sound_attribute_the_request_leaves_open_is_not_scored():
    sound = tw.ToyItem("audio", tw.ToyObject("red", "circle", "big"))  # a low steady tone over brown noise
    assert unstated_attributes("Play the sound of a red circle.", sound) == ["noise"]
    assert unstated_attributes("Play the sound of a big red circle.", sound) == []
    assert unstated_attributes(f"Play {sound.caption}.", sound) == []
    assert unstated_attributes("Play something.", sound) == ["pitch", "sound", "noise"]
    assert unstated_attributes("Draw it.", tw.ToyItem("image", sound.obj)) == []
    heard = [{"pitch": "low", "sound": "steady tone", "noise": "white"}] * 2
    assert rd.accuracy(heard, [sound, sound]) == {"sound": 1.0, "pitch": 1.0, "noise": 0.0}
    assert rd.accuracy(heard, [sound, sound], [["noise"], []]) == {"sound": 1.0, "pitch": 1.0, "noise": 0.0}
    assert "noise" not in rd.accuracy(heard, [sound, sound], [["noise"], ["noise"]])
