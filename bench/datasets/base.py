"""Evaluation samples and the dataset protocol.

A :class:`Sample` is what a method sees (``image``) plus what metrics compare against
(``targets``).  Target conventions (the one place they are written down):

``blur_mask``   bool ``(H, W)``, True = blurred (out of focus).  CUHK masks store 255 = blurred.
``radius_map``  float32 ``(H, W)``, ground-truth disk radius in pixels (RTF: 0.5..6 step 0.25).
``sigma_map``   float32 ``(H, W)``, ground-truth Gaussian sigma in pixels.
``sharp``       float32 ``(H, W, 3)`` in [0, 1], the all-in-focus reference (restoration).
``label``       int, a class label (patch classification corpora).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass
class Sample:
    key: str                                   # unique within its dataset, stable across runs
    image: np.ndarray                          # float32 (H, W, 3) RGB in [0, 1]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class Dataset:
    """Base class: a named, versioned, ordered collection of samples.

    Subclasses set the class attributes, and implement :meth:`keys` and :meth:`load`
    (``load`` is called inside workers: it must only need the constructor's plain arguments).
    ``dataset_id`` hashes the content (keys and file digests), never paths or mtimes.
    """

    NAME: ClassVar[str]
    VERSION: ClassVar[str]
    TASK: ClassVar[str]               # "detection" | "defocus_map" | "restoration" | "enhancement" | "nr_enhancement"
    #: Further tasks its targets allow (e.g. a defocus-map set with sharp references is a restoration
    #: set too); a method is scored under the first task of :meth:`tasks` its output fits.
    EXTRA_TASKS: ClassVar[tuple[str, ...]] = ()
    TARGETS: ClassVar[tuple[str, ...]]
    DESCRIPTION: ClassVar[str]

    @classmethod
    def tasks(cls) -> tuple[str, ...]:
        """``TASK`` and the ``EXTRA_TASKS``, in order."""
        return (cls.TASK, *cls.EXTRA_TASKS)

    def keys(self) -> list[str]:
        raise NotImplementedError

    def load(self, key: str) -> Sample:
        raise NotImplementedError

    @property
    def dataset_id(self) -> str:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        for key in self.keys():
            yield self.load(key)

    def __len__(self) -> int:
        return len(self.keys())
