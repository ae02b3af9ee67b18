"""What the training loop (:mod:`methods.training`) trains on: a corpus split as numbered samples,
turned into batches, and the measures of a batch's output.

Two kinds, chosen by the recipe (``Recipe.data``, :data:`KINDS`):

* :class:`LabelledSamples` (classification, the default): one stored sample = one training sample;
  the recipe's two ``fields`` (input, class label) are held in memory; ``recipe.batch`` turns
  stored arrays into network input and target; measure: accuracy (``acc``).
* :class:`RestorationPairs` (non-blind deblurring, ``svpsf39`` corpora): a stored row holds one sharp
  image and ``M`` blurred versions with their maps; training sample ``k`` is the triple
  ``(row, map j, map field f)`` = ``k // (M F), (k // F) % M, k % F`` over the ``F`` map fields the
  hyper-parameter ``maps`` names (``"gt"``, or ``"dt,matting"``: half the samples see each
  propagated map, as the paper's batches do).  Input ``(blurred RGB, radius / 6)``, target the sharp
  image, all ``(B, C, H, W)`` float32 in [0, 1]; training batches are random ``crop`` x ``crop``
  windows (positions from ``default_rng([seed, epoch, step])``: a resumed run draws the same),
  evaluation uses whole images.  Measures: SSIM (``ssim``, the loss's definition) and PSNR (``psnr``,
  dB, peak 1).

An adapter: ``len()``; ``batch(idx, train=, seed=, epoch=, step=) -> (x, y)`` (``x`` a tensor or a
tuple of the network's inputs); ``measure(out, y) -> {name: sum over the batch}``; ``METRICS`` (the
first selects the best epoch, higher is better); ``nbytes`` (memory held).

Imports: torch, numpy, h5py and the package itself (what a bare GPU machine needs).
"""
from __future__ import annotations

import os

import h5py
import numpy as np
import torch

from datagen.generators.svpsf39 import MAP_SCALE as SVPSF39_MAP_SCALE

from .nets.svbr_net import MAP_SCALE as SVBR_MAP_SCALE

__all__ = ["KINDS", "LabelledSamples", "RestorationPairs", "adapter", "load_split"]


def load_split(path: str | os.PathLike, split: str, fields, *, rows: np.ndarray | None = None,
               row_by_row: bool = False) -> list[np.ndarray]:
    """The arrays ``fields`` of ``split`` (all rows, or the sorted ``rows``), in memory.  ``rows`` are
    cut from the whole split read at once (fast for many small rows), or with ``row_by_row`` read one
    at a time (for a few large rows of a big split)."""
    with h5py.File(path, "r") as f:
        grp = f[split]
        if rows is not None and row_by_row:
            return [np.stack([grp[name][int(r)] for r in rows]) if len(rows) else grp[name][:0] for name in fields]
        arrays = [grp[name][...] for name in fields]
    return arrays if rows is None else [a[rows] for a in arrays]


