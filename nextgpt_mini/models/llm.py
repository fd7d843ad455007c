"""Chapter 03: the LLM, loaded per profile, and its LoRA adapters.

* `paper`: Vicuna-7B v1.5 (the paper used v0, which is published only as deltas over Meta's
  gated LLaMA-1 weights; v1.5 is a plain checkpoint and is what NExT-GPT's later code loads).
* `colab`: TinyLlama-1.1B-Chat, the same LLaMA architecture at 1.1 B parameters.
* `tiny`: a `LlamaForCausalLM` at toy width, pretrained on the toy world and shipped in the
  package (`nextgpt-mini build-tiny llm`), with the tiny byte-level tokenizer.

The signal tokens the LLM learns to write, and its new vocabulary rows, are in `signal_tokens.py`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from nextgpt_mini.config import LLMConfig, LoRAConfig
from nextgpt_mini.utils import asset_path, frozen_dtype

# Architecture of the full-size LLMs, written here so that parameter tables and memory plans
# work without downloading anything (values from each model's config.json on the hub).
FULL_SIZE_CONFIGS = {
    "lmsys/vicuna-7b-v1.5": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    ),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
        num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    ),
}


def tiny_llama_config(cfg: LLMConfig, vocab_size: int):
    """The tiny LLM's architecture: LLaMA at the profile's toy width."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=max(cfg.max_length, 256),
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def resolve_llm_path(ref: str) -> str:
    """"package:<folder>" -> the shipped folder; anything else (hub id or local path) unchanged."""
    return str(asset_path(ref)) if ref.startswith("package:") else ref


@contextlib.contextmanager
def _quiet_loading(quiet: bool):
    """No "Loading weights" bar for the shipped tiny LLM: it loads in milliseconds, and the bar's
    timings would differ in every notebook run. Full-size loads keep it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def load_llm(cfg: LLMConfig, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
    """Load (model, tokenizer) for a profile: a hub id, a local folder, or a shipped package folder.

    The model comes back frozen and in eval mode; stages decide what to train. `dtype` defaults to
    `utils.frozen_dtype(device)` (fp16 on a T4, bf16 where a GPU has it natively, fp32 on the CPU),
    not the repository's config (bf16 for TinyLlama, which a T4 only emulates).
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = resolve_llm_path(cfg.name_or_path)
    if cfg.name_or_path.startswith("package:") and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the tiny LLM is missing; rebuild it with `nextgpt-mini build-tiny llm`")
    kwargs = {"dtype": dtype or frozen_dtype(device)}
    if cfg.load_in_bits:
        kwargs.update(quantization_kwargs(cfg.load_in_bits))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(_missing_weights_message(cfg, e)) from None
    except (ValueError, ImportError, RuntimeError, TypeError) as e:
        raise ValueError(_tokenizer_message(cfg.name_or_path, e)) from None
    try:
        with _quiet_loading(cfg.name_or_path.startswith("package:")):
            model = LlamaForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise FileNotFoundError(_missing_weights_message(cfg, e)) from None
    if tokenizer.pad_token is None:
        # LLaMA tokenizers ship without a pad token; padding is always masked, so <unk> is safe.
        tokenizer.pad_token = tokenizer.unk_token
    model.requires_grad_(False)
    model.eval()
    if device is not None and not cfg.load_in_bits:
        model.to(device)
    return model, tokenizer


def _tokenizer_message(ref: str, error: Exception) -> str:
    # transformers 5 converts a tokenizer.model-only repository (Vicuna's) with sentencepiece and
    # protobuf; when that fails it falls back to tiktoken and reports *that*, which misleads.
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"{ref}: its tokenizer could not be loaded ({type(error).__name__}: {reason}). A repository that ships "
            "only tokenizer.model (SentencePiece, as Vicuna's) is converted with the sentencepiece and protobuf "
            "packages (dependencies of nextgpt-mini: `pip install sentencepiece protobuf`); if they are installed, "
            "its tokenizer files are damaged or not a tokenizer: fetch them again.")


def _missing_weights_message(cfg: LLMConfig, error: Exception) -> str:
    ref = cfg.name_or_path
    if os.path.isdir(ref):
        return f"{ref}: not a transformers model folder ({error})"
    if cfg.template == "legacy":  # NExT-GPT's released checkpoint: its base is on no hub
        return (f"could not load the LLM {ref!r}: NExT-GPT's released checkpoint runs on Vicuna-7B v0, made from "
                "Meta's LLaMA-1 weights and lmsys/vicuna-7b-delta-v0 (docs/import-nextgpt.md); point "
                "llm.name_or_path (import-nextgpt --llm) at that folder.")
    return (
        f"could not load the LLM {ref!r} (offline or not downloaded). Fetch it once with "
        f"`nextgpt-mini download --profile paper` (or `huggingface-cli download {ref}`), "
        "or set llm.name_or_path to a local folder."
    )


def quantization_kwargs(bits: int) -> dict:
    if not torch.cuda.is_available():
        raise RuntimeError(f"llm.load_in_bits={bits} needs a CUDA GPU (bitsandbytes); on a CPU set llm.load_in_bits=null")
    from transformers import BitsAndBytesConfig

    if bits == 4:
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16)
    elif bits == 8:
        q = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ValueError(f"llm.load_in_bits must be 4, 8 or null, got {bits}")
    return {"quantization_config": q, "device_map": {"": 0}}


def build_empty_llm(cfg: LLMConfig):
    """A full-size LLM on the meta device: shapes and counts, no weights, no download."""
    from accelerate import init_empty_weights
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.name_or_path in FULL_SIZE_CONFIGS:
        config = LlamaConfig(**FULL_SIZE_CONFIGS[cfg.name_or_path])
    else:
        config = tiny_llama_config(cfg, cfg.vocab_size)
    with init_empty_weights():
        return LlamaForCausalLM(config)


# --------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------
def apply_lora(model, cfg: LoRAConfig):
    """Wrap the LLM with peft LoRA adapters on the profile's target modules (stage 3)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
        bias="none", task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers method that transformers 5 deprecates; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def lora_parameter_count(llm_cfg_or_model, lora: LoRAConfig) -> int:
    """LoRA parameters: r x (in + out) for every targeted linear layer."""
    model = llm_cfg_or_model
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.split(".")[-1] in lora.target_modules:
            total += lora.r * (module.in_features + module.out_features)
    return total
