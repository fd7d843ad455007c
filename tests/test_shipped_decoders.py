"""The trained tiny decoders shipped in the package (`build-tiny image-decoder / video-decoder /
audio-decoder`): fed a held-out caption's own conditioning, they draw, animate and sound it, as the
toy world's reader judges."""

import numpy as np
import pytest
import torch

from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.tiny import reader
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.pipelines import TINY_BUILDERS
from nextgpt_mini.utils import torch_threads

N = 24  # held-out-split captions per modality (half of them colour+shape pairs no decoder saw)
# Below what the builds measured on 96 held-out captions (BUILD_RESULTS.md), so that a broken
# decoder, sampler or loader fails, and run-to-run noise on 24 captions does not.
BARS = {"image": {"colour": 0.5, "shape": 0.6, "size": 0.7, "position": 0.8},
        "video": {"colour": 0.7, "shape": 0.7, "direction": 0.5, "speed": 0.7},
        "audio": {"pitch": 0.8, "sound": 0.6, "noise": 0.8}}


def _read_all(modality, media):
    if modality == "image":
        return [reader.read_image(np.asarray(m)) for m in media]
    if modality == "video":
        return [reader.read_video(m) for m in media]
    return [reader.read_audio(np.asarray(m, dtype=np.float64), 16000) for m in media]


@pytest.fixture(scope="module")
def decoders():
    return Decoders("tiny")


@pytest.mark.parametrize("modality", ["image", "video", "audio"])
def test_a_shipped_decoder_makes_what_the_caption_asks(decoders, modality):
    items = tw.sample_items(modality, N, seed=11, split="test")
    decoder = decoders[modality]
    with torch_threads(2):
        media = decoder.generate(decoder.targets([it.caption for it in items]), seed=0, progress=False)
    accuracy = reader.accuracy(_read_all(modality, media), items)
    for attribute, bar in BARS[modality].items():
        assert accuracy[attribute] >= bar, (modality, accuracy)


def test_the_same_pipeline_with_untrained_weights_does_not():
    """The control: the same pipeline class at random weights, the same captions, near chance."""
    items = tw.sample_items("image", N, seed=11, split="test")
    pipe = TINY_BUILDERS["image"]()
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad(), torch_threads(2):
        media = pipe([it.caption for it in items], num_inference_steps=20, height=32, width=32, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images
    accuracy = reader.accuracy(_read_all("image", [(m * 255).round().astype(np.uint8) for m in media]), items)
    assert accuracy["colour"] <= 0.4 and accuracy["position"] <= 0.4, accuracy


def test_one_seed_per_row_gives_each_row_what_it_gives_alone(decoders):
    decoder = decoders["image"]
    embeds = decoder.targets(["a big red circle on the left.", "a small blue square at the top."])
    together = decoder.generate(embeds, seed=[3, 8], steps=4, progress=False)
    alone = [decoder.generate(embeds[k : k + 1], seed=s, steps=4, progress=False)[0] for k, s in enumerate((3, 8))]
    for a, b in zip(together, alone):
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 2  # batch arithmetic only
    swapped = decoder.generate(embeds, seed=[8, 3], steps=4, progress=False)
    assert np.abs(np.asarray(swapped[0], dtype=int) - np.asarray(together[0], dtype=int)).max() > 20
    with pytest.raises(ValueError, match="3 seeds for 2 rows"):
        decoder.generate(embeds, seed=[1, 2, 3], steps=1, progress=False)
