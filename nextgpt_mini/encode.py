"""Chapter 01: one call from files and strings to ImageBind embeddings: `encode(["cat.png", "a dog"], ...)`.

NExT-GPT reads every input item through frozen ImageBind and gives its projector one pooled,
L2-normalised vector per item. `encode` does that for any mix of inputs:

1. resolve: each input becomes a file (image / audio / video, by extension) or a text. A string
   is a file when it is an existing file or ends in a media extension; anything else is text.
   `Text("...")` forces text (a caption that looks like a file name); a `Path` is always a file.
   Missing files and unsupported extensions fail here, before anything is computed.
2. look up the cache (optional): hits are read, only misses are loaded and encoded.
3. group by modality, run batches of `batch_size` through the encoder under `torch.no_grad`,
   write each finished batch to the cache, scatter the rows back to input order.
4. L2-normalise the rows (see `renormalize` below).

Errors: a file that cannot be read raises `MediaError` (a ValueError) naming that file. Cache
policy on error: a batch is written to the cache only after all of it encoded, so the batch that
holds a bad file writes nothing, while batches finished before it stay cached (they are correct,
and a rerun after fixing the file computes only what is left).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nextgpt_mini.cache import EmbeddingCache, encoder_identity, file_key, text_key
from nextgpt_mini.config import EncoderConfig, ProfileConfig
from nextgpt_mini.data.pairs import read_pairs
from nextgpt_mini.hub import resolve_weights
from nextgpt_mini.models.imagebind import build_encoder
from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.processing import MediaError, load_media, load_text_tokenizer
from nextgpt_mini.processing.inputs import INPUT_MODALITIES, InputLike, ResolvedInput, Text, resolve_inputs
from nextgpt_mini.utils import atomic_path, pick_device

__all__ = [
    "EncodedPairs",
    "ResolvedInput",
    "Text",
    "encode",
    "encode_dataset",
    "encode_to_file",
    "encoder_cache",
    "load_encoder_for",
    "resolve_inputs",
]

# Seed of the random weights used when `encoder.weights` is None: fixed, so that two processes
# build the same encoder (and the cache, keyed by the state dict's hash, hits across runs).
RANDOM_WEIGHTS_SEED = 0

# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------
def _encoder_config(cfg: EncoderConfig | ProfileConfig | None, encoder: Any) -> EncoderConfig:
    if isinstance(cfg, ProfileConfig):
        return cfg.encoder
    if cfg is not None:
        return cfg
    if encoder is not None and getattr(encoder, "cfg", None) is not None:
        return encoder.cfg
    raise ValueError("encode needs an encoder (encoder=...) or its configuration (cfg=profile or profile.encoder)")


def load_encoder_for(cfg: EncoderConfig | ProfileConfig, device: str | torch.device | None = None):
    """The encoder `cfg` describes, in eval mode, on `device` (default: the best available, see
    `utils.pick_device`): `imagebind_weights.load_encoder` loads `cfg.weights`; weights=None builds random
    weights from a fixed seed (with a warning: useful for tests and timing, meaningless embeddings)."""
    cfg = _encoder_config(cfg, None)
    if cfg.weights is None:
        warnings.warn("encoder.weights is None: using random encoder weights (seed "
                      f"{RANDOM_WEIGHTS_SEED}); the embeddings mean nothing", stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            encoder = build_encoder(cfg)
        return encoder.to(pick_device(device)).eval()
    return load_encoder(cfg, device=pick_device(device)).eval()


def encoder_cache(
    root: str | os.PathLike,
    cfg: EncoderConfig | ProfileConfig,
    encoder: Any = None,
) -> EmbeddingCache:
    """An EmbeddingCache whose identity is this encoder's: the weights file's hash when
    `cfg.weights` names one, else the state dict of `encoder` (required then)."""
    cfg = _encoder_config(cfg, encoder)
    if cfg.weights is not None:
        return EmbeddingCache(root, encoder_identity(cfg, resolve_weights(cfg.weights)))
    if encoder is None:
        raise ValueError("random-weight encoders (weights=None) are identified by their state dict: pass encoder=")
    return EmbeddingCache(root, encoder_identity(cfg, state_dict=encoder.state_dict()))


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """Eval mode for the call (the audio trunk's DropPath is active in train mode), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------------------------
def _load_batch(items: Sequence[ResolvedInput], modality: str, cfg: EncoderConfig, tokenizer) -> torch.Tensor:
    if modality == "text":
        return tokenizer([it.source for it in items])
    tensors = []
    for it in items:
        try:
            _, x = load_media(it.path, cfg)
        except MediaError:
            raise  # already names the file
        except Exception as err:  # anything else a decoder may throw: still name the file
            raise MediaError(f"{it.path}: cannot load ({type(err).__name__}: {err})") from err
        tensors.append(x)
    # image [B,3,S,S]; video [B, clips*crops, 3, T, S, S]; audio [B, clips, 1, mel, frames]
    return torch.stack(tensors)


def _run(encoder, modality: str, x: torch.Tensor) -> torch.Tensor:
    # Each of these L2-normalises per clip and averages the clips of one item (Meta's order).
    method = {"image": encoder.encode_image, "video": encoder.encode_video,
              "audio": encoder.encode_audio, "text": encoder.encode_text}[modality]
    weights = next(encoder.parameters())
    return method(x.to(weights.device, weights.dtype) if x.is_floating_point() else x.to(weights.device))


@torch.no_grad()
def encode_rendered(encoder, modality: str, items: Sequence, render, cfg: EncoderConfig, batch_size: int = 64) -> torch.Tensor:
    """Unit-norm embeddings [N, D] of in-memory items (the toy world's), each turned into the
    encoder's input by `render(item, cfg)` as the file loaders would, encoded in batches."""
    chunks = [F.normalize(_run(encoder, modality, torch.stack([render(it, cfg) for it in items[k : k + batch_size]])).float(), dim=-1)
              for k in range(0, len(items), batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, cfg.out_embed_dim)


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def encode(
    inputs: InputLike | Iterable[InputLike],
    encoder: Any = None,
    cfg: EncoderConfig | ProfileConfig | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    *,
    device: str | torch.device | None = None,
    renormalize: bool = True,
) -> torch.Tensor:
    """Embed files and strings: float32 [N, D] on the CPU, row i for inputs[i], unit L2 norm.

    inputs: paths and strings, mixed (see the module docstring for how a string is read);
    `Text("...")` forces text. encoder: an `ImageBindEncoder`; None loads one from `cfg` (only
    if something misses the cache), on `device`. A given encoder runs where it is. cfg: a
    profile or its EncoderConfig; defaults to `encoder.cfg`. cache: an `EmbeddingCache` for this
    encoder (`encoder_cache(...)`); it stores the encoder's own per-item output, before the
    renormalisation below, so the cached value does not depend on `renormalize`.

    renormalize: images and texts come out of ImageBind unit-norm, but a video or an audio item
    is the *mean* of its unit-norm clip embeddings (Meta's and NExT-GPT's code average without
    re-normalising), whose norm is below 1 and varies with how much the clips differ. We
    renormalise so that every modality reaches the input projector on the same unit sphere: the
    projector is a single Linear layer, so a norm that varies per item and per modality is a
    scale it would otherwise have to absorb. This departs from NExT-GPT's released code, which
    feeds the raw mean; renormalize=False reproduces that.
    """
    items = resolve_inputs(inputs)
    enc_cfg = _encoder_config(cfg, encoder)
    dim = int(enc_cfg.out_embed_dim)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = torch.empty(len(items), dim, dtype=torch.float32)
    if not items:
        return out
    plan = _plan_units(items, by_content=cache is not None)
    todo = list(plan.rows) if cache is None else _read_cache(cache, plan, out)
    if todo:
        if encoder is None:
            encoder = load_encoder_for(enc_cfg, device=device)
        _encode_units(todo, plan, out, encoder, enc_cfg, cache, batch_size, progress)
    if renormalize:
        out = F.normalize(out, dim=-1)
    return out


@dataclass
class _Plan:
    """One unit of work per distinct input: by content hash with a cache, else by path / text."""

    rows: dict[str, list[int]]  # unit -> the output rows it fills
    first: dict[str, ResolvedInput]  # unit -> the input it is computed from
    stats: dict[str, tuple[int, int, int]]  # file -> (size, mtime, inode) when it was hashed


def _plan_units(items: Sequence[ResolvedInput], by_content: bool) -> _Plan:
    plan = _Plan({}, {}, {})
    for i, it in enumerate(items):
        if by_content:
            if it.is_file:
                plan.stats.setdefault(it.source, _stat(it.path))
                unit = file_key(it.path, it.modality)
            else:
                unit = text_key(it.source)
        else:
            unit = f"{it.modality}:{Path(it.source).resolve() if it.is_file else it.source}"
        plan.rows.setdefault(unit, []).append(i)
        plan.first.setdefault(unit, it)
    return plan


def _read_cache(cache: EmbeddingCache, plan: _Plan, out: torch.Tensor) -> list[str]:
    """Fill `out`'s rows of the units the cache holds; return the units still to encode."""
    dim = out.shape[1]
    found = cache.get_many(plan.rows)
    for unit, value in found.items():
        if isinstance(value, torch.Tensor) and value.shape == (dim,):
            out[plan.rows[unit]] = value.to(torch.float32)
        else:  # cannot happen for entries this module wrote under the same identity
            warnings.warn(f"embedding cache: entry {unit[:12]}... holds {type(value).__name__} "
                          f"{getattr(value, 'shape', '')}, expected [{dim}]; recomputing", stacklevel=3)
            found.pop(unit)
    return [u for u in plan.rows if u not in found]


def _batches(todo: Sequence[str], plan: _Plan, batch_size: int) -> list[tuple[str, list[str]]]:
    """(modality, units) batches of at most `batch_size`, one modality at a time."""
    batches: list[tuple[str, list[str]]] = []
    for modality in INPUT_MODALITIES:
        group = [u for u in todo if plan.first[u].modality == modality]
        batches += [(modality, group[s : s + batch_size]) for s in range(0, len(group), batch_size)]
    return batches


def _encode_units(todo: Sequence[str], plan: _Plan, out: torch.Tensor, encoder, cfg: EncoderConfig,
                  cache: EmbeddingCache | None, batch_size: int, progress: bool) -> None:
    """Encode `todo` in batches into `out`'s rows, writing each finished batch to the cache."""
    from tqdm.auto import tqdm

    tokenizer = load_text_tokenizer(cfg) if any(plan.first[u].modality == "text" for u in todo) else None
    batches = _batches(todo, plan, batch_size)
    bar = tqdm(total=len(batches), desc="encode", unit="batch", disable=not progress or len(batches) < 2)
    # no_grad rather than inference_mode: inference tensors cannot be saved for backward, and
    # these embeddings are the inputs of the projector that stage 1 trains.
    with bar, torch.no_grad(), _eval_mode(encoder):
        for modality, group in batches:
            bar.set_postfix_str(modality)
            emb = _encode_batch(encoder, modality, [plan.first[u] for u in group], cfg, tokenizer, out.shape[1])
            for row, unit in enumerate(group):
                out[plan.rows[unit]] = emb[row]
            if cache is not None:
                cache.put_many((u, emb[row]) for row, u in enumerate(group) if _unchanged(plan.first[u], plan.stats))
            bar.update(1)


def _encode_batch(encoder, modality: str, items: Sequence[ResolvedInput], cfg: EncoderConfig, tokenizer,
                  dim: int) -> torch.Tensor:
    """[len(items), dim] float32 on the CPU; MediaError if a row is not finite."""
    x = _load_batch(items, modality, cfg, tokenizer)
    emb = _run(encoder, modality, x).to("cpu", torch.float32)
    if emb.shape != (len(items), dim):
        raise RuntimeError(f"the encoder returned {tuple(emb.shape)} for {len(items)} "
                           f"{modality} items, expected [{len(items)}, {dim}]")
    bad = [it.source for row, it in enumerate(items) if not torch.isfinite(emb[row]).all()]
    if bad:  # nothing of this batch reaches the cache or the output
        raise MediaError(f"{bad[0]}: its embedding came out NaN or infinite (NaN values in the input, "
                         "or encoder weights that hold them)")
    return emb


def _unchanged(item: ResolvedInput, stats: dict[str, tuple[int, int, int]]) -> bool:
    """A file rewritten between hashing and loading must not be cached under the old hash."""
    if not item.is_file:
        return True
    try:
        same = _stat(item.path) == stats[item.source]
    except OSError:
        same = False
    if not same:
        warnings.warn(f"{item.path} changed while it was being encoded; not caching it", stacklevel=3)
    return same


# --------------------------------------------------------------------------------------------
# NExT-GPT pair files (read by data/pairs.py)
# --------------------------------------------------------------------------------------------
@dataclass
class EncodedPairs:
    """A pair file, encoded: `embeddings[i]` is `files[i]`, described by `captions[i]`."""

    modality: str
    files: list[Path]
    captions: list[str]
    embeddings: torch.Tensor  # [N, D]
    caption_embeddings: torch.Tensor | None = None  # [N, D], ImageBind's text tower

    def __len__(self) -> int:
        return len(self.files)


def encode_dataset(
    pairs_json: str | os.PathLike,
    media_dir: str | os.PathLike | None = None,
    encoder: Any = None,
    cfg: EncoderConfig | ProfileConfig | None = None,
    batch_size: int = 16,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    *,
    captions: bool = False,
    device: str | torch.device | None = None,
    renormalize: bool = True,
) -> EncodedPairs:
    """Encode every media file of a NExT-GPT pair file (see `data.pairs.read_pairs`); with captions=True
    also the captions through the text tower (one `encode` call, so one encoder load)."""
    modality, files, texts = read_pairs(pairs_json, media_dir)
    inputs: list[InputLike] = list(files) + ([Text(t) for t in texts] if captions else [])
    emb = encode(inputs, encoder=encoder, cfg=cfg, batch_size=batch_size, cache=cache, progress=progress,
                 device=device, renormalize=renormalize)
    n = len(files)
    return EncodedPairs(modality, files, texts, emb[:n], emb[n:] if captions else None)


# --------------------------------------------------------------------------------------------
# The `nextgpt-mini encode` command
# --------------------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a directory")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        raise PermissionError(f"--out {out}: cannot write in {parent}")


def encode_to_file(
    inputs: Sequence[InputLike],
    out: str | os.PathLike,
    profile: ProfileConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode `inputs` and write a safetensors file with "embeddings" [N, D]; its metadata holds
    JSON "inputs", "modalities", "profile" (and the encoder identity when a cache is used).

    Everything is checked before the encoder runs, and the file is written atomically: a failing
    run never leaves a partial file and never touches an existing one. Returns a summary dict.
    """
    start = time.perf_counter()
    out = Path(out)
    _check_out(out)
    items = resolve_inputs(list(inputs))
    if not items:
        raise ValueError("nothing to encode: give at least one file or text")
    cfg = profile.encoder
    encoder, cache = None, None
    if cache_dir is not None:
        if cfg.weights is None:
            encoder = load_encoder_for(cfg, device=device)
        cache = encoder_cache(cache_dir, cfg, encoder)
    emb = encode([Text(it.source) if not it.is_file else it.path for it in items], encoder=encoder, cfg=cfg,
                 batch_size=batch_size, cache=cache, progress=progress, device=device)
    metadata = {
        "inputs": json.dumps([it.source for it in items]),
        "modalities": json.dumps([it.modality for it in items]),
        "profile": profile.name,
        "encoder": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
    }
    if cache is not None:
        metadata["encoder_id"] = cache.identity
    with atomic_path(out) as tmp:
        save_file({"embeddings": emb.contiguous()}, str(tmp), metadata=metadata)
    summary = {"n": emb.shape[0], "dim": emb.shape[1], "seconds": time.perf_counter() - start, "out": out,
               "modalities": [it.modality for it in items]}
    if cache is not None:
        summary["cache"] = cache.stats()
    return summary
