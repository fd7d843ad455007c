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
`--check` only reports what is present and what is missing; `--dry-run` lists the files and their
sizes and fetches nothing (offline: sizes estimated from the parameter counts, `scaling.downloads`).

From each repository only what the loaders read comes down (`select_files`): configs, tokenizer
files, and each component's weights once, in safetensors where the repository has them and in
.bin only where it has nothing else; never fp16 / non-EMA variants, root single-file checkpoints,
SD's safety checker (never loaded) or Zeroscope's zs2_576w/ (files for another web UI). Every
repository lists the same files in several formats, so without this the colab profile's download
is about three times larger than what is loaded.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from nextgpt_mini.config import HUB, ProfileConfig
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


# The evaluation models (chapter 09's CLIP score / CLIPSIM and CLAP score) a full-size profile uses.
EVALUATION = (("CLIP (evaluation)", HUB["clip_vit_b32"]), ("CLAP (evaluation)", HUB["clap_htsat"]))
# How each repository stores the weights `select_files` takes: bytes per parameter (the published
# files: SD-1.5, AudioLDM, CLIP, CLAP and ImageBind fp32; Zeroscope, Vicuna fp16; TinyLlama bf16).
STORED_BYTES = {HUB["imagebind_huge"]: 4, HUB["tinyllama_chat"]: 2, HUB["vicuna_7b"]: 2, HUB["sd_v1_5"]: 4,
                HUB["zeroscope_576w"]: 2, HUB["audioldm_s_full_v2"]: 4, HUB["audioldm_l_full"]: 4,
                HUB["clip_vit_b32"]: 4, HUB["clap_htsat"]: 4}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".msgpack", ".h5", ".onnx", ".onnx_data", ".ot")
KEPT_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizers (vocab, merges, sentencepiece), indexes
NEVER = ("safety_checker", "zs2_576w")  # folders no loader reads
VARIANTS = (".fp16.", ".non_ema.", ".ema.", "-fp16.", "_fp16.")


def select_files(names: list[str]) -> list[str]:
    """The files of a repository listing that `download` fetches (see the module docstring)."""
    pipeline = "model_index.json" in names
    kept, weights = [], defaultdict(list)
    for name in names:
        folder, _, base = name.rpartition("/")
        if folder.split("/")[0] in NEVER or any(v in base for v in VARIANTS):
            continue
        if base.endswith(WEIGHT_SUFFIXES):
            if not (pipeline and not folder):  # a pipeline's root weights are single-file checkpoints
                weights[folder].append(name)
        elif base.endswith(KEPT_SUFFIXES):
            kept.append(name)
    for folder, files in weights.items():
        chosen = [f for f in files if f.endswith(".safetensors")] or [f for f in files if f.endswith(".bin")]
        kept += chosen
        if chosen and chosen[0].endswith(".safetensors"):  # the other format's shard index is not needed
            kept = [k for k in kept if not (k.rpartition("/")[0] == folder and k.endswith(".bin.index.json"))]
    return sorted(kept)


def repo_plan(ref: str) -> list[tuple[str, int | None]]:
    """(file, bytes) that `download` takes from hub repository `ref`, read from the hub (network)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(ref, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    return [(name, sizes[name]) for name in select_files(list(sizes))]


def online_plan(wanted: list[Source]) -> list[tuple[Source, list[tuple[str, int | None]]]]:
    """(source, [(file, bytes)]) of what `download` takes from each source, read from the network."""
    return [(s, [(Path(s.ref).name, url_size(s.ref))] if s.kind == "url" else repo_plan(s.ref)) for s in wanted]


def url_size(url: str) -> int | None:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=30) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length else None


def sources(profile: ProfileConfig, evaluation: bool = True) -> list[Source]:
    """What `profile` loads from the network (package assets and local folders are not listed),
    with `evaluation` also the CLIP and CLAP models chapter 09 scores full-size outputs with."""
    out = []
    weights = profile.encoder.weights or ""
    if weights.startswith(("http://", "https://")):
        out.append(Source("ImageBind", weights, "url"))
    refs = [("LLM", profile.llm.name_or_path)] + [(f"{m} decoder", profile.decoder(m).name_or_path)
                                                  for m in MODALITIES]
    for what, ref in refs:
        if ref and ref != "tiny" and not ref.startswith("package:") and not Path(ref).exists():
            out.append(Source(what, ref, "hub"))
    if evaluation and out:  # the tiny profile evaluates with its own toy-world reader, not CLIP / CLAP
        out += [Source(what, ref, "hub") for what, ref in EVALUATION]
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


def check(profile: ProfileConfig, folder: str | os.PathLike | None = None,
          evaluation: bool = True) -> list[tuple[Source, bool]]:
    return [(s, is_present(s, folder)) for s in sources(profile, evaluation)]


def download(profile: ProfileConfig, folder: str | os.PathLike | None = None, evaluation: bool = True) -> list[Source]:
    """Fetch whatever of `profile` is missing; returns what was fetched. Offline, raises one
    FileNotFoundError listing everything missing and the command to run where there is network.
    The files and the total size are printed before anything is fetched."""
    missing = [s for s, present in check(profile, folder, evaluation) if not present]
    if missing and offline():
        where = f" --dir {folder}" if folder else ""
        names = "; ".join(f"{s.what}: {s.ref}" for s in missing)
        raise FileNotFoundError(f"HF_HUB_OFFLINE is set and {len(missing)} weights are missing ({names}): "
                                f"run `nextgpt-mini download --profile {profile.name}{where}` with network access")
    from huggingface_hub import snapshot_download

    plan = online_plan(missing)
    print(format_plan(plan))
    files = {s.ref: [f for f, _ in listed] for s, listed in plan}
    for s in missing:
        print(f"fetching {s.what}: {s.ref}")
        if s.kind == "url":
            resolve_weights(s.ref, cache_dir=_weights_cache(folder), download=True)
        else:
            snapshot_download(s.ref, cache_dir=_hub_cache(folder), allow_patterns=files[s.ref])
    return missing


def format_plan(plan: list[tuple[Source, list[tuple[str, int | None]]]], estimated: bool = False) -> str:
    """The files of each source with their sizes, and the total (GB = 10^9 bytes, as the hub shows)."""
    total = sum(n or 0 for _, files in plan for _, n in files)
    how = " (estimated from parameter counts: offline)" if estimated else ""
    lines = [f"{len(plan)} sources, {total / 1e9:.2f} GB in all{how}"]
    for s, files in plan:
        lines.append(f"  {s.what:18s} {s.ref}  {sum(n or 0 for _, n in files) / 1e9:.2f} GB")
        lines += [f"      {name:50s} {'' if n is None else f'{n / 1e9:7.3f} GB'}" for name, n in files]
    if total > 15e9:
        lines.append("note: more than a free 15 GB Google Drive holds; --no-eval leaves out CLIP and CLAP, and "
                     "ImageBind can stay on the Colab disk (NEXTGPT_MINI_CACHE) while the rest goes to the Drive")
    return "\n".join(lines)


def format_check(profile: ProfileConfig, rows: list[tuple[Source, bool]], folder=None) -> str:
    lines = [f"profile {profile.name}: {len(rows)} downloads" + (f" (in {folder})" if folder else "")]
    for s, present in rows:
        lines.append(f"  {'present' if present else 'MISSING':8s} {s.what:14s} {s.ref}")
    if folder:
        lines.append(f"use it with: export HF_HUB_CACHE={Path(folder) / 'hub'} NEXTGPT_MINI_CACHE={Path(folder) / 'imagebind'}")
    return "\n".join(lines)
