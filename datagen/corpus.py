"""Reading a finished corpus: ``info`` (attributes) and ``verify`` (re-hash and consistency).

A file whose HDF5 structure or attributes cannot be read or do not have the documented
shape (:class:`CorpusMeta`, the ``/sources`` columns, one group per split with every field) is
*corrupt metadata*: a one-line :class:`SourceError` (exit 2), never a traceback.  A readable
corpus whose stored hashes do not match what it holds fails ``verify`` (exit 1).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import h5py
import numpy as np
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from . import FORMAT, FORMAT_VERSION, SPLITS
from .errors import SourceError, VerificationError, describe_validation_error
from .writer import content_sha256, dataset_digests, provenance_sha256

_JSON_ATTRS = ("manifest", "fields", "classes", "counts", "versions", "field_digests")

#: What the HDF5 library and h5py raise on damaged files (bad object headers, heaps, B-trees,
#: undecodable names or strings).
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)

#: Columns of ``/sources`` that ``verify`` reads: image key, split, SHA-256 of the source file,
#: sample count.
SOURCE_COLUMNS = ("key", "split", "sha256", "samples")


_Hex16 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
_Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Counts(BaseModel):
    model_config = ConfigDict(strict=True)
    images: int
    samples: int
    per_class: list[int]


class _Class(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    label: int


class CorpusMeta(BaseModel):
    """The root attributes of a corpus, as :func:`read_info` decodes them (JSON ones parsed)."""

    model_config = ConfigDict(strict=True, extra="allow")
    format: str
    format_version: int
    complete: bool
    name: str
    generator: str
    generator_version: str
    dataset_id: _Hex16
    content_sha256: _Hex64
    provenance_sha256: _Hex64 | None = None     # from format v3 on
    manifest: dict
    fields: dict[str, dict]
    classes: list[_Class]
    counts: dict[Literal["train", "val", "test"], _Counts]
    versions: dict
    field_digests: dict[str, str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> CorpusMeta:
        if set(self.counts) != set(SPLITS):
            raise ValueError(f"counts must have the splits {', '.join(SPLITS)}")
        if [c.label for c in self.classes] != list(range(len(self.classes))):
            raise ValueError("classes must be labelled 0..K-1 in order")
        if any(len(c.per_class) != len(self.classes) for c in self.counts.values()):
            raise ValueError("counts.*.per_class must have one entry per class")
        return self


def _first_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return (str(text).splitlines() or [type(err).__name__])[0]


def _corrupt(path: str | os.PathLike, what: str) -> SourceError:
    return SourceError(f"{path}: corrupt corpus metadata ({what}); rebuild it or restore a copy")


@contextmanager
def _metadata(path: str | os.PathLike) -> Iterator[None]:
    """Turn HDF5 errors while reading attributes or structure into one :class:`SourceError` line."""
    try:
        yield
    except _H5_ERRORS as err:
        raise _corrupt(path, _first_line(err)) from None


def open_corpus(path: str | os.PathLike) -> h5py.File:
    """Open a *complete* corpus read-only, or raise a one-line :class:`SourceError`."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file; build one with `datagen build MANIFEST`")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not a corpus file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise SourceError(f"{path}: not a readable HDF5 file ({_first_line(err)})") from None
    try:
        with _metadata(path):
            ok = f.attrs.get("format") == FORMAT and bool(f.attrs.get("complete"))
    except BaseException:
        f.close()
        raise
    if not ok:
        f.close()
        raise SourceError(f"{path}: not a complete DefocusBench corpus (missing format/complete attributes); rebuild it")
    return f


def read_info(f: h5py.File) -> dict:
    """The root attributes of an open corpus (JSON ones decoded), checked against :class:`CorpusMeta`;
    one-line :class:`SourceError` if they cannot be read or have another shape."""
    info = {}
    with _metadata(f.filename):
        for k, v in f.attrs.items():
            v = v.decode() if isinstance(v, bytes) else v
            if isinstance(v, str):
                v.encode()   # undecodable bytes come back as surrogates: UnicodeEncodeError
            if k in _JSON_ATTRS:
                try:
                    v = json.loads(v)
                except (TypeError, ValueError):
                    raise _corrupt(f.filename, f"attribute {k!r} is not valid JSON") from None
            elif isinstance(v, np.generic):
                v = v.item()
            info[k] = v
    try:
        CorpusMeta.model_validate(info)
    except ValidationError as err:
        raise _corrupt(f.filename, describe_validation_error(err)) from None
    return info


