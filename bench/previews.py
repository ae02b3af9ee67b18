"""Small PNG thumbnails for report galleries: inputs, targets and method outputs."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

THUMB = 192  # long side, pixels


def _png(rgb_u8: np.ndarray) -> bytes:
    im = Image.fromarray(rgb_u8)
    scale = THUMB / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def image_png(image: np.ndarray) -> bytes:
    """RGB float [0, 1] -> PNG bytes."""
    return _png((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def map_png(values: np.ndarray, *, vmin: float | None = None, vmax: float | None = None) -> bytes:
    """A scalar map -> colour-mapped PNG (viridis; ``vmin``/``vmax`` default to the map's range)."""
    v = np.asarray(values, dtype=np.float64)
    if v.dtype == bool or values.dtype == bool:
        v = v.astype(np.float64)
    lo = np.nanmin(v) if vmin is None else vmin
    hi = np.nanmax(v) if vmax is None else vmax
    u8 = np.zeros(v.shape, np.uint8) if hi <= lo else (np.clip((v - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    return _png(rgb)


def target_png(targets: dict) -> bytes | None:
    """The ground truth a reader wants to see: blur mask (white = blurred), radius map (0..6 px), sharp image."""
    if "blur_mask" in targets:
        m = targets["blur_mask"].astype(np.uint8) * 255
        return _png(np.repeat(m[..., None], 3, axis=2))
    if "radius_map" in targets:
        return map_png(targets["radius_map"], vmin=0.0, vmax=6.0)
    if "sharp" in targets:
        return image_png(targets["sharp"])
    return None


def output_png(pred: np.ndarray) -> bytes:
    return image_png(pred) if pred.ndim == 3 else map_png(pred)
