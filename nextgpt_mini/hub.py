"""Chapters 01 and 08: where weights come from.

`resolve_weights(ref)` turns a weights reference (a packaged asset, a local path or a URL) into a
local file, downloading a URL once into the weights cache (resumably: `download_file`) unless
HF_HUB_OFFLINE is set (`offline`).

`nextgpt-mini download --profile colab|paper [--dir D]`: fetch every weight a profile loads,
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

import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nextgpt_mini.config import ProfileConfig
from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.utils import asset_path

logger = logging.getLogger(__name__)

CACHE_ENV = "NEXTGPT_MINI_CACHE"
DOWNLOAD_HINT = "nextgpt-mini download --profile paper"


def weights_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where downloaded weights live: `override`, else $NEXTGPT_MINI_CACHE, else ~/.cache/nextgpt_mini."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nextgpt_mini"


def offline() -> bool:
    """HF_HUB_OFFLINE is set: nothing may be downloaded (the flag huggingface_hub reads, honoured here too)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_weights(ref: str, cache_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Turn a weights reference into a local file path.

    ref: "package:<file>" (shipped in nextgpt_mini/assets), a local path, or an http(s) URL.
    A URL is cached under `weights_cache_dir()` by its file name; a `.safetensors` conversion of it
    (see `models.imagebind_weights.convert_to_safetensors`), if present, is preferred. `cache_dir` overrides
    `weights_cache_dir()`. A missing file is downloaded
    unless download=False or HF_HUB_OFFLINE=1, in which case FileNotFoundError says what to run.
    """
    if ref.startswith("package:"):
        path = asset_path(ref)
        if not path.exists():
            raise FileNotFoundError(f"packaged weights {ref!r} not found at {path}")
        return path
    if urllib.parse.urlparse(ref).scheme not in ("http", "https"):
        path = Path(ref).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path

    folder = weights_cache_dir(cache_dir)
    name = Path(urllib.parse.urlparse(ref).path).name
    target = folder / name
    for candidate in (target.with_suffix(".safetensors"), target):
        if candidate.exists():
            return candidate
    missing = (
        f"ImageBind weights are not in the cache: expected {target} (from {ref}). "
        f"Run `{DOWNLOAD_HINT}` on a machine with network access, or copy the file there"
    )
    if not download or offline():
        why = "HF_HUB_OFFLINE is set" if offline() else "download=False"
        raise FileNotFoundError(f"{missing} ({why}).")
    try:
        download_file(ref, target)
    except (urllib.error.URLError, OSError) as err:
        raise FileNotFoundError(f"{missing}. Download failed: {err}") from err
    return target


def download_file(url: str, target: Path, chunk: int = 1 << 20) -> None:
    """Stream `url` into `target.part` with a progress bar, then rename it to `target`. An earlier
    attempt's `.part` is continued with an HTTP Range request (4.8 GB should not restart from 0)."""
    from tqdm.auto import tqdm

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    logger.info("downloading %s -> %s (from byte %d)", url, target, done)
    with urllib.request.urlopen(request, timeout=60) as response:
        if done and response.status != 206:  # the server ignored the range: start again
            done = 0
        length = int(response.headers.get("Content-Length") or 0)
        total = done + length if length else None
        with open(part, "ab" if done else "wb") as out, \
                tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=target.name) as bar:
            while block := response.read(chunk):
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:  # a connection that ended early: keep the part, resume next time
        raise OSError(f"download of {url} stopped at {size} of {total} bytes; run again to resume")
    os.replace(part, target)


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
                                                  for m in MODALITIES]
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
    missing = [s for s, present in check(profile, folder) if not present]
    if missing and offline():
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
