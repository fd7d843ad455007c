"""`nextgpt-mini download --profile colab|paper [--dir D]`: fetch every weight a profile loads,
once, before a workshop or a job, so that nothing downloads while people wait.

What a profile loads from outside: the ImageBind checkpoint (a URL, cached as a file), the LLM and
the three decoder pipelines (hub repositories). Hub repositories go into a Hugging Face cache
(`--dir D` uses D/hub), so the loaders find them by hub id with HF_HUB_OFFLINE=1; ImageBind goes
into the package's weights cache (D/imagebind with --dir). For a room: run it once on a shared
drive, then everyone sets

    export HF_HUB_CACHE=D/hub NEXTGPT_MINI_CACHE=D/imagebind HF_HUB_OFFLINE=1

Downloads resume: huggingface_hub continues partial files, and so does the ImageBind download.
`--check` only reports what is present and what is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nextgpt_mini.config import ProfileConfig


@dataclass
class Source:
    what: str  # "ImageBind", "LLM", "image decoder", ...
    ref: str  # URL or hub id
    kind: str  # "url" or "hub"


def sources(profile: ProfileConfig) -> list[Source]:
    """What `profile` loads from the network (package assets and local folders are not listed)."""
    out = []
    weights = profile.encoder.weights or ""
    if weights.startswith(("http://", "https://")):
        out.append(Source("ImageBind", weights, "url"))
    refs = [("LLM", profile.llm.name_or_path)] + [(f"{m} decoder", profile.decoder(m).name_or_path)
                                                  for m in ("image", "video", "audio")]
    for what, ref in refs:
        if ref and ref != "tiny" and not ref.startswith("package:") and not Path(ref).exists():
            out.append(Source(what, ref, "hub"))
    return out


def _hub_cache(folder: str | os.PathLike | None) -> str | None:
    return str(Path(folder) / "hub") if folder else None


def _weights_cache(folder: str | os.PathLike | None) -> str | None:
    return str(Path(folder) / "imagebind") if folder else None


def is_present(source: Source, folder: str | os.PathLike | None = None) -> bool:
    if source.kind == "url":
        from nextgpt_mini.models.imagebind import resolve_weights

        try:
            resolve_weights(source.ref, cache_dir=_weights_cache(folder), download=False)
            return True
        except FileNotFoundError:
            return False
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(source.ref, cache_dir=_hub_cache(folder), local_files_only=True)
        return True
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return False


def check(profile: ProfileConfig, folder: str | os.PathLike | None = None) -> list[tuple[Source, bool]]:
    return [(s, is_present(s, folder)) for s in sources(profile)]


def download(profile: ProfileConfig, folder: str | os.PathLike | None = None) -> list[Source]:
    """Fetch whatever of `profile` is missing; returns what was fetched. Offline, raises one
    FileNotFoundError listing everything missing and the command to run where there is network."""
    from nextgpt_mini.models.imagebind import _offline, resolve_weights

    missing = [s for s, present in check(profile, folder) if not present]
    if missing and _offline():
        where = f" --dir {folder}" if folder else ""
        names = "; ".join(f"{s.what}: {s.ref}" for s in missing)
        raise FileNotFoundError(f"HF_HUB_OFFLINE is set and {len(missing)} weights are missing ({names}): "
                                f"run `nextgpt-mini download --profile {profile.name}{where}` with network access")
    from huggingface_hub import snapshot_download

    for s in missing:
        print(f"fetching {s.what}: {s.ref}")
        if s.kind == "url":
            resolve_weights(s.ref, cache_dir=_weights_cache(folder), download=True)
        else:
            # weights in safetensors only where the repository has them (no duplicate .bin / .ckpt)
            snapshot_download(s.ref, cache_dir=_hub_cache(folder), ignore_patterns=["*.ckpt", "*.msgpack", "*.h5", "*.onnx*"])
    return missing


def format_check(profile: ProfileConfig, rows: list[tuple[Source, bool]], folder=None) -> str:
    lines = [f"profile {profile.name}: {len(rows)} downloads" + (f" (in {folder})" if folder else "")]
    for s, present in rows:
        lines.append(f"  {'present' if present else 'MISSING':8s} {s.what:14s} {s.ref}")
    if folder:
        lines.append(f"use it with: export HF_HUB_CACHE={Path(folder) / 'hub'} NEXTGPT_MINI_CACHE={Path(folder) / 'imagebind'}")
    return "\n".join(lines)
