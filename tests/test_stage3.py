"""Stage 3 (MosIT): the blended sampler, and the trained system asks for media when, and only when, asked."""

import pytest

from nextgpt_mini import load_profile
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage3_data
from nextgpt_mini.tiny.dialogues import TASKS, toy_dialogues
from nextgpt_mini.tiny.render import encoder_input
from nextgpt_mini.training.stage3 import BlendedBatches, behaviour_report, make_eval_fn, prepare_dialogues, signal_runs
from nextgpt_mini.training.trainer import Trainer
from nextgpt_mini.utils import torch_threads


@pytest.fixture(scope="module")
def small_set():
    model = NextGPT.from_profile("tiny")
    dialogues = toy_dialogues(4 * len(TASKS), seed=5)  # 4 of each task
    dialogues += toy_dialogues(11, seed=6, tasks=("T->V",))  # one task larger than the rest
    with torch_threads(1):
        data = prepare_dialogues(model, Decoders("tiny"), dialogues, render=encoder_input)
    return model, data


def test_each_batch_is_one_task_taken_round_robin_and_small_tasks_repeat(small_set):
    model, data = small_set
    source = BlendedBatches(model, data, batch_size=4, seed=0)
    tasks = [source.indices(step)[0] for step in range(2 * len(source.order))]
    assert tasks == source.order * 2 and sorted(source.order) == sorted(TASKS)
    for step in range(len(source.order)):
        task, idx = source.indices(step)
        assert {data.dialogues[i]["task"] for i in idx} == {task}
    # T->V (15 dialogues) is not exhausted after 3 of its batches; a 4-dialogue task is re-read from its 2nd batch on
    tv = source.order.index("T->V")
    seen = [i for k in range(3) for i in source.indices(tv + k * len(source.order))[1]]
    assert len(set(seen)) == 12
    # deterministic, and the processes of a distributed run split each batch without overlap
    again = BlendedBatches(model, data, batch_size=4, seed=0)
    assert [again.indices(s) for s in range(5)] == [source.indices(s) for s in range(5)]
    a, b = source.batch(3, rank=0, world=2), source.batch(3, rank=1, world=2)
    assert a["input_ids"].shape[0] == b["input_ids"].shape[0] == 2


def test_batches_carry_soft_tokens_signal_spans_and_targets(small_set):
    model, data = small_set
    source = BlendedBatches(model, data, batch_size=4, seed=0)
    for step in range(len(source.order)):
        batch = source.batch(step)
        for b in range(len(batch["signal_spans"])):
            assert len(batch["signal_targets"][b]) == len(batch["signal_spans"][b])
            n_slots = int((batch["input_ids"][b] == -1).sum())
            assert (0 if batch["media"][b] is None else len(batch["media"][b])) == n_slots
        if batch["task"] == "T->I,A":
            assert [s[0] for s in batch["signal_spans"][0]] == ["image", "audio"]
    loss = model.stage_loss(source.batch(source.order.index("I->A")), "3")
    assert {"loss", "nll", "audio_distance"} <= set(loss)


def test_signal_runs():
    ids = {"image": [10, 11], "audio": [20, 21, 22]}
    assert signal_runs([1, 10, 11, 2], ids) == [("image", True)]
    assert signal_runs([10, 2, 20, 21, 22], ids) == [("image", False), ("audio", True)]
    assert signal_runs([11, 10], ids) == [("image", False)]
    assert signal_runs([1, 2, 3], ids) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage3")
    with torch_threads(1):
        profile = load_profile("tiny")
        profile.train.stage_overrides["3"]["eval_every"] = 10_000  # the tiny recipe; evaluate at the start and the end only
        model = NextGPT.from_profile(profile)
        model.enable_lora()
        decoders = Decoders(profile, cache_dir=out / "cache")
        train, test = stage3_data(model, decoders, seed=profile.seed)
        cfg = profile.train.for_stage("3")
        source = BlendedBatches(model, train, cfg.batch_size, profile.seed)
        result = Trainer(model, "3", source, profile.train, out_dir=out / "run", eval_fn=make_eval_fn(test), progress=False).train()
    return model, result, test, decoders, out


def test_stage_3_teaches_when_to_ask_for_media(trained):
    model, result, *_ = trained
    first, last = result.first_eval, result.last_eval
    assert last["heldout_nll"] < 0.2 * first["heldout_nll"]
    assert last["signal_accuracy"] >= 0.9, last
    # before: it never asks for media (half the tasks want none, so it is half right overall)
    assert all(first[f"signal_accuracy[{t}]"] < 0.2 for t in ("T->I", "T->V", "T->A", "I->A", "V->A", "I->V")), first


def test_stage_3_checkpoint_reloads(trained):
    model, _, test, _, out = trained
    fresh = NextGPT.from_profile(model.profile)
    names = fresh.load_trained(out / "run")
    assert {n.split(".")[0] for n in names} == {"llm", "input_projector", "output_projectors"}
    assert any("lora_" in n for n in names) and any("new_rows" in n for n in names)
    with torch_threads(1):
        assert behaviour_report(fresh, test, limit=11) == behaviour_report(model, test, limit=11)


def test_generate_decides_output_modalities_from_signal_tokens(trained):
    from nextgpt_mini.course import data_samples_dir

    model, _, _, decoders, _ = trained
    with torch_threads(1):
        image = model.generate("Show me a big red circle on the left.", decoders=decoders)
        sound = model.generate("Play a low steady tone over white noise.", decoders=decoders)
        text = model.generate("What sound does a red circle make?", decoders=decoders)
        seen = model.generate("Describe this image.", [data_samples_dir() / "images" / "image_00.png"], decoders=decoders)
    assert len(image.images) == 1 and not image.videos and not image.audios and image.text.startswith("Here is")
    assert len(sound.audios) == 1 and not sound.images
    assert not (text.images or text.videos or text.audios) and "steady tone" in text.text
    assert seen.text.startswith("It shows") and not seen.images
    assert "[IMG" not in image.text and "###" not in image.text


def test_partial_signal_runs_are_completed_and_capped():
    from nextgpt_mini.models.signal_tokens import complete_runs

    ids = {"image": [10, 11, 12, 13], "audio": [20, 21]}
    out, runs, completed = complete_runs([1, 10, 11, 2], ids)
    assert out == [1, 10, 11, 12, 13, 2] and runs == [("image", 1, 5)] and completed == ["image"]
    out, runs, completed = complete_runs([20, 21, 3, 10, 11, 12, 13, 20], ids, max_per_modality=1)
    assert out == [20, 21, 3, 10, 11, 12, 13] and [r[0] for r in runs] == ["audio", "image"] and completed == []


def test_saved_system_is_small_and_reloads_identically_in_a_fresh_process(trained, tmp_path):
    import subprocess
    import sys

    from nextgpt_mini.generation import save_result

    model, _, _, decoders, _ = trained
    folder = model.save_pretrained(tmp_path / "system")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "trained.safetensors"]
    assert (folder / "trained.safetensors").stat().st_size < 5e6
    prompt = "Make a video of a red circle moving left quickly."
    with torch_threads(1):
        here = save_result(model.generate(prompt, seed=3, decoders=decoders), tmp_path / "here", decoders)
    run = subprocess.run([sys.executable, "-m", "nextgpt_mini.cli", "generate", prompt, "--checkpoint", str(folder),
                          "--seed", "3", "--out", str(tmp_path / "there"), "--no-progress"],
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "there" / "output.txt").read_text() == here["text"].read_text()
    assert here["video"] and (tmp_path / "there" / here["video"][0].name).read_bytes() == here["video"][0].read_bytes()
