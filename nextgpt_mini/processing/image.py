"""Chapter 01: ImageBind's vision transform on still images, without torchvision.

`Image.open(...).convert("RGB")` -> Resize(S, BICUBIC) of the shorter side (torchvision on a PIL
image = PIL's own antialiased bicubic resize) -> CenterCrop(S) -> [0, 1] -> CLIP mean/std
=> float32 [3, S, S], with torchvision's integer rounding for the resize and the crop.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.processing.errors import MediaError, check_file, decode_error

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_EXTENSIONS",
    "center_crop_box",
    "image_to_tensor",
    "load_image",
    "resize_shorter_side_size",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff")


def resize_shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_w, new_h) of torchvision's Resize(size): shorter side -> size, longer side
    int(size * long / short), in this order of float operations."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's CenterCrop(size): offsets int(round(d / 2)),
    Python's round-half-to-even included."""
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return left, top, left + size, top + size


def _to_rgb(img):
    """ImageBind's `.convert("RGB")`, except for high-bit-depth greyscale.

    PIL's convert clips 16-bit ('I;16*', 'I') and float ('F') pixels to 0..255, which turns a
    16-bit image white; ImageBind would pass that on. Here 16-bit values are scaled by 255/65535
    ('I' is read as 16-bit too: that is how PIL represents 16-bit PNG/TIFF greyscale), and
    'F' images are read as [0, 1] when they fit there, else clipped to 0..255.
    Everything else (L, 1, P, LA, PA, RGBA, CMYK, YCbCr, ...) goes through `.convert("RGB")`
    exactly as in ImageBind: alpha is dropped, not composited.
    """
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        arr8 = np.rint(np.clip(arr, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            arr = arr * 255.0
        arr8 = np.rint(np.clip(np.nan_to_num(arr), 0, 255)).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    return img.convert("RGB")


def image_to_tensor(img, size: int) -> torch.Tensor:
    """ImageBind's vision transform on an open PIL image -> float32 [3, size, size]."""
    from PIL import Image

    img = _to_rgb(img)
    new_w, new_h = resize_shorter_side_size(img.width, img.height, size)
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    box = center_crop_box(new_w, new_h, size)
    if box != (0, 0, new_w, new_h):
        img = img.crop(box)
    # ToTensor: uint8 HWC -> float CHW / 255; Normalize: in-place sub then div, float32.
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    mean = torch.as_tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return x.sub_(mean).div_(std)


def load_image(path: str | os.PathLike, cfg: EncoderConfig) -> torch.Tensor:
    """Image file -> float32 [3, cfg.image_size, cfg.image_size]."""
    from PIL import Image

    p = check_file(path)
    try:
        with Image.open(p) as img:
            img.load()  # PIL opens lazily: force the decode here, where errors are caught
            with warnings.catch_warnings():
                # "Palette images with Transparency expressed in bytes should be converted to
                # RGBA": ImageBind converts straight to RGB too.
                warnings.filterwarnings("ignore", message="Palette images with Transparency")
                return image_to_tensor(img, cfg.image_size)
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise decode_error(p, "read the image", exc) from exc

