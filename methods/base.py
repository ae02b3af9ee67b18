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
* **Map consumers** (``NEEDS_MAP`` = ``"radius_px"`` or ``"sigma_px"``): methods that restore or
  enhance an image *given* a blur map implement :meth:`Method.predict_with_map`; the map comes from
  another method or a dataset's ground truth, converted by :func:`methods.map_units.convert_map`
  (``bench`` runs them as chains, ``svbr2022@karaali2022``).  Their ``predict(image)`` alone is an
  error that says so.
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
    #: Units of the blur map a map consumer needs (``"radius_px"`` / ``"sigma_px"``); None = image only.
    NEEDS_MAP: ClassVar[str | None] = None
    #: Where a map consumer named alone in ``bench`` takes its map: ``"gt"`` (the dataset's ground
    #: truth) or a blur-map method's name (``galetto2022_um`` -> ``galetto2022``).
    DEFAULT_MAP_SOURCE: ClassVar[str] = "gt"
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
            "weights": dict(cls.WEIGHTS), "needs_map": cls.NEEDS_MAP,
            **({"default_map_source": cls.DEFAULT_MAP_SOURCE} if cls.NEEDS_MAP else {}),
            "params": cls.Params().model_dump(mode="json"),
        }

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Run on one image (see the module conventions); returns the ``PROVIDES`` output."""
        if self.NEEDS_MAP is not None:
            from datagen.errors import UserError
            raise UserError(f"{self.NAME} needs a blur map ({self.NEEDS_MAP}): run it after a map method or a "
                            f"ground truth, e.g. {self.NAME}@karaali2022 or {self.NAME}@gt")
        raise NotImplementedError

    def predict_with_map(self, image: np.ndarray, blur_map: np.ndarray) -> np.ndarray:
        """Map consumers: run on ``image`` given ``blur_map`` (``(H, W)`` float32 in ``NEEDS_MAP``
        units, already converted and checked by :func:`methods.map_units.convert_map`)."""
        raise NotImplementedError(f"{type(self).__name__} does not consume a blur map")
