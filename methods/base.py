"""The method protocol: what every blur-map / enhancement / restoration method declares and computes.

Conventions (the one place they are written down)
-------------------------------------------------
* **Input image**: ``float32`` array ``(H, W, 3)``, RGB, values in ``[0, 1]`` (sRGB as decoded,
  no linearisation).  Methods that work on gray use :func:`to_gray` (BT.601 luma, the same
  weights as :mod:`datagen.imageio`).
* **Outputs** (``PROVIDES``):

  - ``"blur_map"``: ``float32 (H, W)``, same size as the input, in the method's ``UNITS``:
    ``"sigma_px"`` (Gaussian sigma, pixels), ``"radius_px"`` (disk radius, pixels),
    ``"relative"`` (0..1, 1 = most blurred the method can express) or ``"score"`` (a
    sharpness or blurriness statistic without physical unit).  ``HIGHER`` says which way it
    points: ``"blurred"`` (higher = more defocus) or ``"sharp"``.
  - ``"enhanced_image"`` / ``"restored_image"``: ``float32 (H, W, 3)`` in ``[0, 1]``.
* A method never reads files by itself; weights come through ``weights=`` (a path) and are
  listed in ``WEIGHTS`` (name -> what the file is) so ``bench weights list`` can say where
  they are expected.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from datagen.generators.base import StrictModel
from datagen.imageio import LUMA_BT601 as _LUMA

PROVIDES = ("blur_map", "enhanced_image", "restored_image")
UNITS = ("sigma_px", "radius_px", "relative", "score", "image")
HIGHER = ("blurred", "sharp", "n/a")

#: BT.601 luma weights (R, G, B) of :data:`datagen.imageio.LUMA_BT601` (Pillow's ``convert("L")``), float32.
LUMA_BT601 = np.array(_LUMA, dtype=np.float32)


class Params(StrictModel):
    """Method parameters: strict (unknown keys are errors), immutable once validated."""


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB in [0, 1] -> ``(H, W)`` float32 BT.601 luma in [0, 1]; 2-D input is returned as float32."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    return image[..., :3] @ LUMA_BT601


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a method input (``(H, W, 3)`` float in [0, 1], finite) and return it as float32."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    return image


class Method:
    """Base class.  Subclasses set the class attributes and implement :meth:`predict`."""

    NAME: ClassVar[str]
    VERSION: ClassVar[str]
    PROVIDES: ClassVar[str]           # one of PROVIDES
    UNITS: ClassVar[str]              # one of UNITS
    HIGHER: ClassVar[str] = "n/a"     # one of HIGHER (blur maps only)
    DESCRIPTION: ClassVar[str]
    REFERENCE: ClassVar[str] = ""
    WEIGHTS: ClassVar[dict[str, str]] = {}   # weight name -> description; empty = none needed
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu", weights: str | None = None):
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        self.params = params
        self.device = device
        self.weights = weights

    @classmethod
    def info(cls) -> dict[str, Any]:
        """Metadata as data (for ``bench list methods`` and ``run.json``)."""
        return {
            "name": cls.NAME, "version": cls.VERSION, "provides": cls.PROVIDES, "units": cls.UNITS,
            "higher": cls.HIGHER, "description": cls.DESCRIPTION, "reference": cls.REFERENCE,
            "weights": dict(cls.WEIGHTS), "params": cls.Params().model_dump(mode="json"),
        }

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Run on one image (see the module conventions); returns the ``PROVIDES`` output."""
        raise NotImplementedError
