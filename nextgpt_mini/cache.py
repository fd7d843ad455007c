"""Chapters 01 and 04: an on-disk cache of per-item tensors, keyed by what went in and by the model that made them.

NExT-GPT keeps ImageBind frozen, so an item's embedding never changes while the item and the
encoder stay the same: encode each file once, then read it back. The same holds for stage 2's
targets (a caption's conditioning embedding from a frozen decoder text encoder), so the cache is
generic: a value is one Tensor or a dict of named Tensors.

Two hashes make an entry:

- the **key**: what the item is. `file_key(path, modality)` hashes the file's bytes (not its name
  or date: a copy hits, an edited file misses); `text_key(text)` hashes "text:" + the UTF-8 text.
- the **identity** (`EmbeddingCache(root, identity)`): which model made the value.
  `encoder_identity(cfg, weights_path)` hashes the EncoderConfig (the preprocessing settings are
  in it too) and the weights file's sha256; for random weights, the state dict's bytes. Another
  encoder lands in another folder, so it can never read a stale value.

Layout: `root/<identity[:16]>/<key[:2]>/<key>.safetensors`, one small file per item, each
holding its full key and identity in its metadata (checked on read). Files are written to a
temporary name and renamed (`utils.atomic_path`): a crash mid-write leaves no entry, never a
half-written one. An entry that cannot be read (truncated, corrupt, foreign) is reported with a
warning, deleted and counted as a miss, so the caller recomputes and rewrites it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _load_bytes

from nextgpt_mini.utils import asset_path, atomic_path, save_safetensors

__all__ = [
    "CACHE_FORMAT",
    "EmbeddingCache",
    "Value",
    "encoder_identity",
    "file_key",
    "model_identity",
    "sha256_file",
    "state_dict_digest",
    "text_key",
]

# Part of every identity: bump it when the meaning of a cached value changes (for example a
# preprocessing fix), and every old entry becomes unreachable.
CACHE_FORMAT = "nextgpt_mini.cache/1"
# The tensor name that holds a plain-Tensor value inside its safetensors file.
_SINGLE = "__value__"
_NAME = re.compile(r"[A-Za-z0-9_.-]{2,200}")
_CHUNK = 1 << 20

Value = torch.Tensor | dict


# --------------------------------------------------------------------------------------------
# Keys: what the item is
# --------------------------------------------------------------------------------------------
def _sha256_stream(prefix: bytes, path: str | os.PathLike) -> str:
    h = hashlib.sha256(prefix)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def file_key(path: str | os.PathLike, modality: str) -> str:
    """sha256 of "<modality>:" + the file's bytes.

    The modality is part of the key because the same bytes are read differently as audio and as
    video (an .mp4's soundtrack vs. its frames). Text keys follow the same rule ("text:").
    """
    return _sha256_stream(f"{modality}:".encode(), path)


def text_key(text: str, prefix: str = "text") -> str:
    """sha256 of "text:" + the UTF-8 text (`prefix` names another kind of string item)."""
    return hashlib.sha256(f"{prefix}:".encode() + text.encode("utf-8")).hexdigest()


_FILE_DIGESTS: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, memo: bool = True) -> str:
    """sha256 of a file's bytes. With memo=True the result is remembered for this process per
    (path, size, mtime, inode), so a 4 GB weights file is hashed once; an atomic rewrite changes
    the inode and is hashed again."""
    p = Path(path).resolve()
    st = p.stat()
    sig = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo and sig in _FILE_DIGESTS:
        return _FILE_DIGESTS[sig]
    digest = _sha256_stream(b"", p)
    if memo:
        _FILE_DIGESTS[sig] = digest
    return digest


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict (sorted by name): the
    identity of random or in-memory weights that have no file."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if t.is_meta:
            raise ValueError(f"cannot hash {name}: it is on the meta device (load the weights first)")
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(state_dict[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Identities: which model made the value
# --------------------------------------------------------------------------------------------
def model_identity(
    kind: str,
    config: Any,
    weights_path: str | os.PathLike | None = None,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    exclude: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> str:
    """sha256 hex of (CACHE_FORMAT, kind, config without `exclude`d fields, weights, extra).

    config: a dataclass or a dict. The weights count by content: `weights_path`'s sha256, or
    `state_dict`'s digest when there is no file. One of the two is required: an identity that
    ignored the weights would keep serving values after the weights change.
    """
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    for name in exclude:
        cfg.pop(name, None)
    payload: dict[str, Any] = {"format": CACHE_FORMAT, "kind": kind, "config": cfg, "extra": dict(extra or {})}
    if weights_path is not None:
        payload["weights_sha256"] = sha256_file(weights_path)
    elif state_dict is not None:
        payload["state_dict_sha256"] = state_dict_digest(state_dict)
    else:
        raise ValueError("model_identity needs weights_path or state_dict: the weights are part of the identity")
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _tokenizer_digest(tokenizer: str) -> str:
    """The text tower's ids depend on the tokenizer's vocabulary: hash its file when it is one of
    ours ("package:<folder>" or a path); Meta's "clip-bpe" vocabulary is fixed."""
    if tokenizer == "clip-bpe":
        return tokenizer
    location = asset_path(tokenizer) if tokenizer.startswith("package:") else Path(tokenizer)
    file = location / "tokenizer.json" if location.is_dir() else location
    return sha256_file(file) if file.is_file() else f"missing:{tokenizer}"


def encoder_identity(
    cfg: Any,
    weights_path: str | os.PathLike | None = None,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> str:
    """Identity of an ImageBind encoder: its EncoderConfig (every size and preprocessing setting;
    `weights`, a mere reference, is left out because the content counts instead) + the weights
    file's sha256, or for random weights `state_dict`'s digest + the tokenizer's vocabulary."""
    cfg_dict = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return model_identity(
        "imagebind-embedding",
        cfg_dict,
        weights_path,
        state_dict=state_dict,
        exclude=("weights",),
        extra={"tokenizer": _tokenizer_digest(str(cfg_dict.get("tokenizer", "clip-bpe")))},
    )


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------
class EmbeddingCache:
    """Per-item tensors on disk under `root/<identity[:16]>/`.

    >>> cache = EmbeddingCache("cache", encoder_identity(cfg, weights_path))
    >>> found = cache.get_many(keys)            # {key: value} for the hits only
    >>> cache.put_many({key: tensor, ...})      # values: Tensor or dict[str, Tensor]

    Counters: `hits`, `misses` (corrupt entries included), `corrupt`, `writes`.
    """

    def __init__(self, root: str | os.PathLike, identity: str) -> None:
        if not isinstance(identity, str) or not re.fullmatch(r"[A-Za-z0-9_-]{8,200}", identity):
            raise ValueError(f"identity must be a hash-like string of 8+ letters/digits, got {identity!r}")
        self.root = Path(root).expanduser()
        self.identity = identity
        self.dir = self.root / identity[:16]
        self.hits = self.misses = self.corrupt = self.writes = 0

    def __repr__(self) -> str:
        return (f"EmbeddingCache({str(self.root)!r}, {self.identity[:16]}..., hits={self.hits}, "
                f"misses={self.misses}, corrupt={self.corrupt}, writes={self.writes})")

    # ---------------------------------------------------------------- paths and counters
    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _NAME.fullmatch(key) or key.startswith("."):
            raise ValueError(f"cache key must be 2-200 characters of [A-Za-z0-9_.-], got {key!r}")
        return self.dir / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        """Whether an entry file exists (not whether it reads: `get` checks that)."""
        return self.path_for(key).is_file()

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt, "writes": self.writes}

    def reset_stats(self) -> None:
        self.hits = self.misses = self.corrupt = self.writes = 0

    # ---------------------------------------------------------------- reading
    def get(self, key: str) -> Value | None:
        """The stored value, or None on a miss. A damaged entry warns, is deleted, and misses."""
        path = self.path_for(key)
        try:
            with open(path, "rb") as fh:
                data, inode = fh.read(), os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            value = self._decode(data, key)
        except Exception as err:  # noqa: BLE001 - any damage at all is a miss, never a crash
            self.misses += 1
            self.corrupt += 1
            warnings.warn(f"embedding cache: unreadable entry {path} ({type(err).__name__}: {err}); "
                          "treating it as a miss, it will be recomputed", stacklevel=2)
            try:  # only the file that was read: another process may have written a good one since
                if os.stat(path).st_ino == inode:
                    path.unlink()
            except OSError:
                pass
            return None
        self.hits += 1
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        """{key: value} for the keys that hit (each distinct key is read and counted once)."""
        out: dict[str, Value] = {}
        for key in dict.fromkeys(keys):
            value = self.get(key)
            if value is not None:
                out[key] = value
        return out

    def _decode(self, data: bytes, key: str) -> Value:
        if len(data) < 8:
            raise ValueError(f"{len(data)} bytes is shorter than a safetensors header")
        size = int.from_bytes(data[:8], "little")
        if size > len(data) - 8:
            raise ValueError(f"header of {size} bytes in a {len(data)}-byte file: truncated")
        meta = json.loads(data[8 : 8 + size].decode("utf-8")).get("__metadata__") or {}
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key or meta.get("encoder_id") != self.identity:
            raise ValueError("metadata does not match this key and identity")
        tensors = _load_bytes(data)  # checks every tensor's byte range: a truncated file raises
        if meta.get("kind") == "tensor":
            return tensors[_SINGLE]
        if meta.get("kind") == "dict":
            return dict(tensors)
        raise ValueError(f"unknown value kind {meta.get('kind')!r}")

    # ---------------------------------------------------------------- writing
    def put(self, key: str, value: Value) -> Path:
        """Store `value` (a Tensor or a dict[str, Tensor]) atomically; returns the entry's path."""
        if isinstance(value, torch.Tensor):
            kind, tensors = "tensor", {_SINGLE: value}
        elif isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            if _SINGLE in value:
                raise ValueError(f"{_SINGLE!r} is reserved as a tensor name")
            kind, tensors = "dict", dict(value)
        else:
            raise TypeError(f"cache values are a Tensor or a non-empty dict of Tensors, got {type(value).__name__}")
        # clone(): a row of a batch is a view; save only its own bytes, on the CPU.
        tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
        # the metadata keeps its first name, "encoder_id", so entries written before the rename still read
        meta = {"format": CACHE_FORMAT, "key": key, "encoder_id": self.identity, "kind": kind}
        path = self.path_for(key)
        with atomic_path(path) as tmp:  # renamed only once whole: no half entries, even for readers in other processes
            save_safetensors(tensors, tmp, metadata=meta)
        self.writes += 1
        return path

    def put_many(self, items: Mapping[str, Value] | Iterable[tuple[str, Value]]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self.put(key, value)
