"""Chapter 08: NExT-GPT's released weights as a nextgpt-mini system (`nextgpt-mini import-nextgpt`).

The one released checkpoint, ChocoWu/nextgpt_7b_tiva_v0's pytorch_model.pt (792 MB), is a flat
dict of the 647 fp16 parameters its stage-3 model trained (docs/import-nextgpt.md has the facts):

* 256 LoRA tensors (r 32 on q/k/v/o of Vicuna-7B v0's 32 layers), peft names with `.default.`;
* the whole resized `embed_tokens` and `lm_head`, 32038 x 4096 each: its code resized them after
  wrapping with peft, so every row trained, not only the 38 new ones;
* `llama_proj` (the input projector) and the three `gen_text_hidden_fcs*` output projectors
  (GILL's TextFcLayer in "transformer" mode: the same function as `OutputProjector`).

Our classes compute the same functions, so importing is renaming and slicing. The rows 32000+ are
our trainable signal-token rows; the trained rows below 32000 replace the frozen base rows
(`FROZEN_ROWS`, loaded into the `old_rows` buffers by `NextGPT.from_pretrained`). Nothing here
needs the LLM: only the checkpoint file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from nextgpt_mini.config import VICUNA_V0, ProfileConfig
from nextgpt_mini.constants import FROZEN_ROWS, MODALITIES
from nextgpt_mini.models.projectors import OutputProjector
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.utils import atomic_folder, save_safetensors

# Original name prefix -> ours. The video and audio projectors first: the image one's prefix is
# a prefix of theirs (the original's own save code overlaps them the same way).
PROJECTOR_PREFIXES = (("gen_text_hidden_fcs_video.0.", "video"), ("gen_text_hidden_fcs_audio.0.", "audio"),
                      ("gen_text_hidden_fcs.0.", "image"))
PROJECTOR_PARTS = {"fc": "fc_in", "tfm": "transformer", "model": "fc_out", "query_embs": "queries"}
EMBED = "llama_model.base_model.model.model.embed_tokens.weight"
HEAD = "llama_model.base_model.model.lm_head.weight"
ROWS = {EMBED: "llm.base_model.model.model.embed_tokens", HEAD: "llm.base_model.model.lm_head"}


def released_profile(llm: str = VICUNA_V0) -> ProfileConfig:
    """The paper profile as the released checkpoint was trained: Vicuna-7B v0 (32000 tokens, 2048
    positions) at `llm`, the legacy template, LoRA on, NExT-GPT's token counts 4/24/8."""
    p = load_profile("paper")
    p.llm.name_or_path = str(llm)
    p.llm.template = "legacy"
    return p


def our_name(key: str) -> str:
    """The nextgpt-mini name of an original parameter (the embedding and head matrices aside)."""
    if key.startswith("llama_proj."):
        return "input_projector.proj." + key[len("llama_proj."):]
    for prefix, modality in PROJECTOR_PREFIXES:
        if key.startswith(prefix):
            part, _, rest = key[len(prefix):].partition(".")
            return f"output_projectors.{modality}.{PROJECTOR_PARTS.get(part, part)}" + (f".{rest}" if rest else "")
    if key.startswith("llama_model."):
        return "llm." + key[len("llama_model."):]
    return key


