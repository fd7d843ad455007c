"""Chapters 00-09: small helpers shared by every module: device and dtype choice, seeding, atomic writes, assets."""

from __future__ import annotations

import contextlib
import errno
import io
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


def frozen_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """The one dtype policy: every frozen model (LLM, ImageBind, decoders) loads in `pick_dtype` of
    the device it runs on (default: the best available), unless a caller asks for another. What
    trains stays fp32 (projectors; the signal rows, `NewRows`; LoRA, which peft keeps in fp32), and
    mixed precision (autocast) runs the frozen parts' matmuls in 16 bits."""
    return pick_dtype(pick_device(None if device is None else str(device)))


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


# errno values that mean "the disk (or the user's quota, or the file size limit) is full"
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def disk_full_error(err: BaseException, path: Path, what: str) -> OSError | None:
    """A one-line OSError naming `path` if `err` is a full disk, else None."""
    if isinstance(err, OSError) and err.errno in DISK_FULL:
        reason = os.strerror(err.errno).lower()
        return OSError(err.errno, f"{path}: {reason} while writing it; the earlier {what} (if any) is untouched. "
                                  "Free some space or write to another folder")
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    A crash or an exception mid-write leaves the earlier file (if any) untouched; a full disk
    becomes a one-line OSError naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise (disk_full_error(err, path, "file") or err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as err:
        raise (disk_full_error(err, path, "file") or err) from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty sibling `.<name>.tmp` folder to fill; on success it replaces `folder`.

    The old folder is first renamed to `.<name>.old` and removed only after the swap, so a crash
    leaves either the old or the new folder complete (a reader may fall back to `.<name>.old`).
    On an error the temporary folder is removed and `folder` is untouched; a full disk becomes a
    one-line OSError naming `folder`.
    """
    import shutil

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = folder.parent / f".{folder.name}.tmp", folder.parent / f".{folder.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        full = disk_full_error(err, folder, "folder")
        if full is not None:
            raise full from err
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_file(path: str | os.PathLike, data: bytes, sync: bool = False) -> None:
    """Write `data` with Python's own file object, so a full disk raises an OSError with its errno
    (safetensors' Rust writer and torch's C++ one report it vaguely: torch says "unexpected pos
    704 vs 598"). `sync`: also fsync before returning, so that a later rename never publishes a
    file whose bytes are still only in memory (what checkpoints need on a power loss or a reset)."""
    with open(path, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None, sync: bool = False) -> None:
    """safetensors.torch.save_file, written through `write_file`."""
    from safetensors.torch import save

    write_file(path, save(tensors, metadata=metadata), sync)


def save_torch(obj, path: str | os.PathLike, sync: bool = False) -> None:
    """torch.save, written through `write_file`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_file(path, buffer.getvalue(), sync)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        write_file(tmp, data)


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
