"""``depth_edges``: the E-NET corpus of Karaali, Harte & Jung (TIP 31, 2022, Sec. IV-A; ``METHODS.md``
6.3 and section 11, item 21): depth edges (label 1) vs pattern edges (label 0), balanced.

One task = one salient object (image + binary mask, the primary ``paired`` source) and one
background (a sharp photo of role ``background``, drawn by the engine from the same split).

Depth edges (label 1)
---------------------
The background is scaled up if it is smaller than the object image (bilinear) and cropped to its
size at a seeded offset.  For each ordered pair of blur radii ``(r_fg, r_bg)`` with ``r_fg < r_bg``
from ``levels`` (default {0, 1, 3, 5}: the 6 pairs (0,1), (0,3), (0,5), (1,3), (1,5), (3,5);
radius 0 = sharp)::

    alpha = blur(M, r_fg)            I = alpha * blur(F * M, r_fg) + (1 - alpha) * blur(B, r_bg)

(the decided reading of the paper's alpha blending; ``blur`` = pillbox ``fspecial('disk')``,
reflect border; ``M`` the mask as 0/1, :func:`object_mask`).  The projected object boundary is the contour of
``alpha >= 0.5``; depth-edge candidates are the Canny edges of ``I``
(:func:`datagen.edges.canny_edges`) within ``contour_distance`` px of it.  With equal radii there
is no blur discontinuity, hence no depth edge: :func:`depth_edge_candidates` returns none.
Up to ``patches_per_pair`` candidates per pair are drawn.

Pattern edges (label 0)
-----------------------
The same sharp background, blurred in three ways over the 23 disk levels 0.5..6 px
(:func:`datagen.psf.varying_disk_blur`, gather model): ``uniform`` (one random level), ``ramp`` (the
level grows linearly across the image along a random direction between two random levels) and
``step`` (bands of random width 16..64 px whose level changes by one step of 0.25 px, up or down,
from band to band).  All Canny edges of each are candidates; as many pattern patches are drawn,
spread over the three modes, as there are depth patches, so the classes are balanced in every
task (if the pattern candidates run short, depth patches are dropped to match).

Every patch is a ``patch_size`` RGB square centred on its edge pixel, rotated about it by an angle
drawn from ``rotations`` (default 0 plus the paper's -90, -30, 60, 135, 180 degrees): multiples of
90 exactly, others by bilinear resampling of a larger reflect-padded window.  The real, hand-labelled
Flickr depth edges of the paper are not available and not generated.
"""
from __future__ import annotations

import itertools
import math
from typing import ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field as PydField
from pydantic import field_validator
from scipy import ndimage as ndi

from .. import psf
from ..edges import EDGE_SIGMA, canny_edges
from ..patches import centred_patches, reflect_pad
from .base import (
    Field,
    Generator,
    SourceItem,
    StrictModel,
    increasing_radii,
    odd_patch_size,
)
from .disk23_edges import DISK23_RADII, centre_marked

#: Pattern-edge blur modes, in the order of the ``mode`` field (3 = composite, a depth-edge sample).
PATTERN_MODES = ("uniform", "ramp", "step")
COMPOSITE = 3


class DepthEdgesParams(StrictModel):
    kind: Literal["depth_edges"] = "depth_edges"
    levels: tuple[float, ...] = PydField((0.0, 1.0, 3.0, 5.0), min_length=2,
                                         description="disk radii (px, 0 = sharp) whose ordered pairs blur object / background")
    patches_per_pair: int = PydField(8, ge=1, le=100_000, description="depth-edge patches per level pair per object (at most)")
    contour_distance: float = PydField(2.0, ge=0, le=20, description="depth edges: Canny edges within this many px of the contour")
    patch_size: int = PydField(41, ge=3, le=255, description="side of the stored patch (odd), px")
    rotations: tuple[float, ...] = PydField((0.0, -90.0, -30.0, 60.0, 135.0, 180.0), min_length=1,
                                            description="rotation angles (degrees, counter-clockwise) drawn per patch")
    pattern_radii: tuple[float, ...] = PydField(DISK23_RADII, min_length=2, description="disk levels of the pattern-edge blurs, px")
    edge_channel: Literal["v", "gray", "hue"] = PydField("v", description="channel the Canny edges are found on")
    edge_sigma: float = PydField(EDGE_SIGMA, gt=0, le=10, description="Canny smoothing sigma (px)")

    _radii = field_validator("levels", "pattern_radii")(lambda v: increasing_radii(v, zero_ok=True))
    _odd = field_validator("patch_size")(lambda v: odd_patch_size(v))


