"""Synthetic evaluation sets with known blur, made in memory from the photos that ship inside
scikit-image (no download): the quick profile's data, and a sanity floor for every method.

Every set is deterministic: the blur layout of image ``i`` comes from
``datagen.seeding.rng_for(seed, "<dataset>:<image>")`` and the blur itself from
:mod:`datagen.psf` (sampled Gaussian, half-width ``ceil(3 sigma)``, reflect border).  Photos are
resized (Pillow LANCZOS) so that the long side is ``size`` pixels; gray photos are replicated
to RGB.

``synth_detection``  one region (a random half-plane) blurred with Gaussian sigma ~ U[2, 4] px;
                     target ``blur_mask`` (True = blurred).
``synth_defocus``    three depth layers (random vertical bands) blurred with disk (pillbox,
                     ``fspecial('disk', r)``) kernels of radii drawn from 0.5..6 px step 0.25,
                     the RTF levels; targets ``radius_map`` and ``sigma_map`` (the RTF table's
                     equivalent Gaussian, :func:`datagen.psf.radius_to_sigma`), and ``sharp`` (a
                     restoration set too: deblurring methods run on its ``@gt`` map).
``synth_enhance``    the whole photo blurred with Gaussian sigma 1.5 px; target ``sharp``.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property

import numpy as np
from PIL import Image

from datagen import psf
from datagen.imageio import open_image, read_bytes
from datagen.seeding import rng_for
from datagen.sources import BUILTIN_IMAGES, builtin_image_path

from .base import Dataset, Sample

#: Sharp built-in photos used by default (clock/moon/retina are avoided: blurred or featureless).
DEFAULT_IMAGES = ("astronaut", "coffee", "rocket", "motorcycle", "camera", "gravel")


def load_builtin(name: str, size: int) -> np.ndarray:
    """Built-in photo as float32 (H, W, 3) in [0, 1] with its long side resized to ``size`` px."""
    with open_image(builtin_image_path(name)) as im:
        im = im.convert("RGB")
        scale = size / max(im.size)
        if scale != 1:
            im = im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.LANCZOS)
        return np.asarray(im, dtype=np.float32) / np.float32(255.0)


class _Synthetic(Dataset):
    VERSION = "1"

    def __init__(self, *, images: tuple[str, ...] | None = None, size: int = 192, seed: int = 0, limit: int | None = None):
        images = tuple(images or DEFAULT_IMAGES)
        unknown = [n for n in images if n not in BUILTIN_IMAGES]
        if unknown:
            raise ValueError(f"unknown built-in image(s) {', '.join(unknown)}; choose from {', '.join(BUILTIN_IMAGES)}")
        self.images = images[:limit] if limit else images
        self.size, self.seed = int(size), int(seed)

    @property
    def description(self) -> str:
        return f"{self.DESCRIPTION}; {len(self.images)} built-in photos, long side {self.size} px"

    def keys(self) -> list[str]:
        return list(self.images)

    def _rng(self, key: str) -> np.random.Generator:
        return rng_for(self.seed, f"{self.NAME}:{key}")

    @cached_property
    def dataset_id(self) -> str:
        h = hashlib.sha256(json.dumps({"name": self.NAME, "version": self.VERSION, "size": self.size,
                                       "seed": self.seed, "images": list(self.images)}).encode())
        for name in self.images:
            h.update(hashlib.sha256(read_bytes(builtin_image_path(name))).digest())
        return h.hexdigest()[:16]


def _half_plane(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w]
    d = (x - w / 2) * np.cos(angle) + (y - h / 2) * np.sin(angle)
    offset = rng.uniform(-0.25, 0.25) * min(h, w)
    return d > offset


class SynthDetection(_Synthetic):
    NAME = "synth_detection"
    TASK = "detection"
    TARGETS = ("blur_mask",)
    DESCRIPTION = "built-in photos with one half-plane blurred (Gaussian sigma 2-4 px); binary blur mask"

    def load(self, key: str) -> Sample:
        rng = self._rng(key)
        sharp = load_builtin(key, self.size)
        mask = _half_plane(sharp.shape[:2], rng)
        sigma = float(rng.uniform(2.0, 4.0))
        image = np.where(mask[..., None], psf.gaussian_blur(sharp, sigma), sharp)
        return Sample(key, image.astype(np.float32), {"blur_mask": mask}, {"sigma": sigma})


class SynthDefocus(_Synthetic):
    NAME = "synth_defocus"
    TASK = "defocus_map"
    EXTRA_TASKS = ("restoration",)    # the sharp photo is the reference, the radius map the @gt map
    TARGETS = ("radius_map", "sigma_map", "sharp")
    VERSION = "2"   # 2: true disk kernels (1 used the table's equivalent Gaussians)
    DESCRIPTION = ("built-in photos in three depth layers blurred with disk kernels of radius 0.5-6 px; radius map "
                   "and the sharp photo")

    def load(self, key: str) -> Sample:
        rng = self._rng(key)
        sharp = load_builtin(key, self.size)
        h, w = sharp.shape[:2]
        radii = rng.choice(np.arange(0.5, 6.01, 0.25), size=3, replace=False)
        cuts = np.sort(rng.uniform(0.2, 0.8, size=2)) * w
        x = np.arange(w)[None, :].repeat(h, axis=0)
        layer = (x >= cuts[0]).astype(int) + (x >= cuts[1]).astype(int)
        radius_map = radii[layer].astype(np.float32)
        sigma_map = psf.radius_to_sigma(radius_map).astype(np.float32)
        image = np.empty_like(sharp)
        for i, r in enumerate(radii):
            sel = layer == i
            image[sel] = psf.disk_blur(sharp, float(r))[sel]
        return Sample(key, image, {"radius_map": radius_map, "sigma_map": sigma_map, "sharp": sharp},
                      {"radii": radii.tolist()})


class SynthEnhance(_Synthetic):
    NAME = "synth_enhance"
    TASK = "enhancement"
    TARGETS = ("sharp",)
    DESCRIPTION = "built-in photos blurred with Gaussian sigma 1.5 px; the sharp photo is the reference"
    SIGMA = 1.5

    def load(self, key: str) -> Sample:
        sharp = load_builtin(key, self.size)
        return Sample(key, psf.gaussian_blur(sharp, self.SIGMA), {"sharp": sharp}, {"sigma": self.SIGMA})
