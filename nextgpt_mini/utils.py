"""Chapters 00-09: small helpers shared by every module: device and dtype choice, seeding, atomic writes, assets."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).parent / "assets"


def pick_device(prefer: str | None = None) -> torch.device:
    """cuda -> mps -> cpu, unless `prefer` names one."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 where the GPU supports it, fp16 on older GPUs (a T4), fp32 on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block (None: unchanged); the old setting comes back.

    Tiny models are hundreds of small tensor ops, which extra intra-op threads slow down on a busy
    small machine, so builds and tests of the tiny profile use one (measured: assets/BUILD_RESULTS.md,
    History, "Threads").
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def asset_path(ref: str) -> Path:
    """Resolve "package:<name>" to a file or folder shipped inside the package."""
    if not ref.startswith("package:"):
        raise ValueError(f"not a package asset reference: {ref!r}")
    return ASSETS / ref.split(":", 1)[1]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A crash or an exception mid-write leaves the earlier file (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty sibling `.<name>.tmp` folder to fill; on success it replaces `folder`.

    The old folder is first renamed to `.<name>.old` and removed only after the swap, so a crash
    leaves either the old or the new folder complete (a reader may fall back to `.<name>.old`).
    On an error the temporary folder is removed and `folder` is untouched.
    """
    import shutil

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = folder.parent / f".{folder.name}.tmp", folder.parent / f".{folder.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def writable_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path` as a folder we can write into, created if needed; checked before any long work so a
    bad output path fails in a second, not after training. Errors name `what` and the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except PermissionError:
        raise PermissionError(f"{what} {path}: not writable (permission denied); choose another folder") from None
    except OSError as err:
        raise OSError(f"{what} {path}: cannot write there ({err.strerror or err})") from None
    return path