def _blur(image: np.ndarray, radius: float) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    return img.copy() if radius <= 0.5 else psf.disk_blur(img, radius)


def object_mask(mask: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)`` object region of a stored mask: values above 127 (0/255 masks as SOD and HKU-IS
    ship them, robust to a lossy-compressed mask's ringing)."""
    return np.asarray(mask) > 127


def object_alpha(mask: np.ndarray, r_fg: float) -> np.ndarray:
    """float32 ``(H, W)`` alpha of a composite: the object mask blurred like the object (``r_fg``)."""
    return np.clip(_blur(object_mask(mask).astype(np.float32), r_fg), 0.0, 1.0)


def composite(fg: np.ndarray, mask: np.ndarray, bg: np.ndarray, *, r_fg: float, r_bg: float) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (H, W, 3), alpha float32 (H, W))`` of the object ``fg`` (its binary ``mask``)
    blurred by ``r_fg`` over the background ``bg`` blurred by ``r_bg`` (see the module docstring)."""
    m = object_mask(mask).astype(np.float32)
    alpha = object_alpha(mask, r_fg)
    front = _blur(np.asarray(fg, np.float32) * m[..., None], r_fg)
    back = _blur(bg, r_bg)
    out = alpha[..., None] * front + (1.0 - alpha[..., None]) * back
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha


def contour_distance(alpha: np.ndarray) -> np.ndarray:
    """Distance (px) of every pixel to the contour of ``alpha >= 0.5`` (the pixels of the object
    region with a 4-neighbour outside it); ``inf`` everywhere when there is no contour."""
    inside = alpha >= 0.5
    interior = ndi.binary_erosion(inside, structure=ndi.generate_binary_structure(2, 1), border_value=1)
    contour = inside & ~interior
    if not contour.any():
        return np.full(alpha.shape, np.inf)
    return ndi.distance_transform_edt(~contour)


def depth_edge_candidates(image: np.ndarray, alpha: np.ndarray, *, r_fg: float, r_bg: float, distance: float,
                          channel: str = "v", sigma: float = EDGE_SIGMA) -> np.ndarray:
    """Flat indices of the depth-edge pixels of a composite: Canny edges of ``image`` within
    ``distance`` px of the contour of ``alpha``; none when ``r_fg == r_bg`` (no blur discontinuity)."""
    if r_fg == r_bg:
        return np.zeros(0, np.intp)
    edges = canny_edges(image, channel=channel, sigma=sigma)
    return np.flatnonzero(edges & (contour_distance(alpha) <= distance))


def _fit_background(bg: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``bg`` scaled up (bilinear) if smaller than ``shape`` in either dimension, cropped to ``shape``
    at a seeded offset."""
    h, w = shape
    scale = max(h / bg.shape[0], w / bg.shape[1])
    if scale > 1:
        size = (max(w, math.ceil(bg.shape[1] * scale)), max(h, math.ceil(bg.shape[0] * scale)))
        bg = cv2.resize(bg, size, interpolation=cv2.INTER_LINEAR)
    y = int(rng.integers(0, bg.shape[0] - h + 1))
    x = int(rng.integers(0, bg.shape[1] - w + 1))
    return np.ascontiguousarray(bg[y:y + h, x:x + w])


def pattern_radius_map(mode: str, shape: tuple[int, int], radii, rng: np.random.Generator) -> np.ndarray:
    """The ``(H, W)`` disk-radius map of one pattern-edge blur (see the module docstring)."""
    h, w = shape
    radii = np.asarray(radii, np.float64)
    n = len(radii)
    if mode == "uniform":
        return np.full(shape, radii[int(rng.integers(0, n))])
    if mode == "ramp":
        a, b = sorted(rng.choice(n, size=2, replace=False).tolist())
        theta = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (np.cos(theta) * xx + np.sin(theta) * yy).astype(np.float64)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        return radii[np.rint(a + t * (b - a)).astype(int)]
    if mode == "step":
        vertical = bool(rng.integers(0, 2))
        length = h if vertical else w
        level = int(rng.integers(0, n))
        bands = np.empty(length, np.int64)
        at = 0
        while at < length:
            width = int(rng.integers(16, 65))
            bands[at:at + width] = level
            at += width
            step = int(rng.choice([-1, 1]))
            level = level + step if 0 <= level + step < n else level - step
        line = radii[bands]
        return np.repeat(line[:, None], w, axis=1) if vertical else np.repeat(line[None, :], h, axis=0)
    raise ValueError(f"unknown pattern mode {mode!r}")


