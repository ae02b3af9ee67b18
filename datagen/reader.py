"""Reading one split of a corpus for training: a ``torch.utils.data.Dataset`` with a batched path.

Three ways to read, all giving the same values (tests check it):

* one sample at a time, ``ds[i]`` (a dict of numpy arrays; one HDF5 read per field);
* a batch at a time, ``ds.read_batch(indices)`` / ``ds.__getitems__(indices)`` (the batched-fetch
  protocol of ``torch.utils.data.DataLoader``, torch >= 2.0): the indices are sorted and merged
  into contiguous runs, each run is read with one HDF5 slice per field, and the rows are put back
  in the requested order (repeats allowed);
* from memory, ``in_memory=True``: the requested fields of the split are loaded once (for gauss20
  images N x 32 x 32 bytes, i.e. 1 KiB per sample: 1 GiB per million samples; see :attr:`nbytes`).

Random access into an HDF5 file costs a fixed overhead per read, so fast training reads *blocks*:
:class:`BlockShuffleSampler` shuffles blocks of ``block_size`` contiguous rows (and the rows
within each block), seeded and deterministic per epoch; a batch of 256 drawn with blocks of 64
is four contiguous runs, i.e. four HDF5 slices per field.

Dtypes: every field keeps its stored dtype (``image`` uint8: the training code converts), except
``label``, which comes back as int64 (what ``torch.nn.functional.cross_entropy`` expects).

Usage with a ``DataLoader`` (one dict of stacked arrays per batch, turned into tensors without
a copy by :func:`collate_batch`)::

    ds = CorpusDataset(path, "train", fields=["image", "label"], stacked=True)
    sampler = BlockShuffleSampler(len(ds), block_size=64, seed=0)
    loader = DataLoader(ds, batch_size=256, sampler=sampler, collate_fn=collate_batch, num_workers=2)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:      # {"image": uint8 (B, 32, 32), "label": int64 (B,)}
            ...

The HDF5 file is opened lazily, once per process (h5py handles do not survive ``fork`` or
pickling), so the dataset works with ``DataLoader(num_workers=N)``.  Torch is not needed to
import this module (it is only used by :func:`collate_batch` and as base classes when present).
"""
from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterator, Sequence

import h5py
import numpy as np

from .corpus import open_corpus

try:  # torch is a dependency of the project, but datagen itself does not need it
    from torch.utils.data import Dataset as _Base
    from torch.utils.data import Sampler as _SamplerBase
except ImportError:  # pragma: no cover
    _Base = object
    _SamplerBase = object

#: Fields returned with another dtype than the stored one.
OUTPUT_DTYPES = {"label": np.dtype(np.int64)}

#: Two runs of requested rows separated by at most this many unrequested rows are read as one
#: HDF5 slice (reading a few rows too many costs less than another read call).
MAX_GAP = 16


