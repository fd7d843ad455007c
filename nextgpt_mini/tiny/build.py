"""Chapter 00: `nextgpt-mini build-tiny WHAT`, which rebuilds one of the tiny profile's shipped assets.

In the paper the encoder (ImageBind) and the LLM (Vicuna) are frozen *pretrained* models. The
tiny profile mirrors that: its tokenizer, encoder, LLM and audio decoder's text encoder are
trained on the toy world (`tiny/tokenizer.py`, `tiny/pretrain/`) and shipped in
`nextgpt_mini/assets/` (named in `tiny/registry.py`), and so is a trained system, so that chapters
and tests need not train one for minutes. Each build is reproducible on a CPU; built into the
package, it records its files' hashes in `MANIFEST.json` and its measured numbers in
`BUILD_RESULTS.md`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from nextgpt_mini.cache import sha256_file
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import understanding
from nextgpt_mini.tiny.demo import train_stages
from nextgpt_mini.tiny.pretrain.audio_decoder import build_tiny_audio_decoder
from nextgpt_mini.tiny.pretrain.clap import build_tiny_clap_text
from nextgpt_mini.tiny.pretrain.encoder_train import build_tiny_encoder
from nextgpt_mini.tiny.pretrain.image_decoder import build_tiny_image_decoder
from nextgpt_mini.tiny.pretrain.llm import build_tiny_llm
from nextgpt_mini.tiny.pretrain.loop import refuse_quick_build_into_package
from nextgpt_mini.tiny.pretrain.video_decoder import build_tiny_video_decoder
from nextgpt_mini.tiny.registry import (
    LLM_FOLDER,
    SYSTEM_FOLDER,
    TOKENIZER_FOLDER,
    record_in_manifest,
    record_results,
    system_base_hashes,
)
from nextgpt_mini.tiny.tokenizer import build_tiny_tokenizer
from nextgpt_mini.training.report import summary_lines
from nextgpt_mini.utils import ASSETS, atomic_write_text, torch_threads


def build_system(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """The tiny system after the three stages at their default steps (what `nextgpt-mini demo`
    trains), saved with `save_pretrained`. config.json records the hashes of the shipped encoder,
    LLM and CLAP text encoder it was trained on, so a test notices when they change and it must be
    rebuilt."""
    refuse_quick_build_into_package(out, quick)
    # one thread, as `demo` trains: the sums then run in the same order, so on the same CPU the
    # demo's checkpoint is this one, bit for bit (two threads change the last digits)
    with tempfile.TemporaryDirectory() as work, torch_threads(1):
        model, numbers = train_stages(load_profile("tiny"), Path(work), quick)
        measured = understanding.lines(model, Decoders(model.profile)) if not quick else []
    model.save_pretrained(out)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["trained_on"] = system_base_hashes()
    atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")
    return [config_path, out / "trained.safetensors"], summary_lines(numbers) + measured


# what -> (builder(out, quick) -> (files, result lines), where in the package it writes)
BUILDERS = {
    "tokenizer": (build_tiny_tokenizer, TOKENIZER_FOLDER),
    "encoder": (build_tiny_encoder, "."),  # one file, registry.ENCODER_WEIGHTS
    "llm": (build_tiny_llm, LLM_FOLDER),
    "clap": (build_tiny_clap_text, "."),  # registry.CLAP_TEXT_WEIGHTS; after encoder: it learns against its sounds
    "system": (build_system, SYSTEM_FOLDER),  # after encoder, llm and clap: it is trained on them
    "image-decoder": (build_tiny_image_decoder, "."),  # registry.IMAGE_DECODER_WEIGHTS; after encoder
    "video-decoder": (build_tiny_video_decoder, "."),  # registry.VIDEO_DECODER_WEIGHTS; after image-decoder
    "audio-decoder": (build_tiny_audio_decoder, "."),  # registry.AUDIO_DECODER_WEIGHTS; after clap
}


def build(what: str, out: str | None = None, quick: bool = False) -> int:
    """Rebuild one asset: into the package, its manifest and BUILD_RESULTS.md, unless `out` is
    given (then the measured numbers go to `out/BUILD_RESULTS.md`)."""
    if what not in BUILDERS:
        raise ValueError(f"unknown asset {what!r}: expected one of {', '.join(BUILDERS)}")
    builder, folder = BUILDERS[what]
    target = Path(out) if out else ASSETS / folder
    start = time.perf_counter()
    files, lines = builder(target, quick)
    lines += [f"  {f.name}: {f.stat().st_size / 1e3:.1f} kB sha256 {sha256_file(f)[:16]}…" for f in files]
    lines.append(f"built {what}{' (quick)' if quick else ''} in {time.perf_counter() - start:.1f} s")
    print("\n".join(lines) + f" -> {target}")
    if out is None:
        record_in_manifest(files)
    record_results(what, lines, ASSETS if out is None else target)
    return 0
