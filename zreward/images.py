"""Image inputs: every accepted form becomes a float tensor (3, H, W) in [0, 1], validated.

This is the first half of the one preprocessing definition shared by eager scoring, engines and
the differentiable path (the second half, resize + normalize + patchify, is in
zreward/models/processing.py and works on these tensors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zreward.errors import InputError

MIN_SIDE = 8  # smaller images carry no usable signal at any backbone's patch size
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding


def _name(x: Any, i: int | None) -> str:
    if isinstance(x, (str, os.PathLike)):
        return str(x)
    return f"image {i}" if i is not None else "image"


def _from_pil(img, where: str) -> torch.Tensor:
    from PIL import Image

    if img.width * img.height > MAX_PIXELS:
        raise InputError(f"{where}: {img.width}x{img.height} is too large (over {MAX_PIXELS} pixels)")
    if img.mode.startswith("I;16"):
        # 16-bit grey (PNG, TIFF): PIL's convert("RGB") would clip at 255; keep the full range instead.
        grey = torch.from_numpy(np.asarray(img).astype(np.float32) / 65535.0)
        return grey.unsqueeze(0).expand(3, -1, -1).contiguous()
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Composite transparency on white, as viewers show it, instead of dropping alpha.
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, rgba).convert("RGB")
        else:
            img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(x: Any, i: int | None = None) -> torch.Tensor:
    """PIL image | path | uint8 array (H, W, 3) or (H, W) | float tensor (3, H, W) in [0, 1] -> (3, H, W)."""
    where = _name(x, i)
    if isinstance(x, (str, os.PathLike)):
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = Path(x)
        if not path.is_file():
            raise InputError(f"{where}: image file not found")
        try:
            with Image.open(path) as img:
                img.load()
                # A camera's orientation tag: the image as viewers show it (generated images carry none).
                t = _from_pil(ImageOps.exif_transpose(img), where)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{where}: not a readable image ({e})") from None
    elif hasattr(x, "convert") and hasattr(x, "mode"):
        t = _from_pil(x, where)
    elif isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise InputError(f"{where}: numpy images must be uint8 (H, W, 3), got {x.dtype}")
        if x.ndim == 2:
            x = np.repeat(x[:, :, None], 3, axis=2)
        if x.ndim != 3 or x.shape[2] not in (3, 4):
            raise InputError(f"{where}: numpy images must be (H, W, 3), got shape {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x[:, :, :3])).permute(2, 0, 1).float().div_(255.0)
    elif isinstance(x, torch.Tensor):
        t = check_image_tensor(x, where)
    else:
        raise InputError(f"{where}: unsupported image type {type(x).__name__} (use PIL, a path, uint8 array or tensor)")
    if min(t.shape[-2:]) < MIN_SIDE:
        raise InputError(f"{where}: {t.shape[-1]}x{t.shape[-2]} is too small (each side must be >= {MIN_SIDE} px)")
    return t


def check_image_tensor(x: torch.Tensor, where: str = "image") -> torch.Tensor:
    """A float tensor (3, H, W) in [0, 1]: NaN, inf or out-of-range values are an error, not clamped."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise InputError(f"{where}: tensor images must be (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{where}: tensor images must be float in [0, 1], got {x.dtype}")
    with torch.no_grad():
        if not torch.isfinite(x).all():
            raise InputError(f"{where}: tensor contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise InputError(f"{where}: tensor values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return x


def load_images(images) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [load_image(images[i], i) for i in range(images.shape[0])]
    if not isinstance(images, (list, tuple)):
        images = [images]
    return [load_image(x, i) for i, x in enumerate(images)]
