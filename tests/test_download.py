"""`nextgpt-mini download`: what each profile fetches, and a clear answer offline (tests never reach
the network: HF_HUB_OFFLINE=1)."""

from types import SimpleNamespace

from nextgpt_mini import hub, load_profile
from nextgpt_mini.cli import main
from nextgpt_mini.config import HUB
from nextgpt_mini.hub import select_files, sources

# listings shaped as the published repositories are (REPORT.md of shared/reference/hub-configs)
SD_LISTING = ["model_index.json", "README.md", ".gitattributes", "v1-5-pruned.safetensors", "v1-5-pruned-emaonly.ckpt",
              "feature_extractor/preprocessor_config.json", "scheduler/scheduler_config.json",
              "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/pytorch_model.bin",
              "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/pytorch_model.bin",
              "text_encoder/model.fp16.safetensors", "tokenizer/merges.txt", "tokenizer/vocab.json",
              "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "unet/config.json",
              "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
              "unet/diffusion_pytorch_model.fp16.bin", "unet/diffusion_pytorch_model.fp16.safetensors",
              "unet/diffusion_pytorch_model.non_ema.bin", "unet/diffusion_pytorch_model.non_ema.safetensors",
              "vae/config.json", "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.safetensors"]
ZEROSCOPE_LISTING = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                     "text_encoder/pytorch_model.bin", "tokenizer/merges.txt", "tokenizer/vocab.json",
                     "tokenizer/tokenizer_config.json", "unet/config.json", "unet/diffusion_pytorch_model.bin",
                     "vae/config.json", "vae/diffusion_pytorch_model.bin", "zs2_576w/open_clip_pytorch_model.bin",
                     "zs2_576w/text2video_pytorch_model.pth"]


def test_select_files_takes_each_component_once_in_the_best_format_and_nothing_unloaded():
    assert select_files(SD_LISTING) == [
        "feature_extractor/preprocessor_config.json", "model_index.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors"]
    zeroscope = select_files(ZEROSCOPE_LISTING)  # .bin is all it has; zs2_576w/ is another UI's
    assert [f for f in zeroscope if not f.endswith((".json", ".txt"))] == [
        "text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"]
    vicuna = ["config.json", "generation_config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
              "pytorch_model.bin.index.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "README.md"]
    assert select_files(vicuna) == sorted(set(vicuna) - {"README.md"})
    clip = ["config.json", "flax_model.msgpack", "tf_model.h5", "pytorch_model.bin", "model.safetensors", "vocab.json",
            "merges.txt", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"]
    assert [f for f in select_files(clip) if not f.endswith((".json", ".txt"))] == ["model.safetensors"]
    sharded = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
               "pytorch_model.bin.index.json"]
    assert select_files(sharded) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                     "model.safetensors.index.json"]


def test_download_fetches_only_the_selected_files_and_says_the_total_first(tmp_path, capsys, monkeypatch):
    """Online (faked: the hub's listing and snapshot_download are stand-ins), with sizes."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr(hub, "is_present", lambda source, folder=None: source.ref != HUB["sd_v1_5"])
    sizes = {name: 3_438_167_536 if name.startswith("unet/") else 1000 for name in SD_LISTING}
    listing = SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=sizes[n]) for n in SD_LISTING])
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, ref, files_metadata=False: listing)
    fetched = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda ref, cache_dir=None, allow_patterns=None, **kw: fetched.append((ref, allow_patterns, kw)))
    assert [s.ref for s in hub.download(load_profile("colab"), tmp_path)] == [HUB["sd_v1_5"]]
    assert fetched == [(HUB["sd_v1_5"], select_files(SD_LISTING), {})]
    out = capsys.readouterr().out
    total = sum(sizes[f] for f in select_files(SD_LISTING))
    assert out.index(f"1 sources, {total / 1e9:.2f} GB in all") < out.index("fetching image decoder")
    assert "unet/diffusion_pytorch_model.safetensors" in out and "non_ema" not in out and "safety_checker" not in out


def test_dry_run_offline_estimates_the_colab_download_from_parameter_counts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--profile", "colab", "--dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    total = float(out.split(" GB in all")[0].split()[-1])
    assert 15 < total <= 18, out  # was about 50-55 GB with every format and variant
    assert "859520964" not in out and "3.438 GB" in out  # SD's UNet: 859,520,964 fp32 parameters
    assert HUB["clip_vit_b32"] in out and HUB["clap_htsat"] in out and "safety_checker" not in out
    assert not any(tmp_path.iterdir())  # nothing fetched, nothing written
    assert main(["download", "--profile", "colab", "--dry-run", "--no-eval"]) == 0
    assert float(capsys.readouterr().out.split(" GB in all")[0].split()[-1]) < total - 1


def test_each_profile_lists_what_it_loads_from_the_network():
    assert sources(load_profile("tiny")) == []  # everything ships in the package or is built locally
    colab = {s.what: s.ref for s in sources(load_profile("colab"))}
    assert colab == {"ImageBind": HUB["imagebind_huge"], "LLM": HUB["tinyllama_chat"], "image decoder": HUB["sd_v1_5"],
                     "video decoder": HUB["zeroscope_576w"], "audio decoder": HUB["audioldm_s_full_v2"],
                     "CLIP (evaluation)": HUB["clip_vit_b32"], "CLAP (evaluation)": HUB["clap_htsat"]}
    assert len(sources(load_profile("colab"), evaluation=False)) == 5
    assert {s.ref for s in sources(load_profile("paper"))} >= {HUB["vicuna_7b"], HUB["audioldm_l_full"]}


def test_check_reports_missing_weights_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "--profile", "colab", "--dir", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 7 and HUB["zeroscope_576w"] in out and f"HF_HUB_CACHE={tmp_path / 'hub'}" in out


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
