"""Training-input throughput of ``datagen.reader`` on a gauss20 corpus, in samples/s.

By default the corpus is ``manifests/div2k_valid_gauss20.yaml`` built into a temporary folder from
the six DIV2K PNGs of ``../shared/data/div2k_valid_hr`` (11,300 samples in split ``test``, ~7 s);
``--corpus PATH [--split S]`` reads an existing corpus instead.  Fields ``image`` + ``label``, the
ones training reads.  Each mode runs for about ``--seconds`` (whole batches), in this process:

* ``per-item``: ``ds[i]`` in a shuffled order (what ``DataLoader`` did before ``__getitems__``);
* ``per-item loader``: ``DataLoader(ds, batch_size=B, shuffle=True)`` on a dataset without the
  batched fetch (``__getitems__`` hidden), default collate: the old path end to end;
* ``batched``: ``read_batch`` over :class:`BlockShuffleSampler` batches (``--batch`` rows, blocks of
  ``--block`` rows: ``batch / block`` HDF5 slices per field);
* ``batched loader``: the same through ``DataLoader(stacked=True, collate_fn=collate_batch)``,
  tensors out, ``num_workers=0``;
* ``list loader``: ``stacked=False`` (a list of samples per batch, torch's default collate);
* ``batched, random``: ``read_batch`` of uniformly random indices (block size 1: no contiguity);
* ``in-memory``: ``in_memory=True`` (load time and bytes printed), then ``read_batch`` over the
  block-shuffle batches.

    .venv/bin/python benchmarks/bench_reader.py                      # builds the 6-image corpus
    .venv/bin/python benchmarks/bench_reader.py --corpus corpora/coco_imagenet_gauss20.h5 --split train

Measured on 2 shared cores with three other jobs running (load 2-3), the 6-image corpus (11,300
samples, page cache warm), batch 256, blocks of 64 (32 gives the same within noise), 3 runs:

    per-item                  1.8-3.1 k samples/s
    per-item loader           2.2-3.1 k
    batched                   265-420 k     (~100x per-item)
    batched loader            200-263 k     (tensors out, DataLoader overhead included)
    list loader               49-87 k       (torch's default collate of 256 sample dicts dominates)
    batched, random           36-48 k       (256 scattered rows: still ~15x per-item)
    in-memory                 3.6-4.3 M     (11,300 x 1,026 B = 11.6 MB, loaded in 0.005-0.015 s)

The COCO/ImageNet training corpus (manifests/coco_imagenet_gauss20.yaml, built in 31 s with 2
workers; 1.3 GB) has 1,067,040 train and 179,960 val samples (53,352 + 8,998 sharp base tiles x
20).  Its train split, same settings, load 4: per-item 3.1 k, batched 337 k, batched loader 203 k,
list loader 91 k, batched random 22 k, in-memory 3.8 M samples/s.  ``in_memory=True`` on ``image``
+ ``label`` holds 1,094,783,040 bytes (train; val 0.18 GB), loaded in 1.6-3.7 s; peak RSS 1.61 GB
against 0.67 GB for the same process without it (torch imported): no transient second copy.
:class:`BlockShuffleSampler` orders the 1.07 M indices in ~0.2 s per epoch.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from datagen.reader import BlockShuffleSampler, CorpusDataset, collate_batch

FIELDS = ["image", "label"]


def _rate(step, seconds: float) -> float:
    """Samples/s of ``step()`` (which returns the samples it read) repeated for about ``seconds``."""
    step()   # warm-up: opens the file, first page faults
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n / (time.perf_counter() - t0)


def _cycle(batches):
    while True:
        yield from batches


def _loader_rate(loader, seconds: float) -> float:
    """Samples/s of iterating ``loader`` (restarted at the end of each epoch)."""
    state = {"it": iter(loader)}

    def step() -> int:
        try:
            b = next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            b = next(state["it"])
        return len(b["label"])
    return _rate(step, seconds)


class _PerItemOnly(CorpusDataset):
    """The dataset as it was: no batched fetch (the DataLoader falls back to ``ds[i]``)."""
    __getitems__ = None


def build_default(tmp: Path) -> tuple[Path, str]:
    from datagen.manifest import load_manifest
    from datagen.runner import build

    manifest = REPO / "manifests" / "div2k_valid_gauss20.yaml"
    print(f"building {manifest.name} into {tmp} ...", flush=True)
    t0 = time.perf_counter()
    res = build(load_manifest(manifest), out=tmp / "div2k_valid_gauss20.h5", progress=False, log=lambda m: None)
    print(f"  built in {time.perf_counter() - t0:.1f} s: {res.counts['test']['samples']} samples")
    return res.path, "test"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="an existing corpus (default: build the 6-image DIV2K one)")
    ap.add_argument("--split", default=None, help="split to read (default: test for the built corpus, else train)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per mode")
    args = ap.parse_args(argv)
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus is None:
            path, split = build_default(Path(tmp))
        else:
            path, split = args.corpus, "train"
        split = args.split or split
        ds = CorpusDataset(path, split, fields=FIELDS)
        n = len(ds)
        print(f"corpus {path} split {split}: {n} samples; fields {FIELDS}; batch {args.batch}, block {args.block}")
        sampler = BlockShuffleSampler(n, block_size=args.block, seed=0)
        order = sampler.order()
        batches = [order[k:k + args.batch] for k in range(0, n, args.batch)]
        rng = np.random.default_rng(0)
        results = {}

        items = _cycle(rng.permutation(n).tolist())
        results["per-item"] = _rate(lambda: [ds[next(items)] for _ in range(64)] and 64, args.seconds)

        old = _PerItemOnly(path, split, fields=FIELDS)
        results["per-item loader"] = _loader_rate(DataLoader(old, batch_size=args.batch, shuffle=True), args.seconds)

        it = _cycle(batches)
        results["batched"] = _rate(lambda: len(ds.read_batch(next(it))["label"]), args.seconds)

        stacked = CorpusDataset(path, split, fields=FIELDS, stacked=True)
        results["batched loader"] = _loader_rate(
            DataLoader(stacked, batch_size=args.batch, sampler=sampler, collate_fn=collate_batch), args.seconds)
        results["list loader"] = _loader_rate(DataLoader(ds, batch_size=args.batch, sampler=sampler), args.seconds)

        results["batched, random"] = _rate(lambda: len(ds.read_batch(rng.integers(0, n, args.batch))["label"]),
                                           args.seconds)

        t0 = time.perf_counter()
        mem = CorpusDataset(path, split, fields=FIELDS, in_memory=True)
        load_s = time.perf_counter() - t0
        it = _cycle(batches)
        results["in-memory"] = _rate(lambda: len(mem.read_batch(next(it))["label"]), args.seconds)

        width = max(map(len, results))
        for name, rate in results.items():
            print(f"  {name:<{width}}  {rate:>12,.0f} samples/s")
        print(f"  in-memory: {mem.nbytes:,} bytes ({mem.nbytes / n:.0f} per sample: image 32x32 uint8 + label int16), "
              f"loaded in {load_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
