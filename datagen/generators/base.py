"""The generator protocol: what a corpus generator declares and computes.

A new corpus is one generator module (a :class:`Generator` subclass, registered in
:mod:`datagen.generators`) plus one manifest.  The generator declares

* its parameters as a strict pydantic model (the manifest's ``generator:`` block);
* what it reads from each source image: ``COLOR`` (``"gray"``: BT.601 luma, or ``"rgb"``;
  :mod:`datagen.imageio`), ``NEEDS_MASK`` (its primary sources are image + mask pairs, the
  ``paired`` source kind) and ``COMPANIONS`` (per primary image, how many images of another *role*
  it draws, e.g. one ``background`` for a composite; the engine chooses them in the plan with a
  seeded, key-hashed order, from the same split, so the choice does not depend on workers);
* its stored fields, and its classes (``[]`` for a corpus of regression targets without labels);
* :meth:`make`: the samples of one :class:`SourceItem`.

The engine owns sources, splits, companions, sharding, seeding, I/O, resume and provenance: every
generator gets Dask parallelism, crash-safe resumable shards, byte-identical output whatever the
worker count, and a ``datagen preview`` grid (:meth:`preview_tile`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Manifest blocks: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def increasing_radii(values: tuple[float, ...], *, zero_ok: bool = False) -> tuple[float, ...]:
    """Validator of a tuple of blur radii (px): finite, > 0 (``>= 0`` with ``zero_ok``: 0 = sharp),
    strictly increasing; ``ValueError`` (one line) otherwise."""
    if any(not (np.isfinite(r) and (r >= 0 if zero_ok else r > 0)) for r in values):
        raise ValueError(f"every radius must be a finite number {'>=' if zero_ok else '>'} 0")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError("radii must be strictly increasing")
    return values


def odd_patch_size(size: int) -> int:
    """Validator of a patch side centred on a pixel: odd."""
    if size % 2 == 0:
        raise ValueError("patch_size must be odd (the patch is centred on a pixel)")
    return size


@dataclass(frozen=True)
class Field:
    """One stored per-sample array: ``dtype`` and the shape of one sample (``()`` for scalars).

    ``chunk``: the HDF5 chunk of one sample in a compressed corpus (a shape of the same rank as
    ``shape``, e.g. one map of a stack: ``(1, H, W)`` for ``shape = (39, H, W)``), so that a reader
    decompresses only what it reads; ``None``: whole samples, grouped to ~64k elements per chunk.
    ``units``: what one unit of a stored value is (``"px"``, ``"px / 4"``, ``"degrees"``, ``"0..255"``;
    empty for labels and counts); the corpus stores it, with ``doc``, as attributes of the dataset.
    """

    dtype: str
    shape: tuple[int, ...]
    doc: str
    chunk: tuple[int, ...] | None = None
    units: str = ""


@dataclass(frozen=True)
class SourceItem:
    """What :meth:`Generator.make` gets for one primary source image.

    ``image``: uint8, ``(H, W)`` gray or ``(H, W, 3)`` RGB per ``COLOR``.  ``mask``: uint8 ``(H, W)``
    as stored in the mask file (gray; the generator decides how to binarise), or ``None``.
    ``companions``: role -> the decoded companion images (``COLOR``), in the plan's order.
    ``split``: the image's split (``train``, ``val`` or ``test``), for generators that treat
    training and evaluation images differently (e.g. resize vs crop).
    """

    key: str
    image: np.ndarray
    mask: np.ndarray | None = None
    companions: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)
    split: str = "train"


class Generator:
    """Base class.  Subclasses set the class attributes and implement :meth:`make`."""

    KIND: ClassVar[str]
    VERSION: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    Params: ClassVar[type[StrictModel]]
    #: How source images are decoded: ``"gray"`` (BT.601 luma) or ``"rgb"``.
    COLOR: ClassVar[Literal["gray", "rgb"]] = "gray"
    #: Whether primary sources must be image + mask pairs (the ``paired`` source kind).
    NEEDS_MASK: ClassVar[bool] = False
    #: Role -> number of images of that role drawn per primary image (sources with ``role: NAME``).
    COMPANIONS: ClassVar[dict[str, int]] = {}
    #: The field :meth:`preview_tile` shows by default.
    PREVIEW_FIELD: ClassVar[str] = "image"

    def __init__(self, params: StrictModel):
        self.params = params

    def fields(self) -> dict[str, Field]:
        """Stored fields; the engine adds ``source`` (int32 row of ``/sources``)."""
        raise NotImplementedError

    def classes(self) -> list[dict]:
        """One dict per class label ``0..K-1`` (``{"label": k, ...}``), for counts and previews;
        ``[]`` when the corpus has no ``label`` field (regression targets)."""
        return []

    def make(self, item: SourceItem, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        """Samples from one source item: ``(arrays by field, per-image stats)``.

        Arrays share their first dimension; their order is the canonical sample order.  Stats
        are flat ``{name: int | float | str}`` (columns of ``/sources``; the same names for
        every image).  ``rng`` is seeded by the manifest seed and the image key only.
        """
        raise NotImplementedError

    def summary(self, stats: list[dict]) -> list[str]:
        """Lines ``datagen build`` prints about a finished build, from the ``stats`` of its primary images."""
        n = sum(int(s.get("samples", 0)) for s in stats)
        return [f"{n} samples from {len(stats)} images ({n / max(len(stats), 1):.1f} per image)"]

    def preview_tile(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        """uint8 ``(h, w)`` or ``(h, w, 3)`` picture of one sample for ``datagen preview``."""
        return np.asarray(sample[self.PREVIEW_FIELD])

    def preview_caption(self, sample: dict[str, np.ndarray]) -> str:
        """A short caption under a preview tile (default: none)."""
        return ""
