"""Colour scales of the gallery's maps: what a colour means, in which unit.

A preview PNG says how it was colour-mapped in a PNG text chunk :data:`SCALE_KEY` (JSON
``{"cmap", "vmin", "vmax", "unit"}``, plus ``"value"`` when the map is constant, e.g. a patch
dataset's ground truth sigma).  Runs whose previews lack the chunk get a scale derived in one
place, :func:`preview_scale`, from what the run does store:

* a method's map: the method's ``units`` from ``run.json``; the thumbnails span each map's own
  minimum..maximum (:func:`bench.previews.map_png`), so the bar is relative (no numbers);
* a target: a black-and-white thumbnail is a blur mask (white = blurred); a viridis one is a
  radius map on the fixed 0..6 px scale :func:`bench.previews.target_png` has always used;
  anything else is a photo (no bar).

Colours are shown as a CSS gradient sampled from the matplotlib colormap (no image, no script).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..previews import SCALE_KEY
from .fmt import fmt, isnum

#: Colour scale of radius-map targets in runs that did not record it (``bench.previews.target_png``).
LEGACY_RADIUS = (0.0, 6.0)
#: Readable names of the blur-map units methods declare (``methods.base.UNITS``).
UNIT_LABELS = {"sigma_px": "px (Gaussian sigma)", "radius_px": "px (disk radius)", "relative": "relative (0..1)",
               "score": "score (no unit)"}
_STOPS = 11


@dataclass(frozen=True)
class Scale:
    """How a map's colours read: colormap, value range (``None``: each map's own range), unit."""

    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None
    unit: str = ""
    value: float | None = None              # a constant map: its value (shown as text)
    ends: tuple[str, str] | None = None     # words for the two ends (a binary mask)
    polarity: str = ""                      # "high = blurred" | "high = sharp" (a method's map)
    note: str = ""                          # what else the reader needs (the range was not recorded)

    @property
    def gradient(self) -> str:
        """A CSS ``linear-gradient`` of the colormap (left = vmin)."""
        return gradient(self.cmap)

    @property
    def ticks(self) -> list[str]:
        """Tick labels under the bar: ends in words, three numbers, or min/max for a relative scale."""
        if self.ends:
            return list(self.ends)
        if isnum(self.vmin) and isnum(self.vmax):
            span = abs(self.vmax - self.vmin)
            # a float's round-off next to a real range (5e-29 beside 0.75) is a 0
            return [fmt(0 if abs(v) < 1e-9 * span else v, 3)
                    for v in (self.vmin, (self.vmin + self.vmax) / 2, self.vmax)]
        return ["min", "max"]

    @property
    def caption(self) -> str:
        """The line under the bar: the unit, and the polarity when the scale has one."""
        return " · ".join(b for b in (self.unit, self.polarity) if b)

    @property
    def title(self) -> str:
        """The bar's tooltip: the colormap and how to read it."""
        rng = (f"{fmt(self.vmin, 3)} to {fmt(self.vmax, 3)}" if isnum(self.vmin) and isnum(self.vmax)
               else "this map's own minimum to maximum")
        bits = [f"{self.cmap}: {rng}" + (f" {self.unit}" if self.unit else ""), self.polarity, self.note]
        return "; ".join(b for b in bits if b)

    def color(self, value: float) -> str:
        """The colour of ``value`` on this scale (a constant map's swatch)."""
        lo, hi = (self.vmin or 0.0), (self.vmax if isnum(self.vmax) else 1.0)
        t = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
        return _hex(_cmap(self.cmap)(t))


def _cmap(name: str):
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        return matplotlib.colormaps["viridis"]


def _hex(rgba) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


@lru_cache(maxsize=16)
def gradient(cmap: str) -> str:
    cm = _cmap(cmap)
    stops = ", ".join(f"{_hex(cm(i / (_STOPS - 1)))} {100 * i / (_STOPS - 1):.0f}%" for i in range(_STOPS))
    return f"linear-gradient(to right, {stops})"