def _runs(rows: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the spans that cover the sorted unique ``rows``, merging runs whose gap
    is at most ``max_gap`` rows."""
    breaks = np.flatnonzero(np.diff(rows) > max_gap + 1) + 1
    starts = rows[np.r_[0, breaks]]
    stops = rows[np.r_[breaks - 1, len(rows) - 1]] + 1
    return starts, stops


class CorpusDataset(_Base):
    """Samples of ``split`` as dicts of numpy arrays, one at a time or one batch at a time.

    Parameters
    ----------
    path : path
        A complete corpus file (see ``datagen info``).
    split : {"train", "val", "test"}
    fields : sequence of str, keyword-only
        Fields to return (default: all).  Read only what the training needs (e.g.
        ``["image", "label"]``): every field costs a read per run.
    transform : callable, keyword-only
        Applied to each sample dict (per-sample paths only; not allowed with ``stacked=True``).
    stacked : bool, keyword-only
        What ``__getitems__`` (the DataLoader's batched fetch) returns: ``False`` (default) a list of
        sample dicts, as torch's protocol says (so the default ``collate_fn`` works; the rows are
        still read in runs); ``True`` one dict of stacked numpy arrays, to be used with
        ``collate_fn=collate_batch`` (or any collate function that takes that dict).
    in_memory : bool, keyword-only
        Load the requested fields of the split once, now, and serve every read from memory
        (:attr:`nbytes` bytes; under ``fork`` the workers share the pages, under ``spawn`` each
        worker gets a copy).  The file is not opened again.

    Notes
    -----
    ``ds[i]`` returns 0-d arrays for scalar fields (``label`` as int64); ``read_batch(idx)[name][j]``
    equals ``ds[idx[j]][name]`` for every ``j``, whatever the order and repeats of ``idx``.
    Negative indices count from the end, as in ``ds[i]``.
    """

    def __init__(self, path, split: str = "train", *, fields=None, transform=None, stacked: bool = False,
                 in_memory: bool = False):
        if stacked and transform is not None:
            raise ValueError("transform applies to one sample; with stacked=True transform the batch dict "
                             "(in collate_fn or the training loop) instead")
        with open_corpus(path) as f:
            if split not in f:
                raise KeyError(f"no split {split!r} in {path}")
            grp = f[split]
            available = sorted(grp)
            self._len = grp[available[0]].shape[0] if available else 0
            self.fields = list(fields) if fields is not None else available
            unknown = set(self.fields) - set(available)
            if unknown:
                raise KeyError(f"unknown fields {sorted(unknown)}; available: {available}")
            self._layout = {name: (grp[name].dtype, grp[name].shape[1:]) for name in self.fields}
            self._arrays = {name: grp[name][...] for name in self.fields} if in_memory else None
        self.path, self.split, self.transform = os.fspath(path), split, transform
        self.stacked, self.in_memory = bool(stacked), bool(in_memory)
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return self._len

    @property
    def nbytes(self) -> int:
        """Bytes held in memory by ``in_memory=True`` (0 otherwise)."""
        return sum(a.nbytes for a in self._arrays.values()) if self._arrays is not None else 0

    def memory_estimate(self) -> int:
        """Bytes that ``in_memory=True`` takes for this split and these fields (N x 32 x 32 for
        gauss20 images, plus the other fields' rows)."""
        return self._len * sum(dt.itemsize * math.prod(shape) for dt, shape in self._layout.values())

    def _group(self) -> h5py.Group:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.split]

    def _index(self, i) -> int:
        i = operator.index(i)
        if not -self._len <= i < self._len:
            raise IndexError(i)
        return i % self._len

    def __getitem__(self, i: int) -> dict:
        i = self._index(i)
        if self._arrays is not None:
            sample = {name: np.array(a[i]) for name, a in self._arrays.items()}
        else:
            grp = self._group()
            sample = {name: np.asarray(grp[name][i]) for name in self.fields}
        sample = {name: v.astype(OUTPUT_DTYPES[name]) if name in OUTPUT_DTYPES else v for name, v in sample.items()}
        return self.transform(sample) if self.transform else sample

    def _rows(self, indices) -> np.ndarray:
        rows = np.asarray(indices)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-d sequence of integers, got {rows.dtype} of shape {rows.shape}")
        rows = rows.astype(np.int64, copy=False)
        if rows.size and (rows.min() < -self._len or rows.max() >= self._len):
            bad = rows[(rows < -self._len) | (rows >= self._len)][0]
            raise IndexError(int(bad))
        return rows % max(self._len, 1)

    def read_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The samples ``indices`` as one dict of stacked arrays (row ``j`` = sample ``indices[j]``),
        read with one HDF5 slice per contiguous run (runs closer than :data:`MAX_GAP` rows merged)."""
        rows = self._rows(indices)
        if self._arrays is not None:
            out = {name: a[rows] for name, a in self._arrays.items()}
        elif rows.size == 0:
            out = {name: np.empty((0, *shape), dt) for name, (dt, shape) in self._layout.items()}
        else:
            uniq, inverse = np.unique(rows, return_inverse=True)
            starts, stops = _runs(uniq, MAX_GAP)
            offsets = np.r_[0, np.cumsum(stops - starts)]
            # where each unique row lies in the concatenated spans
            pos = np.searchsorted(starts, uniq, side="right") - 1
            take = (offsets[pos] + uniq - starts[pos])[inverse]
            grp = self._group()
            out = {}
            for name, (dt, shape) in self._layout.items():
                dset = grp[name]
                if len(starts) == 1:
                    buf = dset[int(starts[0]):int(stops[0])]
                else:
                    buf = np.empty((int(offsets[-1]), *shape), dt)
                    for a, b, o in zip(starts.tolist(), stops.tolist(), offsets.tolist()):
                        buf[o:o + b - a] = dset[a:b]
                out[name] = buf[take]
        for name, dt in OUTPUT_DTYPES.items():
            if name in out:
                out[name] = out[name].astype(dt, copy=False)
        return out

    def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray] | list[dict]:
        """DataLoader batched fetch: one dict of stacked arrays (``stacked=True``) or a list of sample
        dicts, as ``[ds[i] for i in indices]`` gives, read in runs."""
        batch = self.read_batch(indices)
        if self.stacked:
            return batch
        samples = [{name: v[j, ...] for name, v in batch.items()} for j in range(len(indices))]
        return [self.transform(s) for s in samples] if self.transform else samples

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state


def collate_batch(batch):
    """``collate_fn`` for ``CorpusDataset(..., stacked=True)``: the batch dict's numpy arrays as torch
    tensors sharing their memory (no copy); a list of samples goes to torch's ``default_collate``."""
    import torch
    from torch.utils.data import default_collate

    if isinstance(batch, dict):
        return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in batch.items()}
    return default_collate(batch)


