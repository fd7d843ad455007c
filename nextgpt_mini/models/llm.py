"""The LLM side: loading the model and tokenizer per profile, signal tokens, trainable new rows, LoRA.

* `paper`: Vicuna-7B v1.5 (the paper used v0, which is published only as deltas over Meta's
  gated LLaMA-1 weights; v1.5 is a plain checkpoint and is what NExT-GPT's later code loads).
* `colab`: TinyLlama-1.1B-Chat, the same LLaMA architecture at 1.1 B parameters.
* `tiny`: a `LlamaForCausalLM` at toy width, pretrained on the toy world and shipped in the
  package (`nextgpt-mini build-tiny llm`), with the tiny byte-level tokenizer.

Signal tokens (`[IMG0]`.., `[VID0]`.., `[AUD0]`..) and the media wrappers `<Img>`, `</Img>` are
added to the vocabulary. As in NExT-GPT's code, one wrapper pair `<Img> ... </Img>` surrounds the
soft token of any input modality. (The tiny LLM already knows the wrappers: it learnt to read a
soft token between them during pretraining, see `llm_pretrain.py`; then they are not new rows.) Only the *new* rows of the input embedding and the LM head are
trainable: `NewRowsEmbedding` / `NewRowsLMHead` keep the old rows as a frozen tensor that no
optimizer ever sees, so they stay bit-identical (the original code trained the whole resized
matrices, 2 x 131 M parameters in the paper profile).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nextgpt_mini.config import LLMConfig, LoRAConfig, SignalTokenConfig
from nextgpt_mini.utils import asset_path

MODALITIES = ("image", "video", "audio")
MEDIA_START, MEDIA_END = "<Img>", "</Img>"

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

    The model comes back frozen and in eval mode; stages decide what to train.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = resolve_llm_path(cfg.name_or_path)
    if cfg.name_or_path.startswith("package:") and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the tiny LLM is missing; rebuild it with `nextgpt-mini build-tiny llm`")
    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if cfg.load_in_bits:
        kwargs.update(_quantization_kwargs(cfg.load_in_bits))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        with _quiet_loading(cfg.name_or_path.startswith("package:")):
            model = LlamaForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise FileNotFoundError(_missing_weights_message(cfg.name_or_path, e)) from None
    if tokenizer.pad_token is None:
        # LLaMA tokenizers ship without a pad token; padding is always masked, so <unk> is safe.
        tokenizer.pad_token = tokenizer.unk_token
    model.requires_grad_(False)
    model.eval()
    if device is not None and not cfg.load_in_bits:
        model.to(device)
    return model, tokenizer


def _missing_weights_message(ref: str, error: Exception) -> str:
    if os.path.isdir(ref):
        return f"{ref}: not a transformers model folder ({error})"
    return (
        f"could not load the LLM {ref!r} (offline or not downloaded). Fetch it once with "
        f"`nextgpt-mini download --profile paper` (or `huggingface-cli download {ref}`), "
        "or set llm.name_or_path to a local folder."
    )


def _quantization_kwargs(bits: int) -> dict:
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
# Signal tokens: new vocabulary rows, and only those rows trainable
# --------------------------------------------------------------------------------------------
@dataclass
class SignalTokens:
    """Token ids of the signal tokens per modality and of the media wrappers."""

    ids: dict[str, list[int]]
    tokens: dict[str, list[str]]
    media_start: int
    media_end: int
    first_new_id: int  # rows >= this id are new

    def modality_of(self, token_id: int) -> str | None:
        for m, ids in self.ids.items():
            if token_id in ids:
                return m
        return None

    def all_ids(self) -> list[int]:
        return [i for m in MODALITIES for i in self.ids[m]]


class NewRowsEmbedding(nn.Module):
    """nn.Embedding whose first `old` rows are frozen and whose appended rows are trainable."""

    def __init__(self, weight: torch.Tensor, first_new: int, padding_idx: int | None = None):
        super().__init__()
        self.register_buffer("old_rows", weight[:first_new].detach().clone(), persistent=True)
        self.new_rows = nn.Parameter(weight[first_new:].detach().clone())
        self.padding_idx = padding_idx

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows], dim=0)

    @property
    def num_embeddings(self) -> int:
        return self.old_rows.shape[0] + self.new_rows.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.old_rows.shape[1]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)


class NewRowsLMHead(nn.Module):
    """The LM head with frozen old rows and trainable new rows (one logit per vocabulary row)."""

    def __init__(self, weight: torch.Tensor, first_new: int):
        super().__init__()
        self.register_buffer("old_rows", weight[:first_new].detach().clone(), persistent=True)
        self.new_rows = nn.Parameter(weight[first_new:].detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows], dim=0)

    @property
    def out_features(self) -> int:
        return self.old_rows.shape[0] + self.new_rows.shape[0]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.cat([hidden @ self.old_rows.T, hidden @ self.new_rows.T], dim=-1)


def add_signal_tokens(model, tokenizer, signal: SignalTokenConfig) -> SignalTokens:
    """Add signal tokens and media wrappers; resize; mean-initialise; make only new rows trainable.

    Why the mean: a new row at the mean of the existing embeddings starts as an "average token":
    its logit is close to the average logit (no token is suddenly predicted everywhere, as with
    a large random row) and its input embedding lies where the frozen layers expect inputs to be.
    """
    tokens = {m: signal.tokens(m) for m in MODALITIES}
    new = [MEDIA_START, MEDIA_END] + [t for m in MODALITIES for t in tokens[m]]
    old_vocab = model.get_input_embeddings().weight.shape[0]
    if tokenizer.convert_tokens_to_ids(MEDIA_START) not in (None, tokenizer.unk_token_id) and isinstance(
        model.get_input_embeddings(), NewRowsEmbedding
    ):
        raise ValueError("signal tokens were already added to this model")
    tokenizer.add_tokens(new, special_tokens=True)
    for t in new:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{t!r} encodes to {len(ids)} ids {ids}, expected exactly one")
    first_new = old_vocab
    # tokens the vocabulary already had (the tiny LLM's <Img>, </Img>) keep their pretrained rows
    total = max(len(tokenizer), old_vocab)
    model.resize_token_embeddings(total, mean_resizing=False)
    with torch.no_grad():
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            matrix[first_new:] = matrix[:first_new].mean(dim=0, keepdim=True)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    model.set_input_embeddings(NewRowsEmbedding(emb.weight, first_new, emb.padding_idx))
    model.lm_head = NewRowsLMHead(head.weight, first_new)
    model.config.vocab_size = total
    ids = {m: tokenizer.convert_tokens_to_ids(tokens[m]) for m in MODALITIES}
    return SignalTokens(
        ids=ids,
        tokens=tokens,
        media_start=tokenizer.convert_tokens_to_ids(MEDIA_START),
        media_end=tokenizer.convert_tokens_to_ids(MEDIA_END),
        first_new_id=first_new,
    )


def new_row_parameters(model) -> list[nn.Parameter]:
    """The trainable signal-token rows (input embedding and LM head)."""
    base = getattr(model, "get_base_model", lambda: model)()
    return [base.get_input_embeddings().new_rows, base.get_output_embeddings().new_rows]


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
