"""A split of one of our own HDF5 corpora as an evaluation set (``--root gauss20=corpus.h5``).

For the ``gauss20`` corpus (Galetto & Deng): each sample is one 32x32 gray patch, given to
methods as RGB (gray replicated, [0, 1]); targets ``sigma_map`` (the patch's Gaussian sigma
in px, constant over the patch; 0 for class 0) and ``label`` (the class, 0..19).  The quick
profile takes ``per_class`` patches per class (the first ones in canonical order).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from datagen.corpus import open_corpus
from datagen.errors import SourceError
from datagen.generators.svpsf39 import MAP_SCALE as SVPSF39_MAP_SCALE

from .base import Dataset, Sample

_HANDLES: dict[str, object] = {}   # per process: h5py handles are neither picklable nor fork-safe


def _handle(path: str):
    key = f"{os.getpid()}:{path}"
    if key not in _HANDLES:
        _HANDLES[key] = open_corpus(path)
    return _HANDLES[key]


class Gauss20Split(Dataset):
    NAME = "gauss20"
    VERSION = "1"
    TASK = "patch_blur"
    TARGETS = ("sigma_map", "label")
    DESCRIPTION = "a split of a gauss20 corpus built by datagen: 32x32 gray patches with their Gaussian sigma"

    def __init__(self, root: str | Path, *, split: str = "test", per_class: int | None = None):
        self.path = str(Path(root).absolute())
        if Path(root).is_dir() or not Path(root).exists():
            raise SourceError(f"gauss20 root {root} must be a corpus file built by `datagen build` (e.g. corpora/demo_gauss20.h5)")
        f = open_corpus(self.path)  # one-line UserError for anything that is not a complete corpus
        try:
            if f.attrs.get("generator") != "gauss20":
                raise SourceError(f"{root}: a {f.attrs.get('generator')!r} corpus, not gauss20")
            if split not in f:
                raise SourceError(f"{root}: no {split!r} split (has {', '.join(k for k in f if k != 'sources')})")
            labels = f[split]["label"][...]
            self.content = str(f.attrs["content_sha256"])
        finally:
            f.close()
        rows = np.arange(len(labels))
        if per_class:
            rows = np.sort(np.concatenate([rows[labels == c][:per_class] for c in np.unique(labels)]))
        self.split, self.per_class, self.rows = split, per_class, rows
        if not len(rows):
            raise SourceError(f"{root}: the {split!r} split is empty")

    @property
    def description(self) -> str:
        cap = f", {self.per_class} per class" if self.per_class else ""
        return f"{self.DESCRIPTION}; split {self.split}{cap}: {len(self.rows)} patches"

    def keys(self) -> list[str]:
        return [f"{self.split}:{r:07d}" for r in self.rows]

    def load(self, key: str) -> Sample:
        row = int(key.split(":")[1])
        g = _handle(self.path)[self.split]
        patch = g["image"][row].astype(np.float32) / np.float32(255.0)
        sigma, label = float(g["sigma"][row]), int(g["label"][row])
        return Sample(key, np.repeat(patch[..., None], 3, axis=2),
                      {"sigma_map": np.full(patch.shape, sigma, np.float32), "label": np.array(label)},
                      {"position": g["position"][row].tolist()})

    @property
    def dataset_id(self) -> str:
        return hashlib.sha256(f"{self.content} {self.split} per_class={self.per_class}".encode()).hexdigest()[:16]


class SVPSF39Split(Dataset):
    """A split of an ``svpsf39`` corpus (SVBR-Net's data, :mod:`datagen.generators.svpsf39`) as a
    restoration set: each sample is one blurred image of the split (row, map), the sharp source its
    reference, the map's ground truth ``radius_map`` (the ``@gt`` map of chains, and the target of
    blur-map methods: a defocus-map set too), and the two "estimated-like" maps the corpus stores,
    ``dt_radius_map`` and ``matting_radius_map`` (chains ``@dt`` and ``@matting``).  The quick profile takes ``per_image`` maps of each
    image (evenly spaced over its families)."""

    NAME = "svpsf39"
    VERSION = "1"
    TASK = "restoration"
    EXTRA_TASKS = ("defocus_map",)
    TARGETS = ("sharp", "radius_map", "sigma_map", "dt_radius_map", "matting_radius_map")
    DESCRIPTION = "a split of an svpsf39 corpus built by datagen: spatially varying disk blur, sharp reference, radius map"
    MAP_SCALE = float(SVPSF39_MAP_SCALE)     # stored maps are quarter pixels
    _STORED: ClassVar[dict[str, str]] = {"dt_radius_map": "dt", "matting_radius_map": "matting"}  # target -> field

    def __init__(self, root: str | Path, *, split: str = "test", per_image: int | None = None):
        self.path = str(Path(root).absolute())
        if Path(root).is_dir() or not Path(root).exists():
            raise SourceError(f"svpsf39 root {root} must be a corpus file built by `datagen build` "
                              "(e.g. corpora/demo_svpsf39.h5)")
        f = open_corpus(self.path)
        try:
            if f.attrs.get("generator") != "svpsf39":
                raise SourceError(f"{root}: a {f.attrs.get('generator')!r} corpus, not svpsf39")
            if split not in f or not f[split]["blurred"].shape[0]:
                raise SourceError(f"{root}: no {split!r} samples")
            rows, maps = f[split]["blurred"].shape[:2]
            self.content = str(f.attrs["content_sha256"])
            # a corpus built without one of the estimated-like maps (generator option `estimated`)
            self.TARGETS = tuple(t for t in self.TARGETS if t not in self._STORED or self._STORED[t] in f[split])
        finally:
            f.close()
        step = 1 if not per_image or per_image >= maps else maps / per_image
        picks = sorted({int(i * step) for i in range(per_image or maps)} if per_image else range(maps))
        self.split, self.per_image = split, per_image
        self.pairs = [(r, j) for r in range(rows) for j in picks]

    @property
    def description(self) -> str:
        cap = f", {self.per_image} maps per image" if self.per_image else ""
        return f"{self.DESCRIPTION}; split {self.split}{cap}: {len(self.pairs)} blurred images"

    def keys(self) -> list[str]:
        return [f"{self.split}:{r:05d}:{j:02d}" for r, j in self.pairs]

    def load(self, key: str) -> Sample:
        from datagen.psf import radius_to_sigma

        _, r, j = key.split(":")
        g = _handle(self.path)[self.split]
        row, m = int(r), int(j)
        scale = np.float32(self.MAP_SCALE)
        radius = g["gt"][row, m].astype(np.float32) / scale
        return Sample(key, g["blurred"][row, m].astype(np.float32) / np.float32(255.0),
                      {"sharp": g["sharp"][row].astype(np.float32) / np.float32(255.0), "radius_map": radius,
                       "sigma_map": radius_to_sigma(radius).astype(np.float32),
                       **{t: g[field][row, m].astype(np.float32) / scale for t, field in self._STORED.items()
                          if t in self.TARGETS}},
                      {"family": int(g["family"][row, m])})

    @property
    def dataset_id(self) -> str:
        return hashlib.sha256(f"{self.content} {self.split} per_image={self.per_image}".encode()).hexdigest()[:16]
