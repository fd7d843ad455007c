"""The tiny profile's pretrained assets that ship inside the package, and how to rebuild them.

In the paper the encoder (ImageBind) and the LLM (Vicuna) are frozen *pretrained* models. The
tiny profile mirrors that: its tokenizer, encoder and LLM are trained on the toy world by the
functions here and shipped in `nextgpt_mini/assets/`. `MANIFEST.json` records the SHA-256 of
every shipped file, so a test notices a file that no longer matches what was built.

`nextgpt-mini build-tiny WHAT` rebuilds one asset reproducibly on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from nextgpt_mini.utils import ASSETS, atomic_write_text, torch_threads

MANIFEST = ASSETS / "MANIFEST.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest() -> dict[str, str]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def record_in_manifest(files: list[Path]) -> None:
    """Store the hashes of freshly built files (paths relative to the assets folder)."""
    manifest = read_manifest()
    for f in files:
        manifest[f.relative_to(ASSETS).as_posix()] = sha256_file(f)
    atomic_write_text(MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


def build_tokenizer(out: Path) -> list[Path]:
    from nextgpt_mini.tiny.tokenizer import save_tiny_tokenizer, train_tiny_tokenizer

    tok = train_tiny_tokenizer()
    save_tiny_tokenizer(tok, out)
    print(f"tokenizer: {tok.get_vocab_size()} tokens (byte-level BPE on the toy world's text)")
    return [out / "tokenizer.json", out / "tokenizer_config.json"]


def build_encoder(out: Path, quick: bool = False) -> list[Path]:
    from nextgpt_mini.tiny.pretrain.encoder import build_tiny_encoder

    return build_tiny_encoder(out, quick=quick)


def build_clap(out: Path, quick: bool = False) -> list[Path]:
    from nextgpt_mini.tiny.pretrain.clap import build_tiny_clap_text

    return build_tiny_clap_text(out, quick=quick)


def build_llm(out: Path, quick: bool = False) -> list[Path]:
    from nextgpt_mini.tiny.pretrain.llm import build_tiny_llm

    return build_tiny_llm(out, quick=quick)


def build_system(out: Path, quick: bool = False) -> list[Path]:
    """The tiny system after the three stages at their default steps (what `nextgpt-mini demo`
    trains), saved with `save_pretrained`: chapters and tests that need a trained system load it
    in a second instead of training for minutes. config.json records the hashes of the shipped
    encoder and LLM it was trained on, so a test notices when they change and it must be rebuilt."""
    import tempfile

    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.tiny.demo import summary_lines, train_stages

    # one thread, as `demo` trains: the sums then run in the same order, so on the same CPU the
    # demo's checkpoint is this one, bit for bit (two threads change the last digits)
    with tempfile.TemporaryDirectory() as work, torch_threads(1):
        model, numbers = train_stages(load_profile("tiny"), Path(work), quick)
    for line in summary_lines(numbers):
        print(line)
    model.save_pretrained(out)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["trained_on"] = system_base_hashes()
    atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")
    return [config_path, out / "trained.safetensors"]


# The shipped files a trained tiny system depends on (the frozen encoder, LLM and audio decoder's text side).
SYSTEM_BASES = ("tiny_imagebind.safetensors", "tiny_llm/model.safetensors", "tiny_llm/tokenizer.json",
                "tiny_clap_text.safetensors")


def system_base_hashes() -> dict[str, str]:
    return {name: sha256_file(ASSETS / name) for name in SYSTEM_BASES}


BUILDERS = {
    "tokenizer": (build_tokenizer, "tiny_tokenizer"),
    "encoder": (build_encoder, "."),
    "llm": (build_llm, "tiny_llm"),
    "clap": (build_clap, "."),  # after encoder: it learns against the encoder's sounds
    "system": (build_system, "tiny_system"),  # after encoder and llm: it is trained on them
}


def build(what: str, out: str | None = None, quick: bool = False) -> int:
    """Rebuild one asset. Into the package (and its manifest) unless `out` is given."""
    if what not in BUILDERS:
        raise ValueError(f"unknown asset {what!r}: expected one of {', '.join(BUILDERS)}")
    builder, folder = BUILDERS[what]
    target = Path(out) if out else ASSETS / folder
    start = time.perf_counter()
    kwargs = {"quick": True} if quick and what != "tokenizer" else {}
    files = builder(target, **kwargs)
    if out is None and not quick:
        record_in_manifest(files)
    for f in files:
        print(f"  {f.name}: {f.stat().st_size / 1e3:.1f} kB sha256 {sha256_file(f)[:16]}…")
    print(f"built {what} in {time.perf_counter() - start:.1f} s -> {target}")
    return 0
