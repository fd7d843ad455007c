"""The full-size dry run (`make dry-run`): the colab and paper profiles' real loading code through
hub ids, offline, from a cache of random weights laid out as the hub's (benchmarks/dry_run_cache.py).

The environment is set here, at import, before anything imports huggingface_hub (which reads
HF_HUB_CACHE once); `make test` leaves this folder out (it takes minutes and 10 GB of disk).
NEXTGPT_DRY_RUN_DIR moves the cache (default /tmp/nextgpt-dry-run); NEXTGPT_DRY_RUN_KEEP=1 keeps it
after the run, e.g. to try the full-size paths by hand with the environment set above."""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

DRY = Path(os.environ.get("NEXTGPT_DRY_RUN_DIR", "/tmp/nextgpt-dry-run"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(DRY / "hub")
os.environ["NEXTGPT_MINI_CACHE"] = str(DRY / "imagebind")
os.environ["NEXTGPT_MINI_STUDENT_DIR"] = str(DRY / "student")  # the colab chapters' own 02 -> 04 -> 06 -> 07 chain
REPO = Path(__file__).resolve().parents[2]


def _cache_module():
    spec = importlib.util.spec_from_file_location("dry_run_cache", REPO / "benchmarks" / "dry_run_cache.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def dry_cache():
    """Build the cache (both profiles, about 40 s, 10 GB) and check the libraries will read it."""
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_CACHE == str(DRY / "hub"), "huggingface_hub was imported before this conftest"
    module = _cache_module()
    seconds = module.build(DRY)
    print(f"dry-run cache: {DRY} in {sum(seconds.values()):.0f} s")
    yield module
    if not os.environ.get("NEXTGPT_DRY_RUN_KEEP"):  # 10 GB: kept only when asked for
        shutil.rmtree(DRY, ignore_errors=True)
