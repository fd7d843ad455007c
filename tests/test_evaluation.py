"""The evaluation harness: metric sanity on real computations (the tiny encoder as feature
extractor), the toy suite end to end, the CLI, and determinism."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nextgpt_mini.evaluation import metrics
from nextgpt_mini.evaluation.features import ToyFeatures
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.render import RENDER, render
from nextgpt_mini.tiny.toy_decoder import ToyDecoder, all_items


@pytest.fixture(scope="module")
def features(one_thread):
    from nextgpt_mini.models.imagebind_weights import load_encoder
    from nextgpt_mini.profiles import load_profile

    return ToyFeatures(load_encoder(load_profile("tiny").encoder))


def _items(modality, n, seed=0):
    return tw.sample_items(modality, n, seed=seed, split="test")


def _noise_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


# ---------------------------------------------------------------- generation metrics
def test_fid_is_zero_on_itself_small_between_samples_and_large_against_noise(features):
    a = features.fid_images([render(it, it.seed) for it in _items("image", 40, seed=1)])
    b = features.fid_images([render(it, it.seed) for it in _items("image", 40, seed=2)])
    noise = features.fid_images(_noise_images(40))
    assert metrics.frechet_distance(a, a) < 1e-6
    same_world, against_noise = metrics.frechet_distance(a, b), metrics.frechet_distance(a, noise)
    assert against_noise > 5 * same_world, (same_world, against_noise)


def test_fid_against_shuffled_noise_features_is_large(features):
    a = features.fid_images([render(it, it.seed) for it in _items("image", 40, seed=1)])
    shuffled = a[torch.randperm(len(a))] + torch.randn_like(a)
    assert metrics.frechet_distance(a, shuffled) > 10 * metrics.frechet_distance(a, a[torch.randperm(len(a))]) + 1.0


def test_audio_fd_same_world_vs_noise(features):
    rate = RENDER["sample_rate"]
    a = features.audio([render(it, it.seed) for it in _items("audio", 24, seed=1)], rate)
    b = features.audio([render(it, it.seed) for it in _items("audio", 24, seed=2)], rate)
    rng = np.random.default_rng(0)
    noise = features.audio([rng.uniform(-1, 1, rate * 2).astype(np.float32) for _ in range(24)], rate)
    assert metrics.frechet_distance(a, a) < 1e-6
    assert metrics.frechet_distance(a, noise) > 3 * metrics.frechet_distance(a, b)


def test_clip_score_prefers_the_right_caption(features):
    items = _items("image", 32, seed=3)
    images = features.image([render(it, it.seed) for it in items])
    texts = features.text([it.caption for it in items])
    right = metrics.clip_score(images, texts)
    wrong = metrics.clip_score(images, texts.roll(1, dims=0))
    assert right > wrong + 2, (right, wrong)
    assert 0 <= wrong and right <= 100


def test_clipsim_and_clap_score_prefer_the_right_caption(features):
    videos = _items("video", 16, seed=4)
    frames = [features.image(list(render(it, it.seed))) for it in videos]
    texts = features.text([it.caption for it in videos])
    assert metrics.clipsim(frames, texts) > metrics.clipsim(frames, texts.roll(1, dims=0))
    assert 0 <= metrics.clipsim(frames, texts) <= 1  # the 0-1 scale papers print

    sounds = _items("audio", 24, seed=5)
    audio = features.audio([render(it, it.seed) for it in sounds], RENDER["sample_rate"])
    texts = features.text([it.caption for it in sounds], "audio")
    assert metrics.clip_score(audio, texts) > metrics.clip_score(audio, texts.roll(1, dims=0))


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance(torch.zeros(1, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="same D"):
        metrics.frechet_distance(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="one text"):
        metrics.clip_score(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one reference list per hypothesis"):
        metrics.bleu4(["a"], [])


# ---------------------------------------------------------------- captioning metrics
CAPTIONS = [it.caption for it in _items("image", 12, seed=6)]


def test_identical_captions_score_the_maximum():
    refs = [[c] for c in CAPTIONS]
    assert metrics.bleu4(CAPTIONS, refs) == pytest.approx(100)
    best = metrics.cider(CAPTIONS, refs)
    assert best == pytest.approx(1000, rel=1e-6)  # CIDEr-D's maximum with one reference: 10 (x 100)
    one_word_off = [c.replace("the", "a", 1) if "the" in c else c + " now" for c in CAPTIONS]
    assert metrics.cider(one_word_off, refs) < best
    shuffled = CAPTIONS[1:] + CAPTIONS[:1]
    assert metrics.cider(shuffled, refs) < metrics.cider(one_word_off, refs)
    assert metrics.bleu4(shuffled, refs) < 100


def test_captions_are_normalised_and_empty_answers_score_zero():
    refs = [[c] for c in CAPTIONS[:3]]
    shouted = [c.upper() + "." for c in CAPTIONS[:3]]
    assert metrics.cider(shouted, refs) == pytest.approx(metrics.cider(CAPTIONS[:3], refs))
    assert metrics.cider(["", "", ""], refs) == 0


def test_meteor_runs_where_java_is_and_says_none_where_not(monkeypatch):
    refs = [[c] for c in CAPTIONS[:4]]
    if metrics.meteor_available():
        assert metrics.meteor(CAPTIONS[:4], refs) == pytest.approx(100, abs=1e-6)
    monkeypatch.setattr(metrics.shutil, "which", lambda _: None)
    assert metrics.meteor(CAPTIONS[:4], refs) is None
    assert "METEOR" not in metrics.caption_metrics(CAPTIONS[:4], refs)


# ---------------------------------------------------------------- the toy decoder
def test_toy_decoder_decodes_a_caption_s_own_target_to_that_caption(one_thread):
    from nextgpt_mini.models.decoders import Decoders

    decoders = Decoders("tiny")
    for modality in ("image", "video", "audio"):
        toy = ToyDecoder(decoders[modality])
        captions = list(all_items(modality))[::7][:5]
        for c in captions:
            assert toy.caption_of(decoders[modality].targets([c])) == c
    assert len(all_items("image")) == 6 * 4 * 3 * 5 and len(all_items("audio")) == 3 * 4 * 3


# ---------------------------------------------------------------- suites and the CLI
@pytest.fixture(scope="module")
def toy_report(one_thread):
    from nextgpt_mini.evaluation.suites import evaluate_suite

    return evaluate_suite("toy", "package:tiny_system", limit=4, progress=False)


def test_toy_suite_reports_every_task_for_both_systems(toy_report):
    from nextgpt_mini.evaluation.suites import markdown

    assert set(toy_report["systems"]) == {"trained", "untrained"}
    for system in toy_report["systems"].values():
        tasks = system["tasks"]
        assert {"FID", "CLIP score"} <= set(tasks["T->I"]) and {"FID", "CLIPSIM"} <= set(tasks["T->V"])
        assert {"FD", "CLAP score"} <= set(tasks["T->A"]) and {"BLEU-4", "CIDEr"} <= set(tasks["A->T"])
        assert all(np.isfinite(v) for t in tasks.values() for k, v in t.items() if k != "examples")
    trained = toy_report["systems"]["trained"]["tasks"]
    assert trained["all tasks"]["signal accuracy"] > toy_report["systems"]["untrained"]["tasks"]["all tasks"]["signal accuracy"]
    table = markdown(toy_report)
    assert "| T->I | FID (lower is better) |" in table and "seed=1000" in table


def test_same_seed_same_results(toy_report):
    """Determinism on the CPU: the whole suite again, the same numbers."""
    from nextgpt_mini.evaluation.suites import evaluate_suite

    again = evaluate_suite("toy", "package:tiny_system", limit=4, progress=False)
    assert again["systems"] == toy_report["systems"]


def test_generation_is_deterministic_for_a_seed(one_thread):
    from nextgpt_mini.models.decoders import Decoders
    from nextgpt_mini.models.nextgpt import NextGPT

    model = NextGPT.from_pretrained("package:tiny_system")
    decoders = Decoders(model.profile)
    a = model.generate("Show me a big red circle on the left.", decoders=decoders, seed=7)
    b = model.generate("Show me a big red circle on the left.", decoders=decoders, seed=7)
    assert a.text == b.text and np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    c = model.generate("Show me a big red circle on the left.", decoders=decoders, seed=8)
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_require_forces_the_output_side_and_says_so(one_thread):
    from nextgpt_mini.models.nextgpt import NextGPT

    model = NextGPT.from_pretrained("package:tiny_system")
    r = model.generate("What sound does a red circle make?", require="image", decode=False)
    assert r.forced == ["image"] and r.conditioning["image"].shape[0] == 1 and not r.images
    with pytest.raises(ValueError, match="require"):
        model.generate("hello", require="smell")


def test_cli_evaluate_writes_json_and_markdown(tmp_path, one_thread):
    from nextgpt_mini.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--suite", "toy", "--limit", "2", "--baseline", "none", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert list(report["systems"]) == ["trained"] and report["samples"]["T->I"] == 2
    assert (out / "results.md").read_text().startswith("### Suite `toy`")


def test_real_suites_say_where_their_data_goes(tmp_path, capsys):
    from nextgpt_mini.cli import main

    assert main(["evaluate", "--suite", "coco-caption", "--checkpoint", "package:tiny_system", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coco-caption/pairs.json" in err[0] and "Traceback" not in err[0]


def test_real_suites_run_on_a_local_copy_of_their_data(tmp_path, features):
    """The real-suite code path (pair files, media files, the diffusion decoders, the paper's
    column) on toy data and the tiny profile, with the protocol's sizes made tiny."""
    from nextgpt_mini.evaluation.suites import PROTOCOLS, evaluate_suite, markdown

    data = tmp_path / "data"
    for suite, modality in (("coco-caption", "image"), ("coco-t2i", "image"), ("audiocaps-t2a", "audio")):
        folder = data / suite / "pairs"
        folder.mkdir(parents=True)
        records = []
        for k, it in enumerate(_items(modality, 3, seed=7)):
            name = f"{k}.png" if modality == "image" else f"{k}.wav"
            if modality == "image":
                render(it, it.seed).save(folder / name)
            else:
                import soundfile as sf

                sf.write(folder / name, render(it, it.seed), RENDER["sample_rate"])
            records += [{f"{modality}_name": name, "caption": it.caption}, {f"{modality}_name": name, "caption": "something"}]
        (data / suite / "pairs.json").write_text(json.dumps(records))
    protocols = json.loads(PROTOCOLS.read_text())
    for p in protocols.values():
        p.update(samples=3, steps=2, meteor=False)
        p.pop("resolution", None)
        p.pop("audio_seconds", None)
    (tmp_path / "protocols.json").write_text(json.dumps(protocols))

    caption = evaluate_suite("coco-caption", "package:tiny_system", data_dir=data, protocol_file=tmp_path / "protocols.json",
                             features=features, progress=False)
    tasks = caption["systems"]["trained"]["tasks"]
    assert caption["samples"] == {"I->T": 3} and np.isfinite(tasks["I->T"]["CIDEr"])
    assert "| I->T | CIDEr |" in markdown(caption) and "156.7" in markdown(caption)

    t2i = evaluate_suite("coco-t2i", "package:tiny_system", data_dir=data, protocol_file=tmp_path / "protocols.json",
                         features=features, progress=False)
    assert np.isfinite(t2i["systems"]["trained"]["tasks"]["T->I"]["FID"]) and t2i["paper"]["T->I"]["FID"] == 11.28
    t2a = evaluate_suite("audiocaps-t2a", "package:tiny_system", data_dir=data, protocol_file=tmp_path / "protocols.json",
                         features=features, progress=False)
    assert np.isfinite(t2a["systems"]["trained"]["tasks"]["T->A"]["FD"])

    (data / "msrvtt-t2v").mkdir()
    shutil.copy(data / "audiocaps-t2a" / "pairs.json", data / "msrvtt-t2v" / "pairs.json")
    with pytest.raises(ValueError, match="holds audio pairs"):
        evaluate_suite("msrvtt-t2v", "package:tiny_system", data_dir=data, progress=False)
    (data / "coco-t2i" / "pairs" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match="1.png: no such file"):
        evaluate_suite("coco-t2i", "package:tiny_system", data_dir=data, progress=False)


