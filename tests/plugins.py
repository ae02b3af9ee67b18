"""Methods injected through ``DEFOCUSBENCH_METHODS`` by the end-to-end tests, a corpus generator
injected through ``DEFOCUSBENCH_GENERATORS`` by the generator contract tests, and evaluation datasets
registered through a ``defocusbench.datasets`` entry point and ``register_dataset`` by
tests/test_plugins_api.py (not shipped)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field as PydField

from bench.datasets.base import Dataset, Sample
from datagen import psf
from datagen.errors import SourceError
from datagen.generators import Field, Generator, StrictModel
from methods.base import Method, check_image
from methods.classical.unsharp import UnsharpMask


class Crasher(Method):
    NAME = "crasher"
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "score"
    HIGHER = "blurred"
    DESCRIPTION = "raises on every image (tests the harness's failure handling)"

    def predict(self, image):
        check_image(image)
        raise RuntimeError("injected failure <b>boom</b>")


class DegradedUnsharp(UnsharpMask):
    """Same name, version and parameters as the shipped unsharp_mask, but worse output: a regression."""

    def predict(self, image):
        out = super().predict(image)
        rng = np.random.default_rng(0)
        return np.clip(out + rng.normal(0, 0.08, out.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ a third-party generator
class RadiusTilesParams(StrictModel):
    kind: Literal["radius_tiles"] = "radius_tiles"
    tile: int = PydField(24, ge=4, le=256)
    per_image: int = PydField(6, ge=1, le=100)


class RadiusTiles(Generator):
    """A regression corpus without class labels: gray tiles of the image blurred by a random disk
    radius, the radius as the target (one generator module + one manifest, outside the package)."""

    KIND = "radius_tiles"
    VERSION = "1"
    DESCRIPTION = "test plug-in: gray tiles blurred by a random disk radius (regression target)"
    Params = RadiusTilesParams

    def fields(self):
        t = self.params.tile
        return {"image": Field("uint8", (t, t), "gray tile, 0..255"),
                "radius": Field("float32", (), "disk radius of the blur, px (the target)")}

    def make(self, item, rng):
        t, n = self.params.tile, self.params.per_image
        h, w = item.image.shape
        radii = rng.uniform(0.5, 4.0, size=n).astype(np.float32)
        ys, xs = rng.integers(0, h - t + 1, size=n), rng.integers(0, w - t + 1, size=n)
        tiles = np.stack([np.clip(np.rint(psf.disk_blur(item.image, float(r))[y:y + t, x:x + t]), 0, 255)
                          for r, y, x in zip(radii, ys, xs, strict=True)]).astype(np.uint8)
        return {"image": tiles, "radius": radii}, {"mean_radius": float(radii.mean())}


# ------------------------------------------------------------------------------ third-party datasets
class HalfBlurNoise(Dataset):
    """A detection set that needs no root: seeded noise images whose right half is blurred."""

    NAME = "plug_halfblur"
    VERSION = "1"
    TASK = "detection"
    TARGETS = ("blur_mask",)
    DESCRIPTION = "test plug-in: noise images with the right half blurred (Gaussian sigma 3 px)"

    def __init__(self, *, side: int = 48, limit: int | None = None):
        self.side, self.n = int(side), min(3, limit or 3)

    def keys(self) -> list[str]:
        return [f"noise{i}" for i in range(self.n)]

    def load(self, key: str) -> Sample:
        sharp = np.random.default_rng(int(key.removeprefix("noise"))).random((self.side, self.side, 3), np.float32)
        mask = np.zeros((self.side, self.side), bool)
        mask[:, self.side // 2:] = True
        image = np.where(mask[..., None], psf.gaussian_blur(sharp, 3.0), sharp).astype(np.float32)
        return Sample(key, image, {"blur_mask": mask})

    @property
    def dataset_id(self) -> str:
        return hashlib.sha256(f"{self.NAME} v{self.VERSION} {self.side} {self.n}".encode()).hexdigest()[:16]


class NpzMaps(Dataset):
    """A defocus-map set read from the user's folder (its constructor takes ``root``, so it needs one):
    ``*.npz`` files holding ``image`` (H, W, 3) in [0, 1] and ``radius_map`` (H, W) in px."""

    NAME = "plug_npz"
    VERSION = "1"
    TASK = "defocus_map"
    TARGETS = ("radius_map",)
    DESCRIPTION = "test plug-in: .npz files with an image and its disk-radius map (px)"

    def __init__(self, root: str | Path, *, limit: int | None = None):
        self.root = Path(root)
        self.files = sorted(self.root.glob("*.npz"))[:limit]
        if not self.files:
            raise SourceError(f"{root}: no .npz files")

    def keys(self) -> list[str]:
        return [f.stem for f in self.files]

    def load(self, key: str) -> Sample:
        with np.load(self.root / f"{key}.npz") as z:
            return Sample(key, z["image"].astype(np.float32), {"radius_map": z["radius_map"].astype(np.float32)})

    @property
    def dataset_id(self) -> str:
        h = hashlib.sha256(f"{self.NAME} v{self.VERSION}".encode())
        for f in self.files:
            h.update(f.read_bytes())
        return h.hexdigest()[:16]