class LabelledSamples:
    """Classification samples (see the module docstring)."""

    METRICS = ("acc",)
    #: Samples per evaluation batch.
    EVAL_BATCH = 512

    def __init__(self, recipe, path, split: str, *, samples: np.ndarray | None, device, hp: dict):
        self.recipe = recipe
        x, y = load_split(path, split, recipe.fields, rows=samples)
        self.nbytes = x.nbytes + y.nbytes
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(device)

    @staticmethod
    def count(recipe, path, split: str, hp: dict) -> int:
        with h5py.File(path, "r") as f:
            return int(f[split][recipe.fields[0]].shape[0]) if split in f else 0

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: np.ndarray, *, train: bool, seed: int, epoch: int, step: int):
        i = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.x.device)
        return self.recipe.batch(self.x.index_select(0, i), self.y.index_select(0, i))

    def measure(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return {"acc": float((out.argmax(1) == y).sum())}


class RestorationPairs:
    """Deblurring samples of an ``svpsf39`` corpus (see the module docstring)."""

    METRICS = ("ssim", "psnr")
    #: Whole images per evaluation batch.
    EVAL_BATCH = 4
    #: Stored maps are radii in quarter pixels (the corpus's scale); the network reads radius / 6 (its own).
    MAP_SCALE = float(SVPSF39_MAP_SCALE)
    RADIUS_NORM = float(SVBR_MAP_SCALE)

    def __init__(self, recipe, path, split: str, *, samples: np.ndarray | None, device, hp: dict):
        self.maps = self.map_fields(hp)
        self.crop = hp.get("crop")
        self.device = device
        with h5py.File(path, "r") as f:
            self.per_row = int(f[split]["blurred"].shape[1]) if split in f else 0
            n_rows = int(f[split]["blurred"].shape[0]) if split in f else 0
        per_row = self.per_row * len(self.maps)
        all_samples = np.arange(n_rows * per_row) if samples is None else np.asarray(samples, dtype=np.int64)
        rows = np.unique(all_samples // max(per_row, 1))
        arrays = load_split(path, split, ("sharp", "blurred", *self.maps), rows=None if samples is None else rows,
                            row_by_row=True)
        self.sharp, self.blurred, *maps = arrays
        self.map_arrays = maps
        self.nbytes = sum(a.nbytes for a in arrays)
        # sample k of this adapter -> (row in memory, map j, map field f)
        self.index = np.stack([np.searchsorted(rows, all_samples // max(per_row, 1)),
                               (all_samples // len(self.maps)) % max(self.per_row, 1),
                               all_samples % len(self.maps)], axis=1).astype(np.int64)

    @staticmethod
    def map_fields(hp: dict) -> tuple[str, ...]:
        maps = tuple(m.strip() for m in str(hp.get("maps", "gt")).split(",") if m.strip())
        if not maps or any(m not in ("gt", "dt", "matting") for m in maps):
            raise KeyError(f"maps must be gt or a comma-separated choice of dt, matting; got {hp.get('maps')!r}")
        return maps

    @classmethod
    def count(cls, recipe, path, split: str, hp: dict) -> int:
        with h5py.File(path, "r") as f:
            if split not in f or "blurred" not in f[split]:
                return 0
            rows, per_row = f[split]["blurred"].shape[:2]
            missing = [m for m in cls.map_fields(hp) if m not in f[split]]
        if missing:
            raise KeyError(f"the corpus has no {', '.join(missing)} maps (its generator's `estimated` option)")
        return int(rows) * int(per_row) * len(cls.map_fields(hp))

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, idx: np.ndarray, *, train: bool, seed: int, epoch: int, step: int):
        sel = self.index[np.asarray(idx, dtype=np.int64)]
        h, w = self.sharp.shape[1:3]
        c = self.crop if (train and self.crop) else None
        if c is not None:
            c = min(int(c), h, w)
            rng = np.random.default_rng([int(seed), int(epoch), int(step)])
            ys, xs = rng.integers(0, h - c + 1, len(sel)), rng.integers(0, w - c + 1, len(sel))
        else:
            ys, xs, c = np.zeros(len(sel), np.int64), np.zeros(len(sel), np.int64), None
        hh, ww = (c, c) if c else (h, w)
        blurred = np.empty((len(sel), hh, ww, 3), np.uint8)
        sharp = np.empty((len(sel), hh, ww, 3), np.uint8)
        radius = np.empty((len(sel), hh, ww), np.uint8)
        for k, ((r, j, f), y0, x0) in enumerate(zip(sel, ys, xs, strict=True)):
            win = (slice(y0, y0 + hh), slice(x0, x0 + ww))
            blurred[k] = self.blurred[r, j][win]
            sharp[k] = self.sharp[r][win]
            radius[k] = self.map_arrays[f][r, j][win]

        def rgb(a):
            return torch.from_numpy(a).to(self.device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()

        m = torch.from_numpy(radius).to(self.device).float().div_(self.MAP_SCALE * self.RADIUS_NORM)[:, None]
        return (rgb(blurred), m), rgb(sharp)

    def measure(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        from .nets.ssim import ssim

        mse = ((out.float() - y.float()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
        return {"ssim": float(ssim(out.float(), y.float()).sum()),
                "psnr": float((10.0 * torch.log10(1.0 / mse)).sum())}


#: ``Recipe.data`` -> its adapter class.
KINDS = {"labelled": LabelledSamples, "restoration": RestorationPairs}


def adapter(recipe) -> type:
    """The adapter class of ``recipe`` (``KeyError`` for an unknown ``Recipe.data``)."""
    return KINDS[recipe.data]