class BlockShuffleSampler(_SamplerBase):
    """Indices ``0..n-1`` in blocks of ``block_size`` contiguous rows, the blocks in a random order and
    the rows within each block shuffled; seeded and deterministic per epoch.

    Parameters
    ----------
    n : int or sized
        Number of samples (or a dataset, whose ``len`` is used).
    block_size : int, keyword-only
        Rows per block (the last block may be shorter).  Smaller blocks mix more sources per batch
        (gauss20 rows of one image are contiguous, 20 per tile); larger ones read faster.  With
        ``batch_size = k * block_size`` a batch is about ``k`` runs.
    seed : int, keyword-only
        The order of epoch ``e`` is a function of ``(seed, e)`` only.
    shuffle_within : bool, keyword-only
        Shuffle the rows inside each block too (default).

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``); every epoch yields
    every index exactly once.
    """

    def __init__(self, n, *, block_size: int = 64, seed: int = 0, shuffle_within: bool = True):
        n = n if isinstance(n, (int, np.integer)) else len(n)
        if n < 0 or block_size < 1:
            raise ValueError(f"need n >= 0 and block_size >= 1, got n={n}, block_size={block_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.n, self.block_size, self.seed = int(n), int(block_size), int(seed)
        self.shuffle_within = bool(shuffle_within)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The int64 permutation of ``0..n-1`` for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        n, b = self.n, self.block_size
        full = n // b
        blocks = [np.arange(full * b, dtype=np.int64).reshape(full, b)]
        if self.shuffle_within and full:
            blocks[0] = np.take_along_axis(blocks[0], np.argsort(rng.random((full, b)), axis=1), axis=1)
        tail = np.arange(full * b, n, dtype=np.int64)
        if self.shuffle_within:
            tail = rng.permutation(tail)
        perm = rng.permutation(full + (len(tail) > 0))
        parts = [blocks[0][k] if k < full else tail for k in perm]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.n
