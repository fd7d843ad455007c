"""Chapter 00: the one table of the tiny profile's shipped assets, and the records kept about them.

Every asset the tiny profile ships in `nextgpt_mini/assets/` is named here once; the builders,
loaders and tests read the names from this table (the core's profile keeps its own
"package:<name>" strings, since the core never imports `tiny`; a test checks they name entries
here). `MANIFEST.json` records the SHA-256 of every shipped file, so a test notices a file that
no longer matches what was built; `BUILD_RESULTS.md` records what each build measured, one
section per asset, replaced by that asset's next build.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from nextgpt_mini.cache import sha256_file
from nextgpt_mini.utils import ASSETS, atomic_write_text

TOKENIZER_FOLDER = "tiny_tokenizer"
ENCODER_WEIGHTS = "tiny_imagebind.safetensors"
LLM_FOLDER = "tiny_llm"
CLAP_TEXT_WEIGHTS = "tiny_clap_text.safetensors"
IMAGE_DECODER_WEIGHTS = "tiny_image_decoder.safetensors"  # the trained tiny Stable Diffusion
VIDEO_DECODER_WEIGHTS = "tiny_video_decoder.safetensors"  # the tiny Zeroscope (built after the image decoder)
AUDIO_DECODER_WEIGHTS = "tiny_audio_decoder.safetensors"  # the tiny AudioLDM (after clap)
DECODER_WEIGHTS = {"image": IMAGE_DECODER_WEIGHTS, "video": VIDEO_DECODER_WEIGHTS, "audio": AUDIO_DECODER_WEIGHTS}
SYSTEM_FOLDER = "tiny_system"
SHIPPED = (TOKENIZER_FOLDER, ENCODER_WEIGHTS, LLM_FOLDER, CLAP_TEXT_WEIGHTS, IMAGE_DECODER_WEIGHTS,
           VIDEO_DECODER_WEIGHTS, AUDIO_DECODER_WEIGHTS, SYSTEM_FOLDER)

# The builder name each weights file records in its metadata: the module that built the shipped
# file. Part of the file's bytes, so renaming it changes the manifest and the system's
# `trained_on` hashes: change it together with a rebuild of the asset and of the system.
BUILT_BY = {ENCODER_WEIGHTS: "nextgpt_mini.encoders.pretrain", CLAP_TEXT_WEIGHTS: "nextgpt_mini.clap_pretrain"}

# The shipped files a trained tiny system depends on (the frozen encoder, LLM and audio decoder's
# text side), and the decoders whose text encoders gave its stage-2 and stage-3 targets: of those
# only the text encoder's tensors count, so a decoder rebuilt with the same text encoder (a new
# UNet, VAE or vocoder) needs no new system.
SYSTEM_BASES = (ENCODER_WEIGHTS, f"{LLM_FOLDER}/model.safetensors", f"{LLM_FOLDER}/tokenizer.json", CLAP_TEXT_WEIGHTS)
SYSTEM_TEXT_ENCODERS = (IMAGE_DECODER_WEIGHTS, VIDEO_DECODER_WEIGHTS)

MANIFEST = "MANIFEST.json"
BUILD_RESULTS = "BUILD_RESULTS.md"
RECORDS = (MANIFEST, BUILD_RESULTS)  # files in the assets folder that describe assets, not assets
# files in the assets folder that a build reads, not assets: the tokenizer's training text, frozen
# as it was when the shipped tokenizer was built (tiny/tokenizer.py)
TOKENIZER_CORPUS = "tiny_tokenizer_corpus.txt.gz"
BUILD_INPUTS = (TOKENIZER_CORPUS,)
HISTORY = "## History"


def ref(name: str) -> str:
    """The "package:<name>" reference a profile uses for a shipped asset."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not a shipped asset: expected one of {', '.join(SHIPPED)}")
    return f"package:{name}"


def read_manifest() -> dict[str, str]:
    path = ASSETS / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def manifest_mismatches() -> list[str]:
    """The manifest's files whose bytes are not the ones it records (empty: all match)."""
    return [rel for rel, digest in read_manifest().items()
            if not (ASSETS / rel).is_file() or sha256_file(ASSETS / rel) != digest]


def record_in_manifest(files: list[Path]) -> None:
    """Store the hashes of freshly built files (paths relative to the assets folder)."""
    manifest = read_manifest()
    for f in files:
        manifest[f.relative_to(ASSETS).as_posix()] = sha256_file(f)
    atomic_write_text(ASSETS / MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


def text_encoder_hash(path: Path) -> str:
    """sha256 of a decoder weights file's "text_encoder." tensors (names, dtypes, shapes and bytes)."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(path), "pt") as fh:
        for name in sorted(k for k in fh.keys() if k.startswith("text_encoder.")):
            tensor = fh.get_tensor(name).contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def system_base_hashes() -> dict[str, str]:
    hashes = {name: sha256_file(ASSETS / name) for name in SYSTEM_BASES}
    hashes.update({f"{name}#text_encoder": text_encoder_hash(ASSETS / name) for name in SYSTEM_TEXT_ENCODERS})
    return hashes


def record_results(what: str, lines: list[str], folder: Path = ASSETS) -> Path:
    """Replace the `what` section of `folder/BUILD_RESULTS.md` by `lines` (what the build printed),
    keeping the other sections and the History at the end; written atomically."""
    path = Path(folder) / BUILD_RESULTS
    text = path.read_text() if path.exists() else "# Build results\n\n"
    head, sep, history = text.partition(HISTORY)
    parts = re.split(r"(?m)^(?=## )", head)
    sections = {p.split("\n", 1)[0][3:].strip(): p for p in parts[1:]}
    body = "\n".join(lines)
    sections[what] = f"## {what}\n\nWritten by `nextgpt-mini build-tiny {what}`.\n\n```text\n{body}\n```\n\n"
    atomic_write_text(path, parts[0] + "".join(sections.values()) + sep + history)
    return path
