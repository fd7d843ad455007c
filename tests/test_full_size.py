"""Full size without weights: the paper and colab profiles' parameter tables (Table 1) and memory
plans, all built on the meta device (no download, no large allocation)."""

import subprocess
import sys

import pytest

from nextgpt_mini import load_profile
from nextgpt_mini.models.decoder_configs import full_size_counts
from nextgpt_mini.models.decoders import decoder_parameter_counts
from nextgpt_mini.scaling.memory import GB, plan
from nextgpt_mini.scaling.params import DIFFERENCES, PAPER_TABLE_1, full_size_table_with_decoders
from nextgpt_mini.tiny.decoders import TINY_PIPELINES


def test_decoder_configs_give_the_published_parameter_counts():
    sd = full_size_counts("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert (sd["unet"], sd["vae"], sd["text_encoder"]) == (859_520_964, 83_653_863, 123_060_480)
    assert full_size_counts("cvssp/audioldm-l-full")["unet"] == 739_139_080  # the model card's 739 M
    assert sum(full_size_counts("cvssp/audioldm-s-full-v2").values()) == 420_980_338  # "421 M"
    assert sum(full_size_counts("cerspense/zeroscope_v2_576w").values()) == 1_835_275_563


def test_paper_table_matches_table_1_or_names_the_difference():
    rows = {r.module: r for r in full_size_table_with_decoders("paper")}
    for module, reference in PAPER_TABLE_1.items():
        off = abs(rows[module].total - reference) / reference
        assert off <= 0.05 or module in DIFFERENCES, (module, rows[module].total, reference)
    trained = sum(r.trainable for r in rows.values())
    assert 0.009 < trained / sum(r.total for r in rows.values()) < 0.012  # "about 1%"


def test_params_cli_runs_offline_fast_and_small():
    code = ("import resource, sys, time; from nextgpt_mini.cli import main; t = time.perf_counter(); "
            "rc = main(['params', '--profile', 'paper']); "
            "print('SECONDS', time.perf_counter() - t); "
            "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "video decoder" in out and "trained share as the paper counts it" in out
    seconds = float(out.split("SECONDS")[1].split()[0])
    rss_gb = int(out.split("RSS_KB")[1].split()[0]) / 1024**2
    assert seconds < 60 and rss_gb < 4, (seconds, rss_gb)


def test_a_decoder_folder_is_counted_from_its_saved_configs(tmp_path):
    pipe = TINY_PIPELINES["audio"]()  # the trained one: its vocoder's class lives in this package
    pipe.save_pretrained(tmp_path / "audioldm")
    profile = load_profile("tiny", {"audio_decoder.name_or_path": str(tmp_path / "audioldm")})
    assert decoder_parameter_counts(profile, "audio") == decoder_parameter_counts(load_profile("tiny"), "audio")


def test_colab_plan_fits_a_t4_for_inference_and_stage_3():
    for stage in (None, "3"):
        p = plan("colab", stage=stage, gpu_gb=15)
        assert p.fits, (stage, p.gpu_total / GB)


def test_paper_stage_3_needs_more_than_a_t4_and_says_what_to_switch():
    p = plan("paper", stage="3", gpu_gb=15)
    assert not p.fits and any("4 bits" in tip for tip in p.advice())
    assert plan("paper", stage="3", dtype="int4", gpu_gb=80).fits
    # quantizing the LLM shrinks exactly its decoder layers' weights: bitsandbytes leaves the
    # embedding and the LM head (2 x 32000 x 4096) in 16 bits
    fp16, int4 = plan("paper", stage="3"), plan("paper", stage="3", dtype="int4")
    rows = 2 * 32000 * 4096
    assert (fp16.items[1].gpu - 2 * rows) / (int4.items[1].gpu - 2 * rows) == pytest.approx(2 / (0.5 + 1 / 64))


def test_memory_cli_rejects_an_ambiguous_request(capsys):
    from nextgpt_mini.cli import main

    assert main(["memory", "--profile", "colab"]) == 2
    assert "exactly one of --stage" in capsys.readouterr().err



def test_memory_plans_count_only_the_decoder_components_that_are_loaded():
    # Decoders passes safety_checker=None, so its 304 M parameters never reach a GPU (issue 18)
    from nextgpt_mini.scaling.memory import component_counts

    profile = load_profile("paper")
    sd = full_size_counts(profile.image_decoder.name_or_path)
    assert sd["safety_checker"] == 303_981_588
    counts = component_counts(profile)
    assert counts["image decoder"] == sum(sd.values()) - sd["safety_checker"]
    decoders = next(i for i in plan("paper", stage=None).items if i.component.startswith("largest decoder"))
    assert decoders.gpu + decoders.cpu == 2 * sum(counts[f"{m} decoder"] for m in ("image", "video", "audio"))
