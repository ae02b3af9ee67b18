"""Corpus splits as Hugging Face ``datasets``: the supported way to use a corpus there.

``datasets.load_dataset("hdf5", data_files="corpus.h5")`` does not know our layout: it reads every
group of the file as columns of *one* table whose rows run along the first axis of all datasets,
while a corpus holds one group per split (``/train/image``, ``/test/image``, ...) and a ``/sources``
table of another length.  It returns the wrong rows, or fails.  Use instead::

    from datagen.hf import to_hf_dataset, to_hf_dataset_dict
    train = to_hf_dataset("corpora/demo_gauss20.h5", split="train")      # datasets.Dataset
    train.with_format("torch")[0]      # {"image": uint8 (32, 32), "label": int64 (), ...}
    splits = to_hf_dataset_dict("corpora/demo_gauss20.h5")               # DatasetDict: train, val, test

Rows and columns: row ``i`` is sample ``i`` of ``/<split>/*`` (the order of :class:`datagen.reader.CorpusDataset`);
one column per field (``source``, the sample's row of ``/sources``, included); values exactly as stored.

Features, from the stored dtypes and shapes: a scalar field is ``Value(dtype)``, except ``label`` of a
corpus with classes, a ``ClassLabel`` named by the classes' parameters (``"sigma=2.0"``); a field of one
dimension ``List(Value(dtype), length=n)``; of 2 to 5 dimensions ``Array2D`` .. ``Array5D``.
``images=["image"]`` stores the named uint8 fields of shape ``(H, W)`` or ``(H, W, 3)`` as ``Image()``
(PNG: lossless, and shown by the Hub's dataset viewer) instead of arrays.  The field docs, the dataset
id and the content hash are in ``ds.info.description``.

The HDF5 file is read a block of rows at a time (about 64 MiB), never whole.  ``streaming=False``
(default) writes an Arrow cache under ``cache_dir`` (the ``datasets`` cache by default), keyed by the
corpus's ``content_sha256``, the split and the options, so a second call reuses it and a rebuilt
corpus never meets a stale cache; ``streaming=True`` returns an ``IterableDataset`` that reads the file
as it is iterated and writes no data (``datasets`` leaves lock files in its cache).  Works offline (``HF_DATASETS_OFFLINE=1``): nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

from . import SPLITS
from .corpus import open_corpus, read_info
from .errors import UserError

#: Bytes read from the HDF5 file (and written to Arrow) per block of rows.
BLOCK_BYTES = 64 << 20

_ARRAYS = {2: "Array2D", 3: "Array3D", 4: "Array4D", 5: "Array5D"}


def _datasets():
    try:
        import datasets
    except ImportError:  # pragma: no cover - an optional dependency
        raise UserError("the Hugging Face loader needs the `datasets` package: pip install datasets") from None
    return datasets


def _class_names(classes: list[dict]) -> list[str]:
    return [", ".join(f"{k}={v}" for k, v in c.items() if k != "label") or str(c["label"]) for c in classes]


def _feature(name: str, dtype: np.dtype, shape: tuple[int, ...], *, classes: list[dict], image: bool):
    ds = _datasets()
    if image:
        if dtype != np.uint8 or not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise UserError(f"images=: field {name!r} is {dtype}{list(shape)}, not a uint8 (H, W) or (H, W, 3) image")
        return ds.Image()
    if not shape:
        return ds.ClassLabel(names=_class_names(classes)) if name == "label" and classes else ds.Value(dtype.name)
    if len(shape) == 1:
        return ds.List(ds.Value(dtype.name), length=shape[0])
    if len(shape) not in _ARRAYS:
        raise UserError(f"field {name!r} has {len(shape)} dimensions per sample; Hugging Face arrays hold at most 5")
    return getattr(ds, _ARRAYS[len(shape)])(shape=tuple(shape), dtype=dtype.name)


class _Split:
    """What one split needs: its fields' layout and features, and the cache key."""

    def __init__(self, path, split: str, fields: Sequence[str] | None, images: Sequence[str]):
        if split not in SPLITS:
            raise UserError(f"split {split!r} is unknown; choose {', '.join(SPLITS)}")
        with open_corpus(path) as f:
            meta = read_info(f)
            grp = f[split]
            available = sorted(grp)
            self.fields = list(fields) if fields is not None else available
            unknown = sorted((set(self.fields) | set(images)) - set(available))
            if unknown:
                raise UserError(f"{path}: no field {', '.join(map(repr, unknown))}; fields: {', '.join(available)}")
            layout = {n: (grp[n].dtype, grp[n].shape[1:]) for n in self.fields}
            self.rows = grp[available[0]].shape[0] if available else 0
        self.path, self.split = os.fspath(path), split
        self.features = _datasets().Features({n: _feature(n, dt, shape, classes=meta["classes"], image=n in images)
                                              for n, (dt, shape) in layout.items()})
        row_bytes = sum(dt.itemsize * int(np.prod(shape, dtype=np.int64)) for dt, shape in layout.values())
        self.block = max(1, min(1000, BLOCK_BYTES // max(row_bytes, 1)))
        docs = {n: meta["fields"].get(n, {}).get("doc", "") for n in self.fields}
        self.description = (f"{meta['name']} ({meta['generator']} v{meta['generator_version']}), split {split}: "
                            f"dataset_id {meta['dataset_id']}, content_sha256 {meta['content_sha256']}. Fields: "
                            + "; ".join(f"{n}: {d}" for n, d in docs.items()))
        key = {"format": "defocusbench-hf v1", "content": meta["content_sha256"], "split": split,
               "fields": self.fields, "features": self.features.to_dict()}
        self.fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def kwargs(self) -> dict:
        # a tuple: ``datasets`` splits the lists of gen_kwargs into shards, one call per item
        return {"path": self.path, "split": self.split, "fields": tuple(self.fields), "block": self.block}


def _rows(path: str, split: str, fields: tuple[str, ...], block: int) -> Iterator[dict]:
    """The samples of ``split`` as dicts of numpy arrays, read ``block`` rows at a time."""
    with open_corpus(path) as f:
        grp = f[split]
        n = grp[fields[0]].shape[0] if fields else 0
        for start in range(0, n, block):
            cols = {name: grp[name][start:start + block] for name in fields}
            for j in range(len(cols[fields[0]])):
                yield {name: col[j] for name, col in cols.items()}


def to_hf_dataset(path: str | os.PathLike, *, split: str = "train", fields: Sequence[str] | None = None,
                  images: Sequence[str] = (), streaming: bool = False, cache_dir: str | os.PathLike | None = None):
    """Split ``split`` of the corpus at ``path`` as a ``datasets.Dataset`` (``IterableDataset`` when
    ``streaming``), one row per sample, with the ``fields`` asked for (default: all); see the module
    docstring for features, ``images`` and caching.  Bad input is a one-line :class:`UserError`."""
    ds = _datasets()
    s = _Split(path, split, fields, images)
    if streaming:
        out = ds.IterableDataset.from_generator(_rows, features=s.features, gen_kwargs=s.kwargs())
    elif s.rows == 0:     # a generator of no rows gives no Arrow file to read back
        out = ds.Dataset.from_dict({n: [] for n in s.fields}, features=s.features, split=split)
    else:
        out = ds.Dataset.from_generator(_rows, features=s.features, gen_kwargs=s.kwargs(), split=split,
                                        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                                        fingerprint=s.fingerprint, writer_batch_size=s.block)
    out.info.description = s.description
    return out


def to_hf_dataset_dict(path: str | os.PathLike, *, fields: Sequence[str] | None = None, images: Sequence[str] = (),
                       streaming: bool = False, cache_dir: str | os.PathLike | None = None):
    """Every split of the corpus (``train``, ``val``, ``test``; empty ones included) as a
    ``datasets.DatasetDict`` (``IterableDatasetDict`` when ``streaming``) of :func:`to_hf_dataset`."""
    ds = _datasets()
    cls = ds.IterableDatasetDict if streaming else ds.DatasetDict
    return cls({s: to_hf_dataset(path, split=s, fields=fields, images=images, streaming=streaming,
                                 cache_dir=cache_dir) for s in SPLITS})
