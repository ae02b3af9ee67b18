"""Evaluation datasets by name: real benchmarks read from a user's copy (``root``), synthetic
ones made from built-in photos (no root).  ``open_dataset(name, root=..., profile=...)``."""
from __future__ import annotations

from pathlib import Path

from datagen.errors import SourceError, UserError, unknown_name

from .base import Dataset, Sample
from .corpus import Gauss20Split, SVPSF39Split
from .cuhk import CUHK
from .photos import CUHKPhotos, Kodak24
from .rtf import RTF, RTFFull
from .synthetic import SynthDefocus, SynthDetection, SynthEnhance

__all__ = ["DATASETS", "Dataset", "Sample", "dataset_table", "open_dataset"]

DATASETS: dict[str, type[Dataset]] = {cls.NAME: cls for cls in (CUHK, RTF, RTFFull, Gauss20Split, SVPSF39Split, Kodak24,
                                                                 CUHKPhotos, SynthDetection, SynthDefocus, SynthEnhance)}
NEEDS_ROOT = {"cuhk", "rtf", "rtf_full", "gauss20", "svpsf39", "kodak24", "cuhk_photos"}
#: Options of real datasets per profile (the quick profile keeps corpus splits small).
PROFILE_OPTIONS = {"quick": {"gauss20": {"per_class": 2}, "svpsf39": {"per_image": 2}}, "full": {}}
#: Built-in sets per profile: quick = tiny (CI, the README's first command); full = larger photos.
PROFILE_SYNTHETIC = {"quick": {"size": 160, "limit": 4}, "full": {"size": 512, "limit": None}}


def dataset_table() -> list[dict]:
    return [{"name": n, "task": c.TASK, "tasks": list(c.tasks()), "targets": list(c.TARGETS), "version": c.VERSION,
             "needs_root": n in NEEDS_ROOT, "description": c.DESCRIPTION} for n, c in sorted(DATASETS.items())]


def open_dataset(name: str, *, root: str | Path | None = None, profile: str = "quick", **options) -> Dataset:
    """Instantiate dataset ``name``; real datasets need ``root``; raises :class:`UserError` (one line)."""
    if name not in DATASETS:
        raise UserError(unknown_name("dataset", name, DATASETS))
    cls = DATASETS[name]
    if name in NEEDS_ROOT:
        if root is None:
            raise UserError(f"dataset {name} needs its folder: pass --root {name}=DIR")
        return cls(root, **{**PROFILE_OPTIONS[profile].get(name, {}), **options})
    if root is not None:
        raise UserError(f"dataset {name} is built in and takes no --root")
    kw = {**PROFILE_SYNTHETIC[profile], **options}
    try:
        return cls(**kw)
    except ValueError as err:
        raise SourceError(f"dataset {name}: {err}") from None
