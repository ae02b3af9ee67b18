"""The generator protocol: what a corpus generator declares and computes.

A generator turns one decoded source image into a batch of samples.  It declares its
parameters as a strict pydantic model (the manifest's ``generator:`` block), its stored
fields, and its classes; the engine owns sources, splits, sharding, seeding and I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Manifest blocks: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Field:
    """One stored per-sample array: ``dtype`` and the shape of one sample (``()`` for scalars)."""

    dtype: str
    shape: tuple[int, ...]
    doc: str


class Generator:
    """Base class.  Subclasses set the class attributes and implement :meth:`make`."""

    KIND: ClassVar[str]
    VERSION: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    Params: ClassVar[type[StrictModel]]

    def __init__(self, params: StrictModel):
        self.params = params

    def fields(self) -> dict[str, Field]:
        """Stored fields; the engine adds ``source`` (int32 row of ``/sources``)."""
        raise NotImplementedError

    def classes(self) -> list[dict]:
        """One dict per class label ``0..K-1`` (``{"label": k, ...}``), for counts and previews."""
        raise NotImplementedError

    def make(self, image: np.ndarray, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        """Samples from one decoded uint8 gray image: ``(arrays by field, per-image stats)``.

        Arrays share their first dimension; their order is the canonical sample order.
        """
        raise NotImplementedError
