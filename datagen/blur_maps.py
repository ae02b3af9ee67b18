"""Spatially varying blur maps of SVBR-Net's training data (Karaali & Jung, ICIP 2022; ``METHODS.md`` 7.2).

A map gives every pixel a disk radius in pixels, ``0`` meaning sharp (no blur); the non-zero values
are the ``levels`` (default :data:`SVBR_LEVELS`, the 22 radii 0.75, 1.0, ..., 6.0: the radius 0.5
of the papers is the identity under ``fspecial('disk')`` and is represented by 0).  ``k[i]`` below
is ``levels[i]``; ``U{a..b}`` a uniform integer draw (inclusive) from the caller's generator.
Columns ``x`` run over the width ``W``, rows over the height ``H``.

The 13 families (:data:`FAMILIES`):

1. horizontal ramp up: start column ``a ~ U{0..99}``, end column ``b = W - 100 + U{0..99}``, start
   level ``k[U{0..5}]`` (0.75..2.0), end level ``k[U{0..5} + 16]`` (4.75..6.0); linear from ``a`` to
   ``b``, 0 left of ``a``, the end level right of ``b``;
2. vertical ramp up: the same along the rows (``H``);
3. / 4. horizontal / vertical ramp down: family 1 / 2 flipped;
5. horizontal steps up: start ``c ~ U{0..140}``, ``s ~ U{0..14}``; four 50-px bands ``k[s], k[s+2],
   k[s+4], k[s+6]`` from ``c``, ``k[s+6]`` beyond ``c + 199``, 0 left of ``c``;
6. horizontal steps down: ``k[s+6]`` left of ``c``, bands ``k[s+6], k[s+4], k[s+2], k[s]``, ``k[s]``
   beyond;
7. / 8. vertical steps up / down (5 / 6 along the rows);
9. uniform ``k[U{0..21}]``;
10.-13. ``sqrt(F1 F2)``, ``sqrt(F3 F4)``, ``sqrt(F1 F4)``, ``sqrt(F2 F3)`` of fresh draws of those
    families (a zero in either factor stays 0).

The pixel constants (100, 140, 50, 199) are those of the paper's 340 x 360 (W x H) images; for
another size they scale with the side (``round(v * W / 340)`` along the width, ``H / 360`` along the
height), so a small demo image gets the same shapes of map; at 340 x 360 they are the paper's.

Every map is then quantised (:func:`quantize_to_levels`): values ``<= 0.5`` become 0 (sharp), the
others the nearest level (ties to the smaller).  The draws follow the order of the list above
within a family; a family needing ``levels`` beyond the 22 defaults indexes the given tuple, so
other level sets must have at least 22 entries.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FAMILIES", "SVBR_LEVELS", "family_map", "quantize_to_levels"]

#: The 22 non-zero disk radii (px) of SVBR-Net's maps: 0.75, 1.0, ..., 6.0.
SVBR_LEVELS = tuple(0.75 + 0.25 * i for i in range(22))
#: Family number -> short name.
FAMILIES = {
    1: "ramp-right", 2: "ramp-down", 3: "ramp-left", 4: "ramp-up",
    5: "steps-right", 6: "steps-right-down", 7: "steps-down", 8: "steps-down-down",
    9: "uniform", 10: "sqrt(1*2)", 11: "sqrt(3*4)", 12: "sqrt(1*4)", 13: "sqrt(2*3)",
}
_PRODUCTS = {10: (1, 2), 11: (3, 4), 12: (1, 4), 13: (2, 3)}


#: The sides (px) the paper's constants are given for: width 340, height 360.
REF_WIDTH, REF_HEIGHT = 340, 360


def _px(value: int, n: int, ref: int) -> int:
    """A paper constant ``value`` (px at side ``ref``) at side ``n``."""
    return value if n == ref else round(value * n / ref)


def _ramp(n: int, rng: np.random.Generator, k, ref: int) -> np.ndarray:
    """1-D increasing ramp of length ``n`` (families 1 / 2)."""
    a = _px(int(rng.integers(0, 100)), n, ref)
    b = n - _px(100, n, ref) + _px(int(rng.integers(0, 100)), n, ref)
    lo, hi = k[int(rng.integers(0, 6))], k[int(rng.integers(0, 6)) + 16]
    x = np.arange(n, dtype=np.float64)
    out = lo + (hi - lo) * (x - a) / max(b - a, 1)
    out[x < a] = 0.0
    out[x > b] = hi
    return out


def _steps(n: int, rng: np.random.Generator, k, ref: int, *, down: bool) -> np.ndarray:
    """1-D four-band staircase of length ``n`` (families 5 / 6)."""
    c = _px(int(rng.integers(0, 141)), n, ref)
    s = int(rng.integers(0, 15))
    band = _px(50, n, ref)
    bands = [k[s], k[s + 2], k[s + 4], k[s + 6]]
    if down:
        bands = bands[::-1]
    x = np.arange(n)
    out = np.full(n, bands[-1], dtype=np.float64)
    for i, level in enumerate(bands):
        out[(x >= c + band * i) & (x < c + band * (i + 1))] = level
    out[x < c] = 0.0 if not down else bands[0]
    return out


def family_map(family: int, rng: np.random.Generator, *, height: int, width: int,
               levels=SVBR_LEVELS) -> np.ndarray:
    """One *unquantised* map of ``family`` (1..13, see the module docstring): float64 ``(height, width)``,
    disk radius px, 0 = sharp.  Draws from ``rng`` in a fixed order."""
    k = tuple(float(v) for v in levels)
    if family in (1, 3):
        row = _ramp(width, rng, k, REF_WIDTH)
        return np.broadcast_to(row if family == 1 else row[::-1], (height, width)).copy()
    if family in (2, 4):
        col = _ramp(height, rng, k, REF_HEIGHT)
        return np.broadcast_to((col if family == 2 else col[::-1])[:, None], (height, width)).copy()
    if family in (5, 6):
        return np.broadcast_to(_steps(width, rng, k, REF_WIDTH, down=family == 6), (height, width)).copy()
    if family in (7, 8):
        return np.broadcast_to(_steps(height, rng, k, REF_HEIGHT, down=family == 8)[:, None], (height, width)).copy()
    if family == 9:
        return np.full((height, width), k[int(rng.integers(0, 22))])
    if family in _PRODUCTS:
        f, g = _PRODUCTS[family]
        first = family_map(f, rng, height=height, width=width, levels=k)
        return np.sqrt(first * family_map(g, rng, height=height, width=width, levels=k))
    raise ValueError(f"blur-map family must be 1..13, got {family!r}")


def quantize_to_levels(radius: np.ndarray, levels=SVBR_LEVELS) -> np.ndarray:
    """Level index map (uint8): 0 where ``radius <= 0.5`` (sharp), else ``1 + i`` for the nearest
    ``levels[i]`` (ties to the smaller).  ``np.asarray(levels)[idx - 1]`` (0 for idx 0) is the radius."""
    r = np.asarray(radius, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    mid = (lv[1:] + lv[:-1]) / 2.0
    idx = np.searchsorted(mid, r, side="left") + 1        # r == midpoint -> the smaller level
    idx[~(r > 0.5)] = 0
    return idx.astype(np.uint8)
