"""`nextgpt-mini download`: what each profile fetches, and a clear answer offline (tests never reach
the network: HF_HUB_OFFLINE=1)."""

from nextgpt_mini import load_profile
from nextgpt_mini.cli import main
from nextgpt_mini.config import HUB
from nextgpt_mini.hub import sources


def test_each_profile_lists_what_it_loads_from_the_network():
    assert sources(load_profile("tiny")) == []  # everything ships in the package or is built locally
    colab = {s.what: s.ref for s in sources(load_profile("colab"))}
    assert colab == {"ImageBind": HUB["imagebind_huge"], "LLM": HUB["tinyllama_chat"], "image decoder": HUB["sd_v1_5"],
                     "video decoder": HUB["zeroscope_576w"], "audio decoder": HUB["audioldm_s_full_v2"]}
    assert {s.ref for s in sources(load_profile("paper"))} >= {HUB["vicuna_7b"], HUB["audioldm_l_full"]}


def test_check_reports_missing_weights_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--profile", "colab", "--dir", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 5 and HUB["zeroscope_576w"] in out and f"HF_HUB_CACHE={tmp_path / 'hub'}" in out


def test_download_offline_says_what_is_missing_and_what_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--profile", "paper", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and HUB["vicuna_7b"] in err[0]
    assert f"nextgpt-mini download --profile paper --dir {tmp_path}" in err[0]
    assert not any(tmp_path.rglob("*.part"))  # nothing half-written


def test_a_local_folder_is_not_downloaded(tmp_path):
    profile = load_profile("paper", {"llm.name_or_path": str(tmp_path)})
    assert "LLM" not in {s.what for s in sources(profile)}