def info(path: str | os.PathLike) -> dict:
    """Provenance and counts of a corpus: ``dataset_id``, ``content_sha256``, ``counts``, ``manifest``,
    ``versions``, ..."""
    with open_corpus(path) as f:
        out = read_info(f)
    out["path"] = str(Path(path).absolute())
    out["size_bytes"] = Path(path).stat().st_size
    return out


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_structure(f: h5py.File, meta: dict) -> dict[str, list]:
    """Check the layout of a corpus (``/sources`` columns of one length, a group per split holding
    every field) and return the :data:`SOURCE_COLUMNS` of ``/sources``.  Raises ``_H5_ERRORS`` or
    :class:`SourceError` (within :func:`_metadata`)."""
    table = f.get("sources")
    if not isinstance(table, h5py.Group):
        raise _corrupt(f.filename, "no /sources table")
    missing = [c for c in SOURCE_COLUMNS if not isinstance(table.get(c), h5py.Dataset)]
    if missing:
        raise _corrupt(f.filename, f"/sources lacks {', '.join(missing)}")
    cols = {c: table[c][...] for c in SOURCE_COLUMNS}
    if len({v.shape for v in cols.values()}) != 1 or cols["key"].ndim != 1 or cols["samples"].dtype.kind not in "iu":
        raise _corrupt(f.filename, "/sources columns of different shapes or types")
    out = {c: _text(cols[c]) for c in ("key", "split", "sha256")} | {"samples": cols["samples"].tolist()}
    for split in SPLITS:
        grp = f.get(split)
        if not isinstance(grp, h5py.Group):
            raise _corrupt(f.filename, f"no /{split} group")
        names = list(grp)
        lacking = [name for name in meta["fields"] if not isinstance(grp.get(name), h5py.Dataset)]
        if lacking or not all(isinstance(n, str) for n in names):
            raise _corrupt(f.filename, f"/{split} lacks {', '.join(lacking) or 'readable names'}")
        for name in names:   # reads every object header
            ds = grp[name]
            if not isinstance(ds, h5py.Dataset) or ds.ndim < 1 or (
                    name in meta["fields"] and ds.dtype != np.dtype(meta["fields"][name].get("dtype"))):
                raise _corrupt(f.filename, f"/{split}/{name} is not a dataset of the stored field's type")
    return out


def _provenance_problems(f: h5py.File, meta: dict, table: dict[str, list]) -> list[str]:
    """Mismatches of the stored provenance hash and dataset id against what the file holds."""
    from .plan import stored_dataset_id  # the one id definition, shared with `datagen build`

    problems = []
    stored = meta.get("provenance_sha256")
    with _metadata(f.filename):
        actual = provenance_sha256(f)
    if stored is None:
        problems.append("provenance_sha256 attribute is missing")
    elif stored != actual:
        problems.append(f"provenance_sha256 mismatch (stored {stored[:12]}, actual {actual[:12]}): "
                        "attributes or /sources were changed")
    recomputed = stored_dataset_id(meta["manifest"], zip(table["key"], table["split"], table["sha256"]))
    if recomputed != meta["dataset_id"]:
        problems.append(f"dataset_id mismatch (stored {meta['dataset_id']}, "
                        f"the manifest and /sources give {recomputed})")
    return problems


def verify(path: str | os.PathLike) -> dict:
    """Re-hash every dataset, the provenance attributes and the ``/sources`` table, recompute the
    dataset id and check the structure; raises :class:`VerificationError` on any mismatch and a
    one-line :class:`SourceError` on unreadable or corrupt metadata."""
    with open_corpus(path) as f:
        meta = read_info(f)
        if meta.get("format_version") != FORMAT_VERSION:
            raise VerificationError(f"{path}: corpus format v{meta.get('format_version')} is hashed differently from "
                                    f"v{FORMAT_VERSION}; rebuild it (datagen build MANIFEST --overwrite) to verify it")
        with _metadata(path):
            table = _read_structure(f, meta)
        problems = _provenance_problems(f, meta, table)
        try:
            problems += _content_problems(f, meta, table)
        except OSError as err:   # damaged sample data (e.g. a compressed chunk that no longer decodes)
            problems.append(f"cannot read the samples ({_first_line(err)})")
        if problems:
            raise VerificationError("; ".join(problems))
    return {"path": str(path), "dataset_id": meta["dataset_id"], "content_sha256": meta["content_sha256"], "ok": True}


def _content_problems(f: h5py.File, meta: dict, table: dict[str, list]) -> list[str]:
    """Mismatches of the samples against ``content_sha256``, the counts, labels and source rows."""
    problems = []
    keys, splits_of = table["key"], table["split"]
    digests = dataset_digests(f)
    actual = content_sha256(digests, keys)
    if actual != meta["content_sha256"]:
        bad = [k for k, v in digests.items() if meta["field_digests"].get(k) != v]
        problems.append(f"content_sha256 mismatch (stored {meta['content_sha256'][:12]}, actual {actual[:12]}); "
                        f"changed: {', '.join(bad) or 'source keys'}")
    fields = meta["fields"]
    n_classes = len(meta["classes"])
    for split in SPLITS:
        grp = f[split]
        lengths = {name: grp[name].shape[0] for name in fields}
        if len(set(lengths.values())) > 1:
            problems.append(f"{split}: fields have different lengths {lengths}")
            continue
        if lengths and next(iter(lengths.values())) != meta["counts"][split]["samples"]:
            problems.append(f"{split}: {next(iter(lengths.values()))} samples, "
                            f"counts say {meta['counts'][split]['samples']}")
        if "label" in grp and grp["label"].shape[0]:
            labels = grp["label"][...]
            if labels.min() < 0 or labels.max() >= n_classes:
                problems.append(f"{split}: labels outside 0..{n_classes - 1}")
            elif np.bincount(labels, minlength=n_classes).tolist() != meta["counts"][split]["per_class"]:
                problems.append(f"{split}: per-class counts differ from the stored counts")
        if "source" in grp and grp["source"].shape[0]:
            src = np.unique(grp["source"][...])
            if src.min() < 0 or src.max() >= len(keys):
                problems.append(f"{split}: source index out of range")
            elif any(splits_of[i] != split for i in src):
                problems.append(f"{split}: holds samples of images assigned to another split")
    return problems
