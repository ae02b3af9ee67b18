"""A ``torch.utils.data.Dataset`` over one split of a corpus file.

The HDF5 file is opened lazily, once per process (h5py handles do not survive ``fork``
or pickling), so the dataset works with ``DataLoader(num_workers=N)``.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from .corpus import open_corpus

try:  # torch is a dependency of the project, but datagen itself does not need it
    from torch.utils.data import Dataset as _Base
except ImportError:  # pragma: no cover
    _Base = object


class CorpusDataset(_Base):
    """Samples of ``split`` as dicts of numpy arrays (or ``transform(sample)``).

    Parameters
    ----------
    path : path
        A complete corpus file (see ``datagen info``).
    split : {"train", "val", "test"}
    fields : sequence of str, keyword-only
        Fields to return (default: all).
    transform : callable, keyword-only
        Applied to each sample dict.
    """

    def __init__(self, path, split: str = "train", *, fields=None, transform=None):
        with open_corpus(path) as f:
            if split not in f:
                raise KeyError(f"no split {split!r} in {path}")
            available = sorted(f[split])
            self._len = f[split][available[0]].shape[0] if available else 0
        self.path, self.split, self.transform = os.fspath(path), split, transform
        self.fields = list(fields) if fields is not None else available
        unknown = set(self.fields) - set(available)
        if unknown:
            raise KeyError(f"unknown fields {sorted(unknown)}; available: {available}")
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return self._len

    def _group(self) -> h5py.Group:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.split]

    def __getitem__(self, i: int) -> dict:
        if not -self._len <= i < self._len:
            raise IndexError(i)
        i %= self._len
        grp = self._group()
        sample = {name: np.asarray(grp[name][i]) for name in self.fields}
        return self.transform(sample) if self.transform else sample

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state
