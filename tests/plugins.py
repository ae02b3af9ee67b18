"""Methods injected through ``DEFOCUSBENCH_METHODS`` by the end-to-end tests (not shipped)."""
from __future__ import annotations

import numpy as np

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
