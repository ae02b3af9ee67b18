"""Evaluation datasets by name: real benchmarks read from a user's copy (``root``), synthetic
ones made from built-in photos (no root).  ``open_dataset(name, root=..., profile=...)``.

Datasets are a lazy registry like methods and metrics (:mod:`datagen.registry`): ``name ->
"module:Class"``, imported only when used.  Third-party datasets (:class:`Dataset` subclasses)
register through the ``defocusbench.datasets`` entry-point group, through the environment variable
``DEFOCUSBENCH_DATASETS="name=module:Class,..."``, or, in a notebook, with
``register_dataset(MyDataset)`` (under ``MyDataset.NAME``, for this process).

A dataset *needs a root* (``--root NAME=DIR``) exactly when its constructor takes a ``root``
argument (:func:`needs_root`): the constructor is the one place that says so.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

from datagen.errors import SourceError, UserError
from datagen.registry import Registry

from .base import Dataset, Sample

__all__ = ["DATASETS", "Dataset", "Sample", "dataset_table", "get_dataset", "list_datasets", "needs_root",
           "open_dataset", "register_dataset"]

_BUILTIN = {
    "cuhk": "bench.datasets.cuhk:CUHK",
    "rtf": "bench.datasets.rtf:RTF",
    "rtf_full": "bench.datasets.rtf:RTFFull",
    "gauss20": "bench.datasets.corpus:Gauss20Split",
    "svpsf39": "bench.datasets.corpus:SVPSF39Split",
    "kodak24": "bench.datasets.photos:Kodak24",
    "cuhk_photos": "bench.datasets.photos:CUHKPhotos",
    "synth_detection": "bench.datasets.synthetic:SynthDetection",
    "synth_defocus": "bench.datasets.synthetic:SynthDefocus",
    "synth_enhance": "bench.datasets.synthetic:SynthEnhance",
}

_REGISTRY = Registry("dataset", _BUILTIN, group="defocusbench.datasets", env_var="DEFOCUSBENCH_DATASETS",
                     base=Dataset)

#: ``name -> dataset class`` of every registered dataset (a read-only view: ``name in DATASETS``
#: and iteration read names only; ``DATASETS[name]`` imports that one class).
DATASETS: Mapping[str, type[Dataset]] = _REGISTRY.mapping()
#: Options of real datasets per profile (the quick profile keeps corpus splits small).
PROFILE_OPTIONS = {"quick": {"gauss20": {"per_class": 2}, "svpsf39": {"per_image": 2}}, "full": {}}
#: Options of datasets without a root per profile: quick = tiny (CI, the README's first command);
#: full = larger photos.  A dataset gets those its constructor takes.  Quick keeps all 6 default
#: photos: with fewer paired samples no exact test can call a change significant at 5 %
#: (:func:`bench.stats.min_decidable_n`), and the nightly could not flag a metric regression.
PROFILE_SYNTHETIC = {"quick": {"size": 160, "limit": 6}, "full": {"size": 512, "limit": None}}


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names, sorted; ``pattern`` is a glob or comma-separated globs."""
    return _REGISTRY.names(pattern)


def get_dataset(name: str) -> type[Dataset]:
    """The dataset class registered as ``name``; ``KeyError`` (one line, did-you-mean) otherwise."""
    return _REGISTRY.get(name)


def register_dataset(cls: type[Dataset], *, replace: bool = False) -> type[Dataset]:
    """Register dataset class ``cls`` under ``cls.NAME`` in this process (a notebook): it then works
    wherever a built-in does (``open_dataset``, ``bench.harness.run(datasets=[...])``, ``dataset_table``).
    Returns ``cls`` (usable as a decorator).  A taken name is a one-line :class:`UserError` unless
    ``replace=True``."""
    return _REGISTRY.register(cls, replace=replace)


def _parameters(cls: type[Dataset]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(cls).parameters


def needs_root(name: str | type[Dataset]) -> bool:
    """Whether dataset ``name`` (or class) reads a folder or file of the user's: its constructor takes ``root``."""
    return "root" in _parameters(get_dataset(name) if isinstance(name, str) else name)


def dataset_table() -> list[dict]:
    """One row per registered dataset (``bench list datasets``); a plug-in that cannot be imported
    gets a row that says why, instead of breaking the list."""
    rows = []
    for n in list_datasets():
        try:
            c = get_dataset(n)
            rows.append({"name": n, "task": c.TASK, "tasks": list(c.tasks()), "targets": list(c.TARGETS),
                         "version": c.VERSION, "needs_root": needs_root(c), "description": c.DESCRIPTION})
        except Exception as err:  # noqa: BLE001 - listing must not die on one broken plug-in
            why = " ".join(str(err).split())[:200] or type(err).__name__
            rows.append({"name": n, "task": "?", "tasks": [], "targets": [], "version": "?", "needs_root": False,
                         "description": f"cannot be loaded: {why}"})
    return rows


def open_dataset(name: str, *, root: str | Path | None = None, profile: str = "quick", **options) -> Dataset:
    """Instantiate dataset ``name``; real datasets need ``root``; raises :class:`UserError` (one line)."""
    try:
        cls = get_dataset(name)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    if needs_root(cls):
        if root is None:
            raise UserError(f"dataset {name} needs its folder: pass --root {name}=DIR")
        return cls(root, **{**PROFILE_OPTIONS[profile].get(name, {}), **options})
    if root is not None:
        raise UserError(f"dataset {name} is built in and takes no --root")
    params = _parameters(cls)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in PROFILE_SYNTHETIC[profile].items() if takes_any or k in params} | options
    try:
        return cls(**kw)
    except ValueError as err:
        raise SourceError(f"dataset {name}: {err}") from None