def test_demo_and_train_output_folders_are_checkpoints(tmp_path, one_thread):
    """`evaluate --checkpoint outputs/demo` (the demo saves its system in checkpoint/) and a `train` output."""
    from nextgpt_mini.evaluation.suites import load_system
    from nextgpt_mini.utils import asset_path

    shutil.copytree(asset_path("package:tiny_system"), tmp_path / "demo" / "checkpoint")
    model = load_system(str(tmp_path / "demo"), "tiny")
    assert model.profile.name == "tiny" and any("linear_path" in n for n, _ in model.named_parameters())
    # a `train` output folder: checkpoint/trainable.safetensors and no config.json
    (tmp_path / "train" / "checkpoint").mkdir(parents=True)
    shutil.copy(asset_path("package:tiny_system") / "trained.safetensors", tmp_path / "train" / "checkpoint" / "trainable.safetensors")
    trained = load_system(str(tmp_path / "train"), "tiny")
    assert all(torch.equal(a, b) for a, b in zip(trained.trained_state_dict().values(), model.trained_state_dict().values()))


def test_the_trained_system_beats_the_untrained_one_on_every_metric(one_thread):
    """The acceptance of the toy suite, on the shipped trained system, 16 requests per direction."""
    from nextgpt_mini.evaluation.suites import better, evaluate_suite, rows

    report = evaluate_suite("toy", "package:tiny_system", limit=16, progress=False)
    compared = [(task, metric, per) for task, metric, per, _ in rows(report) if per["untrained"] is not None]
    assert any("(oracle decoder)" in metric for _, metric, _ in compared), compared  # the reader's columns are there
    assert any("(decoder fed the caption)" in metric for _, metric, _, _ in rows(report))  # measured once, trained column
    worse = [(task, metric, per) for task, metric, per in compared if not better(metric, per["trained"], per["untrained"])]
    # Known and open: the tiny LLM answers every sound request with "... over pink noise", so the
    # noise of the sounds it asks for is right no more often than by chance (the reader hears
    # what was asked for: the decoder fed the caption scores 100%).
    known = [w for w in worse if w[0] == "T->A" and w[1].startswith("noise %")]
    assert not [w for w in worse if w not in known], worse