def expected_shapes(profile: ProfileConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the released layout for `profile`, with its shape (original names)."""
    c, r = profile.llm, profile.lora.r
    rows = c.vocab_size + 2 + sum(getattr(profile.signal_tokens, m) for m in MODALITIES)
    shapes: dict[str, tuple[int, ...]] = {EMBED: (rows, c.hidden_size), HEAD: (rows, c.hidden_size),
                                          "llama_proj.weight": (c.hidden_size, profile.encoder.out_embed_dim),
                                          "llama_proj.bias": (c.hidden_size,)}
    for i in range(c.num_layers):
        for target in profile.lora.target_modules:
            base = f"llama_model.base_model.model.model.layers.{i}.self_attn.{target}"
            shapes[f"{base}.lora_A.default.weight"] = (r, c.hidden_size)
            shapes[f"{base}.lora_B.default.weight"] = (c.hidden_size, r)
    back = {v: k for k, v in PROJECTOR_PARTS.items()}
    for prefix, m in PROJECTOR_PREFIXES:
        with torch.device("meta"):
            proj = OutputProjector(c.hidden_size, profile.projector(m), getattr(profile.signal_tokens, m))
        for name, p in proj.state_dict().items():
            part, _, rest = name.partition(".")
            shapes[prefix + back.get(part, part) + (f".{rest}" if rest else "")] = tuple(p.shape)
    return shapes


def read_checkpoint(path) -> dict[str, torch.Tensor]:
    """The pickled dict, read with weights_only=True (tensors only; no code runs); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected NExT-GPT's pytorch_model.pt, e.g. from "
                                "ChocoWu/nextgpt_7b_tiva_v0)")
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # torch raises many kinds here (RuntimeError, UnpicklingError, IndexError, EOFError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights only" in str(e).lower():
            raise ValueError(f"{path}: holds objects other than tensors, which are not unpickled here ({first})") from None
        if head.startswith(b"PK") or head.startswith(b"\x80"):  # a zip (torch >= 1.6) or a pickle that breaks off
            raise ValueError(f"{path}: not a complete PyTorch checkpoint (truncated or damaged? {first})") from None
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (NExT-GPT's save_model), got {type(state).__name__}")
    return state


def check_layout(state: dict[str, torch.Tensor], profile: ProfileConfig, path="checkpoint") -> None:
    """Refuse anything but the released layout at `profile`'s sizes, naming the first difference."""
    want = expected_shapes(profile)
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ValueError(f"{path}: not NExT-GPT's 7b_tiva_v0 layout: no {missing[0]!r}{more} "
                         f"({len(state)} tensors, the released file has {len(want)})")
    if extra:
        raise ValueError(f"{path}: not NExT-GPT's 7b_tiva_v0 layout: unexpected {extra[0]!r} "
                         f"({len(extra)} tensors the released file does not have)")
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)}, the released layout has {shape} "
                             "(another model size?)")
        if not state[k].is_floating_point():
            raise ValueError(f"{path}: {k} is {state[k].dtype}, expected floating-point weights")


def convert(state: dict[str, torch.Tensor], profile: ProfileConfig) -> tuple[dict, dict]:
    """(trained, frozen rows): our trained_state_dict names, and the base-vocabulary rows."""
    first_new = profile.llm.vocab_size
    trained, frozen = {}, {}
    for key, tensor in state.items():
        if key in ROWS:
            trained[f"{ROWS[key]}.new_rows"] = tensor[first_new:].contiguous()
            frozen[f"{ROWS[key]}.old_rows"] = tensor[:first_new].contiguous()
        else:
            trained[our_name(key)] = tensor.contiguous()
    return trained, frozen


def import_nextgpt(checkpoint, out, llm: str = VICUNA_V0, frozen_rows: bool = True,
                   load_in_bits: int | None = None) -> dict:
    """Write `out` (config.json + trained.safetensors [+ frozen_rows.safetensors]) for
    `NextGPT.from_pretrained`. Everything is checked before anything is written; `out` must not
    exist or be empty. Returns a summary (counts, sizes)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not an empty folder (choose another --out)")
    profile = released_profile(llm)
    profile.llm.load_in_bits = load_in_bits
    state = read_checkpoint(checkpoint)
    check_layout(state, profile, checkpoint)
    trained, frozen = convert(state, profile)
    config = {"format": "nextgpt-mini", "version": 1, "lora": True, "profile": profile.to_dict(),
              "source": {"checkpoint": Path(checkpoint).name, "tensors": len(state),
                         "parameters": sum(t.numel() for t in state.values())}}
    with atomic_folder(out) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_safetensors(trained, tmp / "trained.safetensors", sync=True)
        if frozen_rows:
            save_safetensors(frozen, tmp / FROZEN_ROWS, sync=True)
    return {"tensors": len(state), "trained": len(trained), "parameters": config["source"]["parameters"],
            "trained_parameters": sum(t.numel() for t in trained.values()),
            "frozen_rows": frozen_rows, "bytes": sum(f.stat().st_size for f in out.iterdir())}
