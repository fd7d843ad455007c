"""A Hugging Face cache laid out as the hub snapshots of every repository the colab and paper
profiles load, holding random weights: the package's real loading code runs through hub ids with
HF_HUB_OFFLINE=1 and nothing downloaded.

    python benchmarks/dry_run_cache.py --out /tmp/nextgpt-dry          # both profiles (~2 min, 5 GB)
    export HF_HUB_OFFLINE=1 HF_HUB_CACHE=/tmp/nextgpt-dry/hub NEXTGPT_MINI_CACHE=/tmp/nextgpt-dry/imagebind
    load_profile("colab", DEPTH)   # DEPTH below: ImageBind's towers cut to the cache's depth

What each repository holds (`REPOS`): the config files of configs/hub/ (the repositories' own, or
the closest published relatives that configs/hub/SOURCES.md names), with only depth cut (decoder
layers, ResNet/attention blocks per stage, text-encoder layers: `--layers`); every width,
vocabulary, token length, channel count and dtype as published; weights in the file formats the
repositories ship (safetensors for SD-1.5, TinyLlama and AudioLDM-s-v2; .bin for Zeroscope (fp16),
AudioLDM-l and Vicuna (fp16, sharded); Meta's .pth for ImageBind).

Tokenizers: SD-1.5's and Zeroscope's are the real CLIP BPE (vocab.json and merges.txt made from
the BPE file imagebind-unofficial ships, as CLIP's own tokenizer builds its vocabulary). The LLaMA
tokenizers (TinyLlama, Vicuna) and CLAP's RoBERTa tokenizer are stand-ins: the real special
tokens, ids, vocabulary size and (TinyLlama) chat template, over a small learnt vocabulary padded
with pieces no text reaches (configs/hub/stand-ins/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HUB_CONFIGS = ROOT / "configs" / "hub"
# ImageBind's towers at the cache's depth: the only profile fields the cache's depth changes (the
# LLM and the decoders read their depth from the repositories' config files)
DEPTH = {"encoder.vision_num_blocks": 1, "encoder.text_num_blocks": 1, "encoder.audio_num_blocks": 1}
PROFILE_REPOS = {
    "colab": ["TinyLlama/TinyLlama-1.1B-Chat-v1.0", "stable-diffusion-v1-5/stable-diffusion-v1-5",
              "cerspense/zeroscope_v2_576w", "cvssp/audioldm-s-full-v2"],
    "paper": ["lmsys/vicuna-7b-v1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "cerspense/zeroscope_v2_576w",
              "cvssp/audioldm-l-full"],
}


def hub_config(*parts) -> dict:
    return {k: v for k, v in json.loads(HUB_CONFIGS.joinpath(*parts).read_text()).items() if not k.startswith("_")}


def snapshot(hub: Path, repo: str) -> Path:
    """hub/models--org--name/snapshots/<revision>/, with refs/main naming it (huggingface_hub's layout)."""
    base = hub / f"models--{repo.replace('/', '--')}"
    revision = hashlib.sha1(repo.encode()).hexdigest()
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(revision)
    folder = base / "snapshots" / revision
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ------------------------------------------------------------------------------------ tokenizers
def clip_tokenizer(folder: Path, config: dict) -> None:
    """The real CLIP BPE as vocab.json + merges.txt, the files CLIPTokenizer reads."""
    from nextgpt_mini.processing.text import ClipBPETokenizer, clip_bpe_path

    bpe = ClipBPETokenizer(clip_bpe_path())
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "vocab.json", bpe.encoder)
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                                     "pad_token": config.get("pad_token", "<|endoftext|>"),
                                                     "unk_token": "<|endoftext|>"})


