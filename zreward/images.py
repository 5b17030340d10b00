"""Image inputs: every accepted form becomes a float tensor (3, H, W) in [0, 1], validated.

This is the first half of the one preprocessing definition shared by eager scoring, engines and
the differentiable path (the second half, resize + normalize + patchify, is in
zreward/models/processing.py and works on these tensors).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zreward.errors import InputError

MIN_SIDE = 8  # smaller images carry no usable signal at any backbone's patch size
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding
WIDE_RANGE = 65535.0  # integer images wider than 8 bits (PIL modes I;16*, I) hold 16-bit values


def _name(x: Any, i: int | None) -> str:
    if isinstance(x, (str, os.PathLike)):
        return str(x)
    return f"image {i}" if i is not None else "image"


def _check_pixels(width: int, height: int, where: str) -> None:
    if width * height > MAX_PIXELS:
        raise InputError(f"{where}: {width}x{height} is too large (over {MAX_PIXELS} pixels)")


def _grey(values: np.ndarray, scale: float, where: str, what: str) -> torch.Tensor:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not np.isfinite(values).all() or lo < 0 or hi > scale * (1 + 1e-4):
        raise InputError(f"{where}: {what} values must lie in [0, {scale:g}], got range [{lo:.3g}, {hi:.3g}]")
    grey = torch.from_numpy(values.astype(np.float32) / scale).clamp_(0.0, 1.0)
    return grey.unsqueeze(0).expand(3, -1, -1).contiguous()


def _from_pil(img, where: str) -> torch.Tensor:
    from PIL import Image

    _check_pixels(img.width, img.height, where)
    # PIL's convert("RGB") clips these at 255 (16-bit grey turns white, float [0, 1] black): scale them.
    # I;16 declares 16 bits. Modes I (32-bit int) and F (float) are containers: PIL's own convert()
    # fills them with 0..255, 16-bit files with 0..65535, float TIFFs with [0, 1]; the range tells.
    if img.mode.startswith("I;16"):
        return _grey(np.asarray(img), WIDE_RANGE, where, f"{img.mode} (16-bit) image")
    if img.mode in ("I", "F"):
        values = np.asarray(img)
        top = float(values.max()) if values.size else 0.0
        scales = (255.0, WIDE_RANGE) if img.mode == "I" else (1.0, 255.0)
        scale = scales[0] if top <= scales[0] else scales[1]
        return _grey(values, scale, where, f"mode {img.mode} image")
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Composite transparency on white, as viewers show it, instead of dropping alpha.
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, rgba).convert("RGB")
        else:
            try:
                img = img.convert("RGB")
            except ValueError as e:  # modes PIL cannot convert, e.g. premultiplied "La"
                raise InputError(f"{where}: cannot read PIL mode {img.mode!r} as RGB ({e})") from None
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(x: Any, i: int | None = None) -> torch.Tensor:
    """PIL image | path | uint8 array (H, W, 3) or (H, W) | float tensor (3, H, W) in [0, 1] -> (3, H, W)."""
    where = _name(x, i)
    if isinstance(x, (str, os.PathLike)):
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = Path(x)
        if path.is_dir():
            raise InputError(f"{where}: is a directory, not an image file")
        if not path.is_file():
            raise InputError(f"{where}: image file not found")
        try:
            # PIL's own bomb check warns above 89M pixels and fails above 179M; ours (MAX_PIXELS)
            # reads the header only, before decoding, and gives one error either way.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    _check_pixels(img.width, img.height, where)
                    img.load()
                    # A camera's orientation tag: the image as viewers show it (generated images carry none).
                    t = _from_pil(ImageOps.exif_transpose(img), where)
        except InputError:
            raise
        except Image.DecompressionBombError:
            raise InputError(f"{where}: too large (over {MAX_PIXELS} pixels)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{where}: not a readable image ({e})") from None
    elif hasattr(x, "convert") and hasattr(x, "mode"):
        try:
            t = _from_pil(x, where)
        except InputError:
            raise
        except (OSError, ValueError) as e:  # e.g. an image that was closed
            raise InputError(f"{where}: not a readable PIL image ({e})") from None
    elif isinstance(x, np.ndarray):
        t = _from_array(x, where)
    elif isinstance(x, torch.Tensor):
        t = check_image_tensor(x, where)
    else:
        raise InputError(f"{where}: unsupported image type {type(x).__name__} (use PIL, a path, uint8 array or tensor)")
    _check_size(t, where)
    return t


def _from_array(x: np.ndarray, where: str) -> torch.Tensor:
    """uint8 (H, W), (H, W, 3) or (H, W, 4): alpha composited on white, as for files."""
    if x.dtype != np.uint8:
        raise InputError(f"{where}: numpy images must be uint8 (H, W, 3), got {x.dtype}")
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] not in (3, 4):
        raise InputError(f"{where}: numpy images must be (H, W, 3), got shape {x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float().div_(255.0)
    if t.shape[0] == 4:
        alpha = t[3:]
        t = t[:3] * alpha + (1.0 - alpha)
    return t


def _check_size(t: torch.Tensor, where: str) -> None:
    if min(t.shape[-2:]) < MIN_SIDE:
        raise InputError(f"{where}: {t.shape[-1]}x{t.shape[-2]} is too small (each side must be >= {MIN_SIDE} px)")


def check_image_tensor(x: torch.Tensor, where: str = "image") -> torch.Tensor:
    """A float tensor (3, H, W) in [0, 1], each side >= MIN_SIDE: NaN, inf or out-of-range values are
    an error, not clamped."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise InputError(f"{where}: tensor images must be (3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{where}: tensor images must be float in [0, 1], got {x.dtype}")
    _check_size(x, where)  # before the value checks: an empty tensor has no min or max
    with torch.no_grad():
        if not torch.isfinite(x).all():
            raise InputError(f"{where}: tensor contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise InputError(f"{where}: tensor values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return x


def load_images(images, start: int = 0) -> list[torch.Tensor]:
    """Each image as (3, H, W); `start` is the first one's index in the caller's list (for errors)."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [load_image(images[i], start + i) for i in range(images.shape[0])]
    if not isinstance(images, (list, tuple)):
        images = [images]
    return [load_image(x, start + i) for i, x in enumerate(images)]
