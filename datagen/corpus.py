"""Reading a finished corpus: ``info`` (attributes) and ``verify`` (re-hash and consistency)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import FORMAT, FORMAT_VERSION, SPLITS
from .errors import SourceError, VerificationError
from .writer import content_sha256, dataset_digests

_JSON_ATTRS = ("manifest", "fields", "classes", "counts", "versions", "field_digests")


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
        raise SourceError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    if f.attrs.get("format") != FORMAT or not f.attrs.get("complete"):
        f.close()
        raise SourceError(f"{path}: not a complete DefocusBench corpus (missing format/complete attributes); rebuild it")
    return f


def read_info(f: h5py.File) -> dict:
    info = {}
    for k, v in f.attrs.items():
        v = v.decode() if isinstance(v, bytes) else v
        if k in _JSON_ATTRS:
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        info[k] = v
    return info


def info(path: str | os.PathLike) -> dict:
    """Provenance and counts of a corpus: ``dataset_id``, ``content_sha256``, ``counts``, ``manifest``, ``versions``, ..."""
    with open_corpus(path) as f:
        out = read_info(f)
    out["path"] = str(Path(path).absolute())
    out["size_bytes"] = Path(path).stat().st_size
    return out


def verify(path: str | os.PathLike) -> dict:
    """Re-hash every dataset and check structure; raises :class:`VerificationError` on any mismatch."""
    with open_corpus(path) as f:
        meta = read_info(f)
        if meta.get("format_version") != FORMAT_VERSION:
            raise VerificationError(f"{path}: corpus format v{meta.get('format_version')} is hashed differently from "
                                    f"v{FORMAT_VERSION}; rebuild it (datagen build MANIFEST --overwrite) to verify it")
        problems = []
        digests = dataset_digests(f)
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["sources/key"][...]]
        actual = content_sha256(digests, keys)
        if actual != meta["content_sha256"]:
            bad = [k for k, v in digests.items() if meta.get("field_digests", {}).get(k) != v]
            problems.append(f"content_sha256 mismatch (stored {meta['content_sha256'][:12]}, actual {actual[:12]}); "
                            f"changed: {', '.join(bad) or 'source keys'}")
        fields = meta["fields"]
        n_classes = len(meta["classes"])
        splits_of = [s.decode() if isinstance(s, bytes) else s for s in f["sources/split"][...]]
        for split in SPLITS:
            grp = f[split]
            lengths = {name: grp[name].shape[0] for name in fields}
            if len(set(lengths.values())) > 1:
                problems.append(f"{split}: fields have different lengths {lengths}")
                continue
            if lengths and next(iter(lengths.values())) != meta["counts"][split]["samples"]:
                problems.append(f"{split}: {next(iter(lengths.values()))} samples, counts say {meta['counts'][split]['samples']}")
            if "label" in grp and grp["label"].shape[0]:
                labels = grp["label"][...]
                if labels.min() < 0 or labels.max() >= n_classes:
                    problems.append(f"{split}: labels outside 0..{n_classes - 1}")
                elif np.bincount(labels, minlength=n_classes).tolist() != meta["counts"][split]["per_class"]:
                    problems.append(f"{split}: per-class counts differ from the stored counts")
            if grp["source"].shape[0]:
                src = np.unique(grp["source"][...])
                if src.min() < 0 or src.max() >= len(keys):
                    problems.append(f"{split}: source index out of range")
                elif any(splits_of[i] != split for i in src):
                    problems.append(f"{split}: holds samples of images assigned to another split")
        if problems:
            raise VerificationError("; ".join(problems))
    return {"path": str(path), "dataset_id": meta["dataset_id"], "content_sha256": actual, "ok": True}