def png_scale(data: bytes) -> dict | None:
    """The scale a preview PNG records (:data:`SCALE_KEY`), or ``None``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            raw = (getattr(im, "text", None) or {}).get(SCALE_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    try:
        scale = json.loads(raw) if raw else None
    except ValueError:
        return None
    return scale if isinstance(scale, dict) else None


@lru_cache(maxsize=1)
def _viridis_lut() -> np.ndarray:
    return np.asarray([_cmap("viridis")(i / 255)[:3] for i in range(256)]) * 255


def _looks(data: bytes) -> str:
    """``"mask"`` (black and white), ``"viridis"`` (colour-mapped) or ``"image"`` for a thumbnail."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    except (OSError, ValueError, SyntaxError):
        return "image"
    if not len(rgb):
        return "image"
    if np.all(np.ptp(rgb, axis=1) <= 2) and np.mean(np.min(np.abs(rgb[:, :1] - [0, 255]), axis=1) <= 8) > 0.98:
        return "mask"
    step = max(1, len(rgb) // 4096)
    sample = rgb[::step]
    dist = np.sqrt(((sample[:, None, :] - _viridis_lut()[None]) ** 2).sum(-1)).min(axis=1)
    return "viridis" if np.mean(dist <= 6) > 0.98 else "image"


def _num(value: Any) -> float | None:
    return float(value) if isnum(value) else None


def preview_scale(kind: str, data: bytes, *, method_meta: dict | None = None) -> Scale | None:
    """The colour scale of one preview thumbnail, or ``None`` (a photo, an input, a restored image).

    ``kind``: ``"input"``, ``"target"`` or ``"method"`` (then ``method_meta`` is the method's
    ``run.json`` record).  The PNG's own record (:func:`png_scale`) wins; otherwise the scale is
    derived as the module docstring says.
    """
    if kind == "input":
        return None
    meta = method_meta or {}
    if kind == "method" and meta.get("provides", "blur_map") != "blur_map":
        return None
    rec = png_scale(data) or {}
    unit = str(rec.get("unit") or "")
    polarity = ""
    if kind == "method":
        units = str(meta.get("units") or "")
        unit = unit or UNIT_LABELS.get(units, units)
        polarity = {"blurred": "high = blurred", "sharp": "high = sharp"}.get(str(meta.get("higher")), "")
    if rec:
        if rec.get("cmap") == "gray" and _num(rec.get("vmin")) == 0 and _num(rec.get("vmax")) == 1:
            return Scale("gray", 0.0, 1.0, unit or "blur mask", ends=("sharp", "blurred"))
        value = _num(rec.get("value"))
        return Scale(str(rec.get("cmap") or "viridis"), _num(rec.get("vmin")), _num(rec.get("vmax")), unit,
                     value=value, polarity=polarity)
    if kind == "method":
        return Scale("viridis", None, None, unit, polarity=polarity, note="range not recorded by this run")
    looks = _looks(data)
    if looks == "mask":
        return Scale("gray", 0.0, 1.0, "blur mask", ends=("sharp", "blurred"))
    if looks == "viridis":
        return Scale("viridis", *LEGACY_RADIUS, UNIT_LABELS["radius_px"])
    return None


def shared(scales: list[Scale | None]) -> Scale | None:
    """The one scale every map of a column has (to draw its bar once, in the header), else ``None``.
    Constant maps (patch ground truth) share a scale when their colormap and unit agree: the bar
    then spans 0..the largest value."""
    got = [s for s in scales if s is not None]
    if not got or len(got) != len(scales):
        return None
    if all(s.value is not None for s in got) and len({(s.cmap, s.unit) for s in got}) == 1:
        top = max(s.value for s in got)
        return Scale(got[0].cmap, 0.0, top if top > 0 else 1.0, got[0].unit)
    first = got[0]
    if not (isnum(first.vmin) and isnum(first.vmax)):
        return None
    return first if all(s == first for s in got) else None
