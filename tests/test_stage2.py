"""Stage 2 on the shipped tiny LLM and the tiny decoders: the output projectors really align."""

import pytest
import torch

from nextgpt_mini import load_profile
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage2_data
from nextgpt_mini.training.stage2 import SignalBatches, alignment_report, make_eval_fn, project_captions
from nextgpt_mini.training.trainer import Trainer, select_trainable
from nextgpt_mini.utils import torch_threads


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2")
    with torch_threads(1):
        profile = load_profile("tiny")
        profile.train.stage_overrides["2"]["eval_every"] = 10_000  # evaluate at the start and the end only
        profile.train.steps["2"] = 500  # a third of the shipped recipe's: enough to show that it learns
        model = NextGPT.from_profile(profile)
        rows_before = {n: p.detach().clone() for n, p in model.llm.named_parameters()}
        decoders = Decoders(profile, cache_dir=out / "cache")
        train, test = stage2_data(decoders, seed=profile.seed)
        source = SignalBatches(train, model.tokenizer, model.signal, profile.llm.template, profile.train.for_stage("2").batch_size,
                               profile.llm.max_length, profile.seed)
        result = Trainer(model, "2", source, profile.train, out_dir=out, eval_fn=make_eval_fn(test), progress=False).train()
    return model, result, test, decoders, rows_before, out


def test_stage_2_lowers_the_distance_and_retrieves_the_right_caption(trained):
    model, result, *_ = trained
    first, last = result.first_eval, result.last_eval
    assert result.steps == model.profile.train.steps["2"]
    assert last["distance"] < 0.5 * first["distance"], (first["distance"], last["distance"])
    assert last["retrieval"] >= 3 * last["retrieval_chance"], (last["retrieval"], last["retrieval_chance"])
    assert last["heldout_nll"] < 0.5 * first["heldout_nll"]  # it learned to ask for the decoder
    for m in ("image", "video", "audio"):  # the right target is nearer than the others, for every modality
        assert last[f"{m}_distance"] < last[f"{m}_other_distance"]


def test_stage_2_leaves_the_llm_frozen_but_the_signal_rows(trained):
    model, _, _, _, before, _ = trained
    changed = []
    for name, p in model.llm.named_parameters():
        if name in before and not torch.equal(before[name], p.detach()):
            changed.append(name)
    # only the new-rows parameters of the embedding and LM head moved
    assert changed and all("new_rows" in n for n in changed), changed


def test_stage_2_checkpoint_reloads_and_projects_the_same(trained):
    model, _, test, _, _, out = trained
    fresh = NextGPT.from_profile(model.profile)
    names = fresh.load_trained(out)
    assert names and all(n.startswith(("output_projectors.", "llm.")) for n in names)
    assert not any(n.startswith("input_projector") for n in names)
    with torch_threads(1):
        torch.testing.assert_close(project_captions(fresh, test["image"]), project_captions(model, test["image"]))


def test_projected_conditioning_drives_the_decoders(trained, tmp_path):
    model, _, test, decoders, _, _ = trained
    with torch_threads(1):
        for m in ("image", "video", "audio"):
            cond = project_captions(model, test[m])[:1]
            media = decoders[m].generate(cond, seed=0, progress=False)
            assert decoders[m].save(media[0], tmp_path / f"{m}.{dict(image='png', video='mp4', audio='wav')[m]}").stat().st_size > 0
            assert alignment_report(model, {m: test[m]})[f"{m}_distance"] > 0


def test_optional_denoising_loss_reaches_the_output_projectors_through_the_frozen_unet():
    from nextgpt_mini.tiny.data import attach_latents

    with torch_threads(1):
        # alignment off: any gradient on the projector comes from the denoising term alone
        profile = load_profile("tiny", {"train.denoising_loss": 1.0, "train.alignment_scale": 0.0,
                                        "train.video_alignment_scale": 0.0})
        model = NextGPT.from_profile(profile)
        select_trainable(model, "2")
        decoders = Decoders(profile)
        train, _ = stage2_data(decoders, n_train=8, n_test=2)
        attach_latents(train, decoders)
        assert train["image"].latents.shape == (8, 4, 16, 16) and train["video"].latents.shape == (8, 4, 4, 16, 16)
        assert train["audio"].latents is None  # AudioLDM: alignment distance only
        source = SignalBatches(train, model.tokenizer, model.signal, profile.llm.template, 4, profile.llm.max_length)
        batch = source.batch(0)
        with pytest.raises(ValueError, match="needs the decoders"):
            model.stage_loss(batch, "2")
        model.decoders = decoders
        unet_before = decoders["image"].pipe.unet.conv_out.weight.detach().clone()
        out = model.stage_loss(batch, "2")
        out["loss"].backward()
    assert "image_denoising" in out and out["image_denoising"] > 0
    assert model.output_projectors["image"].fc_out.weight.grad.abs().sum() > 0
    assert decoders["image"].pipe.unet.conv_out.weight.grad is None  # the decoder stays frozen
    assert torch.equal(decoders["image"].pipe.unet.conv_out.weight, unet_before)
    with pytest.raises(ValueError, match="image and video decoders"):
        decoders["audio"].clean_latents([torch.zeros(4)])