def llama_sentencepiece(vocab_size: int = 32000) -> bytes:
    """The LLaMA-shaped stand-in (400 learnt pieces, <unk> 0, <s> 1, </s> 2, byte fallback) padded
    to LLaMA's 32000 pieces with pieces of a character no text here holds (so no merge reaches them)."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    proto = spm.ModelProto()
    proto.ParseFromString((HUB_CONFIGS / "stand-ins" / "llama_sentencepiece.model").read_bytes())
    low = min(p.score for p in proto.pieces)
    for i in range(vocab_size - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"\u2983{i}\u2984", low - 1 - i, spm.ModelProto.SentencePiece.NORMAL
    return proto.SerializeToString()


def roberta_tokenizer(folder: Path, config: dict, vocab_size: int = 50265) -> None:
    """CLAP's RobertaTokenizer stand-in: byte-level BPE with RoBERTa's special ids (<s> 0, <pad> 1,
    </s> 2, <unk> 3, <mask> 50264), merges learnt from a few sentences, padded to 50265 entries."""
    from tokenizers import ByteLevelBPETokenizer

    text = ["a steady high tone over pink noise", "a dog barks twice in a quiet room", "rain falls on a tin roof",
            "a low hum rises slowly", "people talk and laugh in a busy street"] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(text, vocab_size=600, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                            show_progress=False)
    vocab = bpe.get_vocab()
    merges = json.loads(bpe._tokenizer.to_str())["model"]["merges"]
    for i in range(len(vocab), vocab_size - 1):
        vocab[f"<unused{i}>"] = i
    vocab["<mask>"] = vocab_size - 1
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "vocab.json", dict(sorted(vocab.items(), key=lambda kv: kv[1])))
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                     "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                                                     "mask_token": "<mask>"})


# ------------------------------------------------------------------------------------ models
def llm(folder: Path, repo: str, layers: int, dtype: torch.dtype, safetensors: bool, tokenizer_config: dict,
        tokenizer_json: bool) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    name = {"TinyLlama/TinyLlama-1.1B-Chat-v1.0": "tinyllama_chat_v1.0", "lmsys/vicuna-7b-v1.5": "vicuna_7b_v1.5"}[repo]
    config = LlamaConfig(**{**hub_config(name, "config.json"), "num_hidden_layers": layers})
    torch.set_default_dtype(dtype)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    save(model, folder, safetensors, dtype, shards=1 if safetensors else 2)  # Vicuna: 2 .bin shards, as on the hub
    (folder / "tokenizer.model").write_bytes(llama_sentencepiece(config.vocab_size))
    write_json(folder / "tokenizer_config.json", tokenizer_config)
    write_json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                     **({"pad_token": tokenizer_config["pad_token"]}
                                                        if tokenizer_config.get("pad_token") else {})})
    if tokenizer_json:  # TinyLlama ships the converted tokenizer.json next to tokenizer.model
        AutoTokenizer.from_pretrained(folder).backend_tokenizer.save(str(folder / "tokenizer.json"))


def save(model, folder: Path, safetensors: bool, dtype: torch.dtype, shards: int = 1) -> None:
    """model.save_pretrained, or, for a .bin repository, its config plus pytorch_model.bin (in
    `shards` pieces with their index, as the hub's sharded checkpoints): transformers 5 writes
    safetensors only, and the loaders must meet the format the repository really has."""
    model = model.to(dtype)
    is_diffusers = hasattr(model, "register_to_config")
    if safetensors or is_diffusers:
        model.save_pretrained(folder, safe_serialization=safetensors)
        return
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    keys = list(state)
    size = -(-len(keys) // shards)
    weight_map = {}
    for k in range(shards):
        name = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        torch.save({key: state[key] for key in keys[k * size:(k + 1) * size]}, folder / name)
        weight_map.update({key: name for key in keys[k * size:(k + 1) * size]})
    total = sum(v.numel() * v.element_size() for v in state.values())
    write_json(folder / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def cut(config: dict, layers: int, **extra) -> dict:
    return {**config, "layers_per_block": layers, **extra}


def stable_diffusion(folder: Path, layers: int) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    write_json(folder / "model_index.json", json.loads((HUB_CONFIGS / "sd15" / "model_index.json").read_text()))
    write_json(folder / "scheduler" / "scheduler_config.json", json.loads((HUB_CONFIGS / "sd15" / "scheduler_config.json").read_text()))
    write_json(folder / "feature_extractor" / "preprocessor_config.json",
               {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
                "do_normalize": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
                "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": {"shortest_edge": 224}})
    save(UNet2DConditionModel.from_config(cut(hub_config("sd15", "unet_config.json"), layers)), folder / "unet", True, torch.float32)
    save(AutoencoderKL.from_config(cut(hub_config("sd15", "vae_config.json"), layers)), folder / "vae", True, torch.float32)
    text = CLIPTextConfig(**{**hub_config("sd15", "text_encoder_config.json"), "num_hidden_layers": layers})
    save(CLIPTextModel(text), folder / "text_encoder", True, torch.float32)
    clip_tokenizer(folder / "tokenizer", {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
                                          "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                          "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})


def zeroscope(folder: Path, layers: int) -> None:
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    z = HUB_CONFIGS / "zeroscope_v2_576w"
    write_json(folder / "model_index.json", json.loads((z / "model_index.json").read_text()))
    write_json(folder / "scheduler" / "scheduler_config.json", json.loads((z / "scheduler_config.PROXY.json").read_text()))
    # the repository's weights are fp16 in .bin files, no safetensors on main
    save(UNet3DConditionModel.from_config(cut(hub_config("zeroscope_v2_576w", "unet_config.PROXY.json"), layers)),
         folder / "unet", False, torch.float16)
    save(AutoencoderKL.from_config(cut(hub_config("sd15", "vae_config.json"), layers)), folder / "vae", False, torch.float16)
    text = CLIPTextConfig(**{**hub_config("zeroscope_v2_576w", "text_encoder_config.PROXY.json"), "num_hidden_layers": layers})
    save(CLIPTextModel(text), folder / "text_encoder", False, torch.float16)
    clip_tokenizer(folder / "tokenizer", hub_config("zeroscope_v2_576w", "tokenizer_config.PROXY.json"))


def audioldm(folder: Path, base: int, layers: int, safetensors: bool) -> None:
    """AudioLDM at UNet width base x [1, 2, 3, 5] (s: 128, l: 256), from m-full's published UNet config."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    write_json(folder / "model_index.json", json.loads((HUB_CONFIGS / "audioldm_l_full" / "model_index.json").read_text()))
    write_json(folder / "scheduler" / "scheduler_config.json",
               json.loads((HUB_CONFIGS / "audioldm" / "scheduler_config.PROXY.json").read_text()))
    widths = [base * k for k in (1, 2, 3, 5)]
    unet = cut(hub_config("audioldm", "unet_config_m_full.PROXY.json"), layers, block_out_channels=widths,
               cross_attention_dim=widths, out_channels=8, up_block_types=["CrossAttnUpBlock2D"] * 3 + ["UpBlock2D"],
               projection_class_embeddings_input_dim=512)
    save(UNet2DConditionModel.from_config(unet), folder / "unet", safetensors, torch.float32)
    save(AutoencoderKL.from_config(cut(hub_config("audioldm_l_full", "vae_config.json"), layers)), folder / "vae",
         safetensors, torch.float32)
    text = ClapTextConfig(**{**hub_config("audioldm", "text_encoder_config.PROXY.json"), "num_hidden_layers": layers})
    save(ClapTextModelWithProjection(text), folder / "text_encoder", safetensors, torch.float32)
    save(SpeechT5HifiGan(SpeechT5HifiGanConfig(**hub_config("audioldm", "vocoder_config.json"))), folder / "vocoder",
         safetensors, torch.float32)
    roberta_tokenizer(folder / "tokenizer", hub_config("audioldm_l_full", "tokenizer_config.json"))


def imagebind(folder: Path) -> None:
    """Meta's imagebind_huge.pth layout (vision, text and audio towers; `DEPTH` blocks each)."""
    from nextgpt_mini.models.imagebind import build_encoder
    from nextgpt_mini.profiles import load_profile

    folder.mkdir(parents=True, exist_ok=True)
    model = build_encoder(load_profile("paper", DEPTH).encoder)
    torch.save(model.state_dict(), folder / "imagebind_huge.pth")


def build(out, profiles=("colab", "paper"), layers: int = 1) -> dict[str, float]:
    """Write the cache under `out` (out/hub: HF_HUB_CACHE, out/imagebind: NEXTGPT_MINI_CACHE);
    returns seconds per repository. An existing `out` is replaced."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    hub = out / "hub"
    torch.manual_seed(0)
    makers = {
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0": lambda f: llm(f, "TinyLlama/TinyLlama-1.1B-Chat-v1.0", layers, torch.bfloat16, True,
                                                             hub_config("tinyllama_chat_v1.0", "tokenizer_config.json"), True),
        "lmsys/vicuna-7b-v1.5": lambda f: llm(f, "lmsys/vicuna-7b-v1.5", layers, torch.float16, False,
                                              {"tokenizer_class": "LlamaTokenizer", "legacy": False, "bos_token": "<s>",
                                               "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 4096,
                                               "pad_token": None, "add_bos_token": True, "add_eos_token": False}, False),
        "stable-diffusion-v1-5/stable-diffusion-v1-5": lambda f: stable_diffusion(f, layers),
        "cerspense/zeroscope_v2_576w": lambda f: zeroscope(f, layers),
        "cvssp/audioldm-s-full-v2": lambda f: audioldm(f, 128, layers, safetensors=True),
        "cvssp/audioldm-l-full": lambda f: audioldm(f, 256, layers, safetensors=False),
    }
    seconds = {}
    for repo in dict.fromkeys(r for p in profiles for r in PROFILE_REPOS[p]):
        start = time.perf_counter()
        makers[repo](snapshot(hub, repo))
        seconds[repo] = time.perf_counter() - start
    start = time.perf_counter()
    imagebind(out / "imagebind")
    seconds["ImageBind (imagebind_huge.pth)"] = time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the folder to write (replaced if it exists)")
    parser.add_argument("--profiles", default="colab,paper")
    parser.add_argument("--layers", type=int, default=1, help="depth kept of every stack of layers (default 1)")
    args = parser.parse_args(argv)
    seconds = build(args.out, tuple(args.profiles.split(",")), args.layers)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    for repo, s in seconds.items():
        print(f"{repo:48s} {s:6.1f} s")
    print(f"wrote {args.out} ({size / 1e9:.2f} GB) in {sum(seconds.values()):.0f} s. Use it with:\n"
          f"  export HF_HUB_OFFLINE=1 HF_HUB_CACHE={args.out}/hub NEXTGPT_MINI_CACHE={args.out}/imagebind\n"
          f"  and the profile overrides {' '.join(f'{k}={v}' for k, v in DEPTH.items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
