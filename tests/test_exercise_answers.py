"""The exercise checks not covered by a chapter's own test file: each rejects a plausible wrong answer
and accepts the right one (the committed runs show each stub "not done yet", tests/test_course.py)."""

import torch

from nextgpt_mini import load_profile
from nextgpt_mini.course import ex02, ex03, ex05, ex06, ex07, ex08, ex09, ex10
from nextgpt_mini.evaluation.metrics import clip_score


def verdicts(capsys) -> list[str]:
    out = capsys.readouterr().out.splitlines()
    return [line.split(": ", 1)[1][:7] for line in out if line.startswith("exercise ")]


def test_02_2_the_weakest_audio_attribute_of_the_given_model(capsys, one_thread, tmp_path):
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.tiny import world as tw
    from nextgpt_mini.tiny.data import stage1_data
    from nextgpt_mini.training.stage1 import greedy_captions

    model = NextGPT.from_profile(load_profile("tiny"))  # untrained: its answers are guesses, and so is its weakest
    _, test = stage1_data(model, n_train=3, n_test=12, cache_dir=str(tmp_path))
    captions = greedy_captions(model, "audio", test["audio"].embeddings)
    scores = [tw.attribute_scores(c, it) for c, it in zip(captions, test["audio"].items)]
    rate = {k: sum(s[k] for s in scores) for k in scores[0]}
    worst, best = min(rate, key=rate.get), max(rate, key=rate.get)
    ex02.ex02_2(best if rate[best] > rate[worst] else "colour", model, test)
    ex02.ex02_2(worst, model, test)
    assert verdicts(capsys) == ["not yet", "ok"]


def test_03_1_and_03_2_counts(capsys):
    from nextgpt_mini.models.llm import build_empty_llm, load_llm, lora_parameter_count

    _, tok = load_llm(load_profile("tiny").llm)
    pieces = len(tok("[VID7]", add_special_tokens=False)["input_ids"])
    ex03.ex03_1(1)  # as if [VID7] were already one token
    ex03.ex03_1(pieces)
    colab = load_profile("colab")
    mha = colab.llm.num_layers * colab.lora.r * 4 * 2 * colab.llm.hidden_size  # k and v as wide as q: not TinyLlama
    ex03.ex03_2(mha)
    ex03.ex03_2(lora_parameter_count(build_empty_llm(colab.llm), colab.lora))
    assert verdicts(capsys) == ["not yet", "ok", "not yet", "ok"]


def test_05_3_rejects_latents_that_are_not_the_pipelines(capsys):
    from nextgpt_mini.models.decoders import Decoders

    decoders = Decoders(load_profile("tiny"))
    image = decoders["image"]
    cfg = image.cfg
    image.pipe.set_progress_bar_config(disable=True)
    out = image.pipe(prompt_embeds=image.targets(["a big red circle on the left"]), negative_prompt_embeds=image.negative()[None],
                     num_inference_steps=ex05.STEPS_05_3, guidance_scale=ex05.GUIDANCE_05_3, height=cfg.height, width=cfg.width,
                     generator=torch.Generator().manual_seed(0), output_type="latent").images
    ex05.ex05_3(torch.zeros_like(out), decoders)
    ex05.ex05_3(out, decoders)
    assert verdicts(capsys) == ["not yet", "ok"]


def test_06_1_and_06_2(capsys):
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.tiny.dialogues import toy_dialogues

    class Held:  # what stage3_data's test set offers the check: its dialogues
        dialogues = toy_dialogues(20, seed=1, split="test")

    right = sum("output" in d["turns"][1] for d in Held.dialogues)
    ex06.ex06_1(len(Held.dialogues), Held)
    ex06.ex06_1(right, Held)
    model = NextGPT.from_profile(load_profile("tiny"))
    turns = [{"role": "user", "text": "Paint a red circle."}, {"role": "assistant", "text": "Here you go."}]
    ex06.ex06_2({"task": "T->I", "turns": turns}, model)  # the answer's output forgotten
    turns[1]["output"] = {"modality": "image", "caption": "a red circle"}
    ex06.ex06_2({"task": "T->I", "turns": turns}, model)
    assert verdicts(capsys) == ["not yet", "ok", "not yet", "ok"]


def test_07_1_and_07_2(capsys):
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.models.signal_tokens import complete_runs

    model = NextGPT.from_profile(load_profile("tiny"))
    ids = model.tokenizer("Here it is. [VID0][VID1]", add_special_tokens=False)["input_ids"] + model.signal.ids["audio"]
    ex07.ex07_1(["audio"], ids, model)
    ex07.ex07_1(["video", "audio"], ids, model)
    ex07.ex07_2(lambda ids: list(ids), model)  # leaves the runs as they are
    ex07.ex07_2(lambda ids: complete_runs(list(ids), model.signal.ids, max_per_modality=99)[0], model)
    assert verdicts(capsys) == ["not yet", "ok", "not yet", "ok"]


def test_08_1_and_08_2(capsys):
    from nextgpt_mini.scaling.memory import plan
    from nextgpt_mini.scaling.params import full_size_table_with_decoders

    rows = full_size_table_with_decoders("paper", stage="1")
    fraction = sum(r.trainable for r in rows) / sum(r.total for r in rows)
    ex08.ex08_1(fraction)  # a fraction, not a percentage
    ex08.ex08_1(100 * fraction)
    best = max(b for b in range(1, 65) if plan("colab", stage="3", checkpointing=False, batch_size=b).fits)
    ex08.ex08_2(best + 1)
    ex08.ex08_2(best)
    assert verdicts(capsys) == ["not yet", "ok", "not yet", "ok"]


def test_09_1_the_clip_score_floors_each_pair(capsys):
    import torch.nn.functional as F

    def unfloored(media, texts):
        return float((100 * (F.normalize(media, dim=-1) * F.normalize(texts, dim=-1)).sum(-1)).mean())

    ex09.ex09_1(unfloored)
    ex09.ex09_1(lambda media, texts: clip_score(media, texts))
    assert verdicts(capsys) == ["not yet", "ok"]


def test_10_checks(capsys):
    from nextgpt_mini.models.nextgpt import NextGPT

    ex10.ex10_1(4 * 128 * 2)  # the new rows alone
    ex10.ex10_1(ex10._stage2_count(8) - ex10._stage2_count(4))
    ex10.ex10_2(lambda x: (x[:, None] - x[None]).norm(dim=-1).mean())  # the diagonal counted
    ex10.ex10_2(ex10.reference_spread)
    profile = load_profile("tiny")
    ex10.ex10_3((NextGPT.from_profile(profile), NextGPT.from_profile(profile)), profile)  # neither trained
    assert verdicts(capsys) == ["not yet", "ok", "not yet", "ok", "not yet"]
