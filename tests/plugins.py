"""Methods injected through ``DEFOCUSBENCH_METHODS`` by the end-to-end tests, and a corpus generator
injected through ``DEFOCUSBENCH_GENERATORS`` by the generator contract tests (not shipped)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field as PydField

from datagen import psf
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