def _tiny_clip_folder(folder):
    """A random CLIP with a character-level tokenizer, saved as a hub folder (no download)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")
    images = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    torch.manual_seed(0)
    layers = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    model = CLIPModel(CLIPConfig(text_config=dict(layers, vocab_size=len(vocab), bos_token_id=0, eos_token_id=1, pad_token_id=1),
                                 vision_config=dict(layers, image_size=30, patch_size=6), projection_dim=16))
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return model, CLIPProcessor.from_pretrained(folder)


def test_real_clip_features_give_torchmetrics_clip_score(tmp_path):
    """The real suites' CLIP path (a local folder in place of the hub id) against torchmetrics' own
    CLIPScore on the same model: our glue computes the same number."""
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from torchmetrics.multimodal import CLIPScore

    from nextgpt_mini.evaluation.features import RealFeatures

    model, processor = _tiny_clip_folder(tmp_path / "clip")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(4)]
    texts = ["a red circle", "a blue square", "green", "a small purple diamond"]
    real = RealFeatures(clip=str(tmp_path / "clip"), device="cpu")
    ours = metrics.clip_score(real.image(images), real.text(texts))
    # torchmetrics 1.9 expects transformers 4's tensors from get_*_features; transformers 5 returns
    # model outputs (one reason our glue computes the score from features itself)
    class Tensors(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip, self.config = clip.eval(), clip.config

        def get_image_features(self, *args, **kwargs):
            return self.clip.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return self.clip.get_text_features(*args, **kwargs).pooler_output

    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    per_pair, _ = _clip_score_update(pixels, texts, Tensors(model), processor)  # 100 x cos per pair
    mine = 100 * torch.nn.functional.cosine_similarity(real.image(images), real.text(texts), dim=-1)
    torch.testing.assert_close(mine, per_pair.float(), atol=1e-3, rtol=1e-4)
    assert ours == pytest.approx(float(per_pair.clamp(min=0).mean()), abs=1e-3)  # Hessel et al.: floor per pair
    # torchmetrics' CLIPScore floors the mean instead: equal to ours when every cosine is positive
    reference = CLIPScore(model_name_or_path=lambda: (Tensors(model), processor))
    assert float(reference(pixels, texts)) == pytest.approx(max(float(per_pair.mean()), 0.0), abs=1e-3)
    with pytest.raises(OSError, match="hf download"):
        RealFeatures(clip=str(tmp_path / "missing"), device="cpu").image(images)
