"""Fidelity failures: degradations of the rendered pixels (smear, blur, color cast, noise, JPEG).

Strengths are given for 112 px images and scale with the image size; severities in [0.5, 1].
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from zreward.data.shapeworld.corrupt import Failure


def degrade(img: Image.Image, failures: list[Failure], rng: np.random.Generator) -> Image.Image:
    """Applies the fidelity failures to a rendered image, in a fixed order."""
    by_kind = {f.kind: f for f in failures if f.dimension == "fidelity"}
    scale = img.width / 112.0
    if "smear" in by_kind:  # a wavy displacement, as a generator's warped strokes
        s = by_kind["smear"].severity
        amp, period = (0.8 + 1.7 * s) * scale, rng.uniform(18, 30) * scale
        arr = np.asarray(img)
        h, w = arr.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        sx = np.clip(np.rint(xx + amp * np.sin(2 * np.pi * yy / period)), 0, w - 1).astype(np.intp)
        sy = np.clip(np.rint(yy + amp * np.sin(2 * np.pi * xx / period + 1.0)), 0, h - 1).astype(np.intp)
        img = Image.fromarray(arr[sy, sx])
    if "blur" in by_kind:
        img = img.filter(ImageFilter.GaussianBlur((0.9 + 1.3 * by_kind["blur"].severity) * scale))
    if "color_cast" in by_kind:
        s = by_kind["color_cast"].severity
        tint = np.array(((60, 30, -30), (-30, 10, 60), (-10, 50, -40), (50, -30, 50))[int(rng.integers(4))])
        arr = np.asarray(img).astype(np.float32) + tint * (0.5 + 0.6 * s)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if "noise" in by_kind:
        sigma = 12 + 22 * by_kind["noise"].severity
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, sigma, (img.height, img.width, 3)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if "jpeg" in by_kind:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(round(16 - 12 * by_kind["jpeg"].severity)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img
