import os

# Nothing in the test suite may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one torch thread (see `nextgpt_mini.utils.torch_threads`), restored after."""
    from nextgpt_mini.utils import torch_threads

    with torch_threads(1):
        yield