def rotated_patches(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, angles: np.ndarray, *, size: int) -> np.ndarray:
    """``(N, size, size, 3)`` patches centred on ``(ys, xs)``, each rotated counter-clockwise by its
    ``angles`` (degrees) about its centre pixel: multiples of 90 exactly (``np.rot90``), others by
    bilinear resampling of a reflect-padded window large enough for any angle."""
    big = 2 * math.ceil(size * math.sqrt(2) / 2) + 3
    padded = reflect_pad(image, big // 2)
    windows = centred_patches(image, ys, xs, size=big, padded=padded)
    out = np.empty((len(ys), size, size, *image.shape[2:]), np.uint8)
    lo = (big - size) // 2
    centre = (big - 1) / 2.0
    for i, (win, angle) in enumerate(zip(windows, angles, strict=True)):
        quarter = float(angle) / 90.0
        if quarter == round(quarter):
            rot = np.rot90(win, k=round(quarter) % 4)
        else:
            m = cv2.getRotationMatrix2D((centre, centre), float(angle), 1.0)
            rot = cv2.warpAffine(win, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out[i] = rot[lo:lo + size, lo:lo + size]
    return out


class DepthEdges(Generator):
    KIND = "depth_edges"
    VERSION = "1.0.0"
    DESCRIPTION = ("Karaali, Harte & Jung 2022 E-NET: 41x41 RGB patches at depth edges of object-over-background "
                   "composites (label 1) and at pattern edges of uniformly / ramp / step blurred photos (label 0), balanced")
    Params = DepthEdgesParams
    COLOR = "rgb"
    NEEDS_MASK = True
    COMPANIONS: ClassVar[dict[str, int]] = {"background": 1}

    def fields(self) -> dict[str, Field]:
        p = self.params.patch_size
        return {
            "image": Field("uint8", (p, p, 3), "RGB patch centred on an edge pixel, rotated by `rotation`, 0..255",
                           units="0..255"),
            "label": Field("int16", (), "0 = pattern edge, 1 = depth edge"),
            "mode": Field("int8", (), "how the image was blurred: 0 uniform, 1 ramp, 2 step (pattern), 3 composite (depth)"),
            "radius": Field("float32", (2,), "depth: (object, background) disk radii; pattern: the radius at the pixel twice; px",
                            units="px"),
            "rotation": Field("float32", (), "rotation of the patch about its centre, degrees counter-clockwise",
                              units="degrees"),
            "position": Field("int32", (2,), "(row, col) of the centre edge pixel in the object image, px",
                              units="px"),
        }

    def classes(self) -> list[dict]:
        return [{"label": 0, "edge": "pattern"}, {"label": 1, "edge": "depth"}]

    def pairs(self) -> list[tuple[float, float]]:
        return [(a, b) for a, b in itertools.combinations(self.params.levels, 2)]

    def make(self, item: SourceItem, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        prm = self.params
        fg, mask = item.image, item.mask
        h, w = fg.shape[:2]
        bg = _fit_background(item.companions["background"][0], (h, w), rng)
        # depth edges: per level pair, the composite and up to patches_per_pair candidates
        depth = []   # (image, picked flat indices, r_fg, r_bg)
        for r_fg, r_bg in self.pairs():
            img, alpha = composite(fg, mask, bg, r_fg=r_fg, r_bg=r_bg)
            cand = depth_edge_candidates(img, alpha, r_fg=r_fg, r_bg=r_bg, distance=prm.contour_distance,
                                         channel=prm.edge_channel, sigma=prm.edge_sigma)
            k = min(prm.patches_per_pair, len(cand))
            depth.append((img, np.sort(rng.choice(cand, size=k, replace=False)), r_fg, r_bg))
        # pattern edges: the background under the three blur modes
        pattern = []   # (image, radius map, candidates)
        for mode in PATTERN_MODES:
            rmap = pattern_radius_map(mode, (h, w), prm.pattern_radii, rng)
            img = np.clip(np.rint(psf.varying_disk_blur(bg, rmap)), 0, 255).astype(np.uint8)
            pattern.append((img, rmap, np.flatnonzero(canny_edges(img, channel=prm.edge_channel, sigma=prm.edge_sigma))))
        n_depth = sum(len(p) for _, p, _, _ in depth)
        n = min(n_depth, sum(len(c) for _, _, c in pattern))
        if n < n_depth:   # too few pattern edges: keep n depth patches, spread over the pairs
            keep = np.sort(rng.choice(n_depth, size=n, replace=False))
            at, trimmed = 0, []
            for img, p, a, b in depth:
                mine = keep[(keep >= at) & (keep < at + len(p))] - at
                trimmed.append((img, p[mine], a, b))
                at += len(p)
            depth = trimmed
        quota = _spread(n, [len(c) for _, _, c in pattern])
        parts: dict[str, list] = {k: [] for k in ("image", "label", "mode", "radius", "position")}

        def add(img, flat, label, mode, radius):
            ys, xs = flat // w, flat % w
            parts["image"].append(img), parts["label"].append(np.full(len(flat), label, np.int16))
            parts["mode"].append(np.full(len(flat), mode, np.int8)), parts["radius"].append(radius)
            parts["position"].append(np.stack([ys, xs], axis=1))

        for img, flat, r_fg, r_bg in depth:
            add(img, flat, 1, COMPOSITE, np.tile(np.float32([r_fg, r_bg]), (len(flat), 1)))
        for m, ((img, rmap, cand), q) in enumerate(zip(pattern, quota, strict=True)):
            flat = np.sort(rng.choice(cand, size=q, replace=False))
            r = rmap.ravel()[flat].astype(np.float32)
            add(img, flat, 0, m, np.stack([r, r], axis=1))
        total = sum(len(lab) for lab in parts["label"])
        angles = np.asarray(prm.rotations, np.float32)[rng.integers(0, len(prm.rotations), size=total)]
        images, at = [], 0
        for img, pos in zip(parts["image"], parts["position"], strict=True):
            images.append(rotated_patches(img, pos[:, 0], pos[:, 1], angles[at:at + len(pos)], size=prm.patch_size))
            at += len(pos)
        size = prm.patch_size
        arrays = {
            "image": np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8),
            "label": np.concatenate(parts["label"]),
            "mode": np.concatenate(parts["mode"]),
            "radius": np.concatenate(parts["radius"]).reshape(-1, 2),
            "rotation": angles,
            "position": np.concatenate(parts["position"]).astype(np.int32).reshape(-1, 2),
        }
        stats = {"height": int(h), "width": int(w), "depth": int(n), "pattern": int(n),
                 "depth_candidates": int(sum(len(p) for _, p, _, _ in depth)),
                 "object_fraction": round(float(object_mask(mask).mean()), 4)}
        return arrays, stats

    def summary(self, stats: list[dict]) -> list[str]:
        used = [s for s in stats if "depth" in s]
        if not used:
            return []
        n = sum(int(s["depth"]) for s in used)
        few = sum(1 for s in used if int(s["depth"]) < self.params.patches_per_pair * len(self.pairs()))
        return [(f"{n} depth + {n} pattern edge patches from {len(used)} object/background pairs "
                 f"({n / len(used):.1f} of each class per object; {few} objects had fewer depth-edge candidates than "
                 "patches_per_pair for some level pair)")]

    def preview_tile(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        return centre_marked(sample["image"])

    def preview_caption(self, sample: dict[str, np.ndarray]) -> str:
        r = sample["radius"]
        if int(sample["mode"]) == COMPOSITE:
            return f"{float(r[0]):g}|{float(r[1]):g}"
        return f"{PATTERN_MODES[int(sample['mode'])][:4]} {float(r[0]):g}"


def _spread(n: int, available: list[int]) -> list[int]:
    """``n`` split over buckets as evenly as their ``available`` counts allow (fill the smallest first)."""
    quota = [0] * len(available)
    left = n
    order = sorted(range(len(available)), key=lambda i: available[i])
    for j, i in enumerate(order):
        share = min(available[i], left // (len(order) - j))
        quota[i] = share
        left -= share
    return quota
