"""``disk23_edges``: the B-NET corpus of Karaali, Harte & Jung (TIP 31, 2022, Sec. IV-A; ``METHODS.md`` 6.3).

Pipeline per source image (RGB, uint8)
--------------------------------------
1. For each radius ``R`` of ``radii`` (default the 23 levels 0.5, 0.75, ..., 6.0 px): blur the whole
   image with the pillbox ``fspecial('disk', R)`` (:func:`datagen.psf.disk_kernel`; ``R = 0.5`` is
   the identity, so level 0 is the sharp image), reflect border, rounded to uint8.
2. Canny edges of that blurred image (:func:`datagen.edges.canny_edges`: the V channel,
   ``sigma = sqrt(2)``, the detector :mod:`methods.karaali2022` uses at inference).
3. ``n = min(patches_per_level, fewest edge pixels of any level)`` edge pixels per level, drawn
   without replacement by the image's seeded generator (so every level has the same count, in
   every image), in raster order within a level.
4. A ``patch_size`` square RGB patch of the blurred image centred on each, the image extended by
   ``BORDER_REFLECT`` as at inference (:func:`datagen.patches.centred_patches`).  The 27 and 15
   scales of B-NET are centre crops of it, so only the largest is stored.

Label ``k`` = blur ``radii[k]``.  Samples of one image: level 0 first, then level 1, ...

Size: 5 KB per sample (41x41x3).  The shipped manifest (``manifests/coco_imagenet_disk23.yaml``)
takes 8 patches per level from each of the 702 sharp photos (~129 k samples, ~650 MB); the paper's
~5 M patches (500 photos, ~435 per level each) is ``patches_per_level: 435`` (~25 GB).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field as PydField
from pydantic import field_validator

from .. import psf
from ..edges import EDGE_SIGMA, canny_edges
from ..patches import centred_patches
from .base import (
    Field,
    Generator,
    SourceItem,
    StrictModel,
    increasing_radii,
    odd_patch_size,
)

#: The 23 disk radii of B-NET (px): 0.5, 0.75, ..., 6.0.
DISK23_RADII = tuple(0.5 + 0.25 * k for k in range(23))


class Disk23Params(StrictModel):
    kind: Literal["disk23_edges"] = "disk23_edges"
    radii: tuple[float, ...] = PydField(DISK23_RADII, min_length=1, description="disk radius (px) of each class")
    patch_size: int = PydField(41, ge=3, le=255, description="side of the stored patch (odd), px")
    patches_per_level: int = PydField(8, ge=1, le=100_000, description="edge patches per level per image (at most)")
    edge_channel: Literal["v", "gray", "hue"] = PydField("v", description="channel the Canny edges are found on")
    edge_sigma: float = PydField(EDGE_SIGMA, gt=0, le=10, description="Canny smoothing sigma (px)")

    _radii = field_validator("radii")(lambda v: increasing_radii(v))
    _odd = field_validator("patch_size")(lambda v: odd_patch_size(v))


def blurred_levels(image: np.ndarray, radii) -> list[np.ndarray]:
    """The whole image blurred by each disk radius (reflect border), rounded to uint8."""
    return [np.clip(np.rint(psf.disk_blur(image, r)), 0, 255).astype(np.uint8) if r > 0.5 else image.copy()
            for r in radii]


class Disk23Edges(Generator):
    KIND = "disk23_edges"
    VERSION = "1.0.0"
    DESCRIPTION = ("Karaali, Harte & Jung 2022 B-NET: 41x41 RGB patches at Canny edges of whole images blurred by "
                   "23 disk radii 0.5..6 px, an equal count per level")
    Params = Disk23Params
    COLOR = "rgb"

    def fields(self) -> dict[str, Field]:
        p = self.params.patch_size
        return {
            "image": Field("uint8", (p, p, 3), "RGB patch of the blurred image centred on an edge pixel, 0..255",
                           units="0..255"),
            "label": Field("int16", (), "class k: blurred with the disk of radius radii[k]"),
            "radius": Field("float32", (), "disk radius of the blur, px", units="px"),
            "position": Field("int32", (2,), "(row, col) of the centre edge pixel in the source image, px",
                              units="px"),
        }

    def classes(self) -> list[dict]:
        return [{"label": k, "radius": float(r)} for k, r in enumerate(self.params.radii)]

    def make(self, item: SourceItem, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        prm = self.params
        levels = blurred_levels(item.image, prm.radii)
        edges = [np.flatnonzero(canny_edges(b, channel=prm.edge_channel, sigma=prm.edge_sigma)) for b in levels]
        fewest = min(len(e) for e in edges)
        n = min(prm.patches_per_level, fewest)
        width = item.image.shape[1]
        images, labels, positions = [], [], []
        for k, (blurred, idx) in enumerate(zip(levels, edges, strict=True)):
            pick = np.sort(rng.choice(idx, size=n, replace=False)) if n else idx[:0]
            ys, xs = pick // width, pick % width
            images.append(centred_patches(blurred, ys, xs, size=prm.patch_size))
            labels.append(np.full(n, k, np.int16))
            positions.append(np.stack([ys, xs], axis=1))
        label = np.concatenate(labels)
        arrays = {
            "image": np.concatenate(images),
            "label": label,
            "radius": np.asarray(prm.radii, np.float32)[label],
            "position": np.concatenate(positions).astype(np.int32).reshape(-1, 2),
        }
        stats = {"height": int(item.image.shape[0]), "width": int(width), "per_level": int(n),
                 "fewest_edges": int(fewest)}
        return arrays, stats

    def summary(self, stats: list[dict]) -> list[str]:
        per = [int(s["per_level"]) for s in stats if "per_level" in s]
        short = sum(1 for s in stats if "per_level" in s and s["per_level"] < self.params.patches_per_level)
        if not per:
            return []
        return [(f"{sum(per)} patches per level from {len(per)} images ({sum(per) / len(per):.1f} per image per "
                 f"level; {short} images had fewer edge pixels than patches_per_level at some level)")]

    def preview_tile(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        return centre_marked(sample["image"])


def centre_marked(patch: np.ndarray) -> np.ndarray:
    """A copy of an RGB edge patch with its centre pixel red (for previews: it must lie on an edge)."""
    tile = np.array(patch)
    c = tile.shape[0] // 2
    tile[c, c] = (255, 0, 0)
    return tile
