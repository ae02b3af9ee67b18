"""``svpsf39``: the SVBR-Net corpus of Karaali & Jung (ICIP 2022; ``METHODS.md`` 7.2, items 22-23).

One sample per sharp source image, holding ``M = len(families) x draws`` (default 13 x 3 = 39)
spatially varying blurs of it:

1. **Fit** the image to ``height x width`` (default 360 x 340, H x W): training images are resized
   (``train_fit: resize``, bilinear, as the paper), validation and test images cropped at a seeded
   random position (``eval_fit: crop``; an image smaller than the crop is first enlarged, keeping
   its aspect ratio, bilinear).
2. **Maps**: for each family of ``families`` (:mod:`datagen.blur_maps`), ``draws`` random maps,
   quantised to the ``levels`` (0 = sharp).  Stored as ``gt`` in quarter pixels (``radius = gt / 4``).
3. **Rendering** (the gather model): every pixel of the blurred image is the sum of the sharp image
   under the ``fspecial('disk')`` kernel of its own level, replicate border, in float64
   (:func:`datagen.psf.disk_blur_stack` once per image + :func:`datagen.psf.select_levels` per map),
   then rounded to uint8 (``rounding: nearest``; ``truncate`` is the authors' ``uint8(v * 255)``,
   which also turns a flat 100 into 99 whenever float rounding lands just below it).
4. **Estimated-like maps** (``estimated``): the GT map sampled at the Canny edges of the *blurred*
   image (BT.601 gray / 255, ``sigma = edge_sigma``, scikit-image's default thresholds), then
   propagated by

   * ``dt``: normalised domain-transform filtering (:func:`datagen.domain_transform.dt_propagate`,
     ``sigma_s = min(H, W) / 8``, ``sigma_r = 3.75``, 5 iterations) guided by the self-filtered
     blurred image (RF ``sigma_s = 7``, ``sigma_r = 0.5``, 5 iterations);
   * ``matting``: the closed-form matting Laplacian of the blurred image (``r = 1``, ``eps =
     1e-7``) with ``lambda = 1e-3`` (:func:`datagen.propagate.propagate_sparse`); constraints on
     the edge pixels (binary ``D``, Levin / Zhuo & Sim; ``matting_constraint: values`` is the
     authors' ``D = diag(s)`` quirk, which leaves sharp samples unconstrained);

   and re-quantised like the GT (``<= 0.5`` -> 0, else the nearest level).  An image without edges
   gets all-sharp estimated maps.

Fields (one row per source image; the maps of one image in the order families x draws): ``sharp``
(the fitted source, stored once), ``blurred`` ``(M, H, W, 3)``, ``gt`` / ``dt`` / ``matting``
``(M, H, W)`` uint8 quarter pixels, ``family`` ``(M,)``, ``edge_pixels`` ``(M,)``.  In a compressed
corpus each map is its own HDF5 chunk, so reading one map decompresses only it.

Size: ~28.6 MB per image uncompressed at 360 x 340 (blurred 14.3 MB, three maps 14.3 MB); gzip
takes the maps to a few per cent and the blurred images to ~60-70 %.  The paper's corpus is 702
images x 39 maps (27,378 blurred images).
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field as PydField
from pydantic import field_validator

from .. import psf
from ..blur_maps import FAMILIES, SVBR_LEVELS, family_map, quantize_to_levels
from ..domain_transform import dt_propagate, recursive_filter
from ..edges import canny_edges
from .base import Field, Generator, SourceItem, StrictModel, increasing_radii

#: Stored maps are radii in quarter pixels (uint8): radius = value / MAP_SCALE.
MAP_SCALE = 4
ESTIMATES = ("dt", "matting")


class SVPSF39Params(StrictModel):
    kind: Literal["svpsf39"] = "svpsf39"
    height: int = PydField(360, ge=32, le=4096, description="rows of every stored image, px")
    width: int = PydField(340, ge=32, le=4096, description="columns of every stored image, px")
    levels: tuple[float, ...] = PydField(SVBR_LEVELS, min_length=22, max_length=22,
                                         description="the 22 non-zero disk radii (px) of the maps; 0 = sharp")
    families: tuple[int, ...] = PydField(tuple(FAMILIES), min_length=1, description="map families drawn (1..13)")
    draws: int = PydField(3, ge=1, le=100, description="maps drawn per family per image")
    train_fit: Literal["resize", "crop"] = PydField("resize", description="how train images are fitted")
    eval_fit: Literal["resize", "crop"] = PydField("crop", description="how val/test images are fitted")
    rounding: Literal["nearest", "truncate"] = PydField("nearest", description="float -> uint8 of the blurred images")
    edge_sigma: float = PydField(1.0, gt=0, le=10, description="Canny sigma (px) on the blurred image's gray")
    estimated: tuple[Literal["dt", "matting"], ...] = PydField(ESTIMATES, description="estimated-like maps to store")
    guide_sigma_s: float = PydField(7.0, gt=0, description="spatial sigma (px) of the DT guide's self-filtering")
    guide_sigma_r: float = PydField(0.5, gt=0, description="range sigma of the DT guide's self-filtering")
    dt_sigma_s: float | None = PydField(None, gt=0, description="spatial sigma (px) of DT propagation; None = min(H, W) / 8")
    dt_sigma_r: float = PydField(3.75, gt=0, description="range sigma of DT propagation")
    dt_iterations: int = PydField(5, ge=1, le=20, description="RF iterations (guide and propagation)")
    matting_lambda: float = PydField(1e-3, gt=0, description="weight of the sparse constraints")
    matting_epsilon: float = PydField(1e-7, gt=0, description="regulariser of the matting Laplacian")
    matting_constraint: Literal["binary", "values"] = PydField(
        "binary", description="binary D (Levin / Zhuo & Sim) or the authors' D = diag(s)")

    _levels = field_validator("levels")(lambda v: increasing_radii(v))

    @field_validator("families")
    @classmethod
    def _families(cls, v):
        if any(f not in FAMILIES for f in v) or len(set(v)) != len(v):
            raise ValueError("families must be distinct numbers from 1 to 13")
        return v

    @field_validator("estimated")
    @classmethod
    def _estimated(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("estimated lists each of dt, matting at most once")
        return v


def fit_image(image: np.ndarray, *, height: int, width: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 ``(h, w, 3)``) as ``(height, width, 3)``: bilinear resize, or a random crop
    (the image first enlarged, bilinear, keeping its aspect ratio, when smaller than the crop)."""
    h, w = image.shape[:2]
    if mode == "resize":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if h < height or w < width:
        s = max(height / h, width / w)
        h, w = max(height, round(h * s)), max(width, round(w * s))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    y = int(rng.integers(0, h - height + 1))
    x = int(rng.integers(0, w - width + 1))
    return np.ascontiguousarray(image[y:y + height, x:x + width])


