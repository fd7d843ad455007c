"""Load Meta's ImageBind model code (from `imagebind-unofficial`) for parity tests.

The package cannot be imported normally: its `__init__` imports `imagebind.data`, which needs
torchaudio and `pkg_resources`. Its model modules are plain PyTorch, so we register bare
`imagebind` / `imagebind.models` packages pointing at the installed folders (skipping their
`__init__`) and import the model modules directly. They also import `timm.layers` (which only
works next to torchvision, kept out of this environment) and `iopath` (for the tokenizer):
small stand-ins are put in `sys.modules` when those packages are absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn


class _DropPath(nn.Module):
    """timm's DropPath: per-sample stochastic depth, the identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def _install_shim(name: str, **attrs) -> None:
    """Register module `name` (and bare parents) in sys.modules unless it is importable."""
    if name in sys.modules:
        return
    top = name.split(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is not None:
        return  # the real package exists: use it
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            module = types.ModuleType(sub)
            module.__path__ = []  # a package, so that children can be registered below it
            sys.modules[sub] = module
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


class _PathManager:
    @staticmethod
    def open(path, mode="r", **kwargs):
        return open(path, mode, **kwargs)


def _register_bare_package(name: str, folder: Path) -> None:
    if name in sys.modules:
        return
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    module.__spec__.submodule_search_locations = [str(folder)]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def load_meta_imagebind() -> types.ModuleType:
    """Return Meta's `imagebind.models.imagebind_model` module; ImportError if not installed."""
    if "imagebind.models.imagebind_model" in sys.modules:
        return sys.modules["imagebind.models.imagebind_model"]
    spec = importlib.util.find_spec("imagebind")  # locates the package without running __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("imagebind-unofficial is not installed (pip install --no-deps imagebind-unofficial==0.1.1)")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "models" / "imagebind_model.py").exists():
        raise ImportError(f"{root} does not hold Meta's model code (imagebind/models/imagebind_model.py)")
    _install_shim("timm.layers", DropPath=_DropPath, trunc_normal_=_trunc_normal_)
    _install_shim("iopath.common.file_io", g_pathmgr=_PathManager())
    _register_bare_package("imagebind", root)
    _register_bare_package("imagebind.models", root / "models")
    return importlib.import_module("imagebind.models.imagebind_model")
