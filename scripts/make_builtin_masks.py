#!/usr/bin/env python3
"""Make the object masks of built-in photos shipped in ``datagen/data/masks/`` (``builtin`` sources
with ``masks: true``, e.g. ``manifests/demo_depth_edges.yaml``).

Each mask is an Otsu threshold of the photo's BT.601 gray image on the polarity of the object,
opened with a disk of radius 3, reduced to its components of at least ``min_area`` pixels (the
largest only for ``largest``), holes filled; 255 = object.  They are rough salient-object masks,
good enough for a demo corpus of composites; they are not ground truth.  Rerun to regenerate
(deterministic): ``python scripts/make_builtin_masks.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, measure, morphology

from datagen.imageio import read_gray
from datagen.sources import BUILTIN_MASKS_DIR, builtin_image_path

#: photo -> (object polarity, keep only the largest component, smallest component kept in pixels)
RECIPES = {
    "camera": ("dark", True, 0),        # the cameraman and his tripod
    "coffee": ("bright", True, 0),      # cup and saucer
    "coins": ("bright", False, 200),    # every coin
    "rocket": ("bright", True, 0),      # the rocket on its pad
}


def make_mask(name: str) -> np.ndarray:
    gray, _ = read_gray(builtin_image_path(name))
    polarity, largest, min_area = RECIPES[name]
    t = filters.threshold_otsu(gray)
    m = gray < t if polarity == "dark" else gray > t
    m = morphology.opening(m, morphology.disk(3))
    lab = measure.label(m)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes == sizes.max() if largest else sizes >= max(min_area, 1)
    keep[0] = False
    return np.where(ndi.binary_fill_holes(keep[lab]), 255, 0).astype(np.uint8)


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "datagen" / BUILTIN_MASKS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in RECIPES:
        mask = make_mask(name)
        Image.fromarray(mask).save(out / f"{name}.png", optimize=True)
        print(f"{out / (name + '.png')}: {mask.shape[1]}x{mask.shape[0]}, object {100 * (mask > 0).mean():.1f} %")


if __name__ == "__main__":
    main()