def to_uint8(values: np.ndarray, rounding: str) -> np.ndarray:
    """float image in 0..255 -> uint8 by rounding to nearest (half to even) or truncation."""
    v = np.rint(values) if rounding == "nearest" else np.floor(values)
    return np.clip(v, 0, 255).astype(np.uint8)


class SVPSF39(Generator):
    KIND = "svpsf39"
    VERSION = "1.0.0"
    DESCRIPTION = ("Karaali & Jung 2022 SVBR-Net: per sharp image, 13 map families x 3 draws of spatially varying "
                   "disk blur (22 levels), exactly rendered, with GT maps and DT / matting-propagated maps")
    Params = SVPSF39Params
    COLOR = "rgb"
    PREVIEW_FIELD = "blurred"

    @property
    def maps_per_image(self) -> int:
        return len(self.params.families) * self.params.draws

    def fields(self) -> dict[str, Field]:
        p, m = self.params, self.maps_per_image
        h, w = p.height, p.width
        out = {
            "sharp": Field("uint8", (h, w, 3), "the fitted sharp source image, RGB 0..255", units="0..255"),
            "blurred": Field("uint8", (m, h, w, 3), "the image under each map (gather model), RGB 0..255", units="0..255",
                             chunk=(1, h, w, 3)),
            "gt": Field("uint8", (m, h, w), "ground-truth disk radius per pixel, quarter px (0 = sharp)", units="px / 4",
                        chunk=(1, h, w)),
        }
        docs = {"dt": "GT at the blurred image's Canny edges, domain-transform propagated, re-quantised; quarter px",
                "matting": "GT at the blurred image's Canny edges, matting-Laplacian propagated, re-quantised; quarter px"}
        for name in p.estimated:
            out[name] = Field("uint8", (m, h, w), docs[name], chunk=(1, h, w), units="px / 4")
        out["family"] = Field("int16", (m,), "map family 1..13 (datagen.blur_maps.FAMILIES)")
        out["edge_pixels"] = Field("int32", (m,), "Canny edge pixels of the blurred image (the sparse samples)",
                                    units="pixels")
        return out

    def make(self, item: SourceItem, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        p = self.params
        mode = p.train_fit if item.split == "train" else p.eval_fit
        sharp = fit_image(item.image, height=p.height, width=p.width, mode=mode, rng=rng)
        stack = psf.disk_blur_stack(sharp, p.levels, border="replicate")
        radii = np.concatenate([[0.0], np.asarray(p.levels, dtype=np.float64)])
        code = np.rint(radii * MAP_SCALE).astype(np.uint8)            # level index -> quarter px
        m = self.maps_per_image
        blurred = np.empty((m, p.height, p.width, 3), np.uint8)
        maps = {name: np.empty((m, p.height, p.width), np.uint8) for name in ("gt", *p.estimated)}
        family = np.empty(m, np.int16)
        edge_pixels = np.empty(m, np.int32)
        error = {name: [] for name in p.estimated}
        j = 0
        for fam in p.families:
            for _ in range(p.draws):
                idx = quantize_to_levels(family_map(fam, rng, height=p.height, width=p.width, levels=p.levels), p.levels)
                blurred[j] = to_uint8(psf.select_levels(stack, idx), p.rounding)
                maps["gt"][j] = code[idx]
                edges = canny_edges(blurred[j], channel="gray", sigma=p.edge_sigma)
                edge_pixels[j] = int(edges.sum())
                for name in p.estimated:
                    dense = self._propagate(name, radii[idx], edges, blurred[j])
                    est = quantize_to_levels(dense, p.levels)
                    maps[name][j] = code[est]
                    error[name].append(float(np.abs(radii[est] - radii[idx]).mean()))
                family[j] = fam
                j += 1
        arrays = {"sharp": sharp[None], "blurred": blurred[None], **{k: v[None] for k, v in maps.items()},
                  "family": family[None], "edge_pixels": edge_pixels[None]}
        stats = {"height": int(item.image.shape[0]), "width": int(item.image.shape[1]), "fit": mode,
                 "edge_fraction": float(edge_pixels.mean() / (p.height * p.width))}
        stats |= {f"{name}_mae": float(np.mean(error[name])) for name in p.estimated}
        return arrays, stats

    def _propagate(self, name: str, gt: np.ndarray, edges: np.ndarray, blurred: np.ndarray) -> np.ndarray:
        """The dense map propagated from ``gt`` (radius px) at ``edges`` by ``name`` (dt / matting)."""
        p = self.params
        if not edges.any():
            return np.zeros(gt.shape)
        img = blurred.astype(np.float64) / 255.0
        if name == "dt":
            guide = recursive_filter(img, img, sigma_s=p.guide_sigma_s, sigma_r=p.guide_sigma_r,
                                     iterations=p.dt_iterations)
            sigma_s = p.dt_sigma_s if p.dt_sigma_s is not None else min(gt.shape) / 8.0
            return dt_propagate(gt, edges, guide, sigma_s=sigma_s, sigma_r=p.dt_sigma_r, iterations=p.dt_iterations)
        from ..propagate import propagate_sparse

        if p.matting_constraint == "values":
            if not (edges & (gt > 0)).any():
                return np.zeros(gt.shape)
            return propagate_sparse(gt * edges, edges, img, lam=p.matting_lambda, epsilon=p.matting_epsilon,
                                    constraint="values")
        return propagate_sparse(gt, edges, img, lam=p.matting_lambda, epsilon=p.matting_epsilon)

    def summary(self, stats: list[dict]) -> list[str]:
        if not stats:
            return []
        m = self.maps_per_image
        edge = 100 * np.mean([s["edge_fraction"] for s in stats])
        lines = [(f"{len(stats)} images x {m} maps = {len(stats) * m} blurred images ({self.params.height}x"
                 f"{self.params.width}); edge pixels per map {edge:.1f} % on average")]
        for name in self.params.estimated:
            lines.append(f"{name} maps: mean absolute error vs the GT {np.mean([s[f'{name}_mae'] for s in stats]):.3f} px")
        return lines

    def preview_tile(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        """One map of the image (the first of family 10 when drawn, else the first): the blurred
        image, then the GT and estimated maps (gray, 0 = sharp .. white = 6 px); half size when taller
        than 200 px."""
        fam = np.asarray(sample["family"])
        j = int(np.argmax(fam == 10)) if (fam == 10).any() else 0
        parts = [np.asarray(sample["blurred"][j])]
        for name in ("gt", *self.params.estimated):
            g = np.clip(np.asarray(sample[name][j], np.float64) * (255.0 / (6 * MAP_SCALE)), 0, 255).astype(np.uint8)
            parts.append(np.repeat(g[..., None], 3, axis=2))
        tile = np.concatenate(parts, axis=1)
        if tile.shape[0] <= 200:
            return tile
        return cv2.resize(tile, (tile.shape[1] // 2, tile.shape[0] // 2), interpolation=cv2.INTER_AREA)

    def preview_caption(self, sample: dict[str, np.ndarray]) -> str:
        return "blurred | " + " | ".join(("gt", *self.params.estimated))
