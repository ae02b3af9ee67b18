"""Small PNG thumbnails for report galleries: inputs, targets and method outputs."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

THUMB = 192  # long side, pixels
#: The subfolder of ``bench predict --out`` that holds the PNG previews (``--out`` itself holds only
#: ``<stem>.npy``, so that ``bench score --maps`` takes it as it is).
PREDICT_FOLDER = "previews"
#: PNG text chunk in which a colour-mapped preview records its colour scale, JSON ``{"cmap", "vmin",
#: "vmax", "unit"}`` plus ``"value"`` when the map is constant (a patch's ground truth); the report
#: draws its colour bar from it (:mod:`bench.report.scales`).
SCALE_KEY = "defocusbench:scale"


def _png(rgb_u8: np.ndarray, record: dict | None = None) -> bytes:
    im = Image.fromarray(rgb_u8)
    scale = THUMB / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    info = None
    if record is not None:
        info = PngInfo()
        info.add_text(SCALE_KEY, json.dumps(record, sort_keys=True))
    im.save(buf, format="PNG", optimize=True, pnginfo=info)
    return buf.getvalue()


def image_png(image: np.ndarray) -> bytes:
    """RGB float [0, 1] -> PNG bytes."""
    return _png((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def map_png(values: np.ndarray, *, vmin: float | None = None, vmax: float | None = None, unit: str = "") -> bytes:
    """A scalar map -> colour-mapped PNG (viridis; ``vmin``/``vmax`` default to the map's range), which
    records that scale and ``unit`` (:data:`SCALE_KEY`)."""
    v = np.asarray(values, dtype=np.float64)
    if v.dtype == bool or values.dtype == bool:
        v = v.astype(np.float64)
    lo = np.nanmin(v) if vmin is None else vmin
    hi = np.nanmax(v) if vmax is None else vmax
    u8 = np.zeros(v.shape, np.uint8) if hi <= lo else (np.clip((v - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    scale = {"cmap": "viridis", "vmin": float(lo), "vmax": float(hi), "unit": unit}
    if np.nanmin(v) == np.nanmax(v):
        scale["value"] = float(np.nanmin(v))
    return _png(rgb, scale)


def target_png(targets: dict) -> bytes | None:
    """The ground truth a reader wants to see: blur mask (white = blurred), radius map (0..6 px), a patch's
    sigma (constant: its value is recorded), sharp image."""
    if "blur_mask" in targets:
        m = targets["blur_mask"].astype(np.uint8) * 255
        return _png(np.repeat(m[..., None], 3, axis=2), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "unit": "blur mask"})
    if "radius_map" in targets:
        return map_png(targets["radius_map"], vmin=0.0, vmax=6.0, unit="px (disk radius)")
    if "sigma_map" in targets:
        sigma = np.asarray(targets["sigma_map"], dtype=np.float64)
        return map_png(sigma, vmin=0.0, vmax=max(1.0, float(np.nanmax(sigma))), unit="px (sigma)")
    if "sharp" in targets:
        return image_png(targets["sharp"])
    return None


def output_png(pred: np.ndarray) -> bytes:
    return image_png(pred) if pred.ndim == 3 else map_png(pred)
