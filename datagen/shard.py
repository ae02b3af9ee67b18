"""One Dask task: decode a run of source images, generate their samples, write one shard file.

Runs inside Dask workers: takes plain data (paths, not handles), opens its own files, and
writes its shard through :func:`datagen.writer.write_shard` (temporary name, rename).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .generators import get_generator
from .imageio import read_gray
from .seeding import rng_for
from .writer import image_digests, shard_path, write_shard

#: Version of the shard file's datasets and attributes; resume reuses only shards of this version.
SHARD_VERSION = 3


@dataclass(frozen=True)
class ShardTask:
    index: int
    split: str
    images: tuple[tuple[int, str, str], ...]   # (source index, key, path)
    generator: dict                            # validated generator params (JSON form)
    seed: int
    layout_id: str
    workdir: str


def _one_thread_per_task() -> None:
    """Dask runs one task per worker thread; keep OpenCV from starting its own pool on top."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency, but generators may not need it
        return
    cv2.setNumThreads(1)


def run_shard(task: ShardTask) -> dict:
    """Build and write one shard; returns a summary (samples, per-image stats, seconds)."""
    t0 = time.perf_counter()
    _one_thread_per_task()
    cls = get_generator(task.generator["kind"])
    gen = cls(cls.Params.model_validate(task.generator))
    fields = gen.fields()
    dtypes = {name: np.dtype(spec.dtype) for name, spec in fields.items()} | {"source": np.dtype(np.int32)}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
    stats, digests = [], []
    for source_index, key, path in task.images:
        image, sha = read_gray(path)
        arrays, st = gen.make(image, rng_for(task.seed, key))
        n = len(arrays["label"])
        arrays = {name: np.ascontiguousarray(arrays[name], dtype=dtypes[name]) for name in fields}
        arrays["source"] = np.full(n, source_index, np.int32)
        for name, arr in arrays.items():
            parts[name].append(arr)
        digests.append(image_digests(arrays))     # hashed here, in parallel, not by the consolidation
        stats.append({"index": source_index, "key": key, "sha256": sha, "samples": n, **st})
    shapes = {name: spec.shape for name, spec in fields.items()} | {"source": ()}
    n_samples = sum(len(a) for a in parts["source"])
    labels = np.concatenate(parts["label"]) if parts["label"] else np.empty(0, np.int64)
    write_shard(shard_path(Path(task.workdir), task.index), parts, dtypes, shapes, {
        "layout_id": task.layout_id,
        "shard_version": SHARD_VERSION,
        "shard_index": task.index,
        "split": task.split,
        "n_samples": n_samples,
        "sources": json.dumps(stats, sort_keys=True),
        "digests": json.dumps(digests, sort_keys=True),
        "label_counts": json.dumps(np.bincount(labels, minlength=len(gen.classes())).tolist()),
    })
    return {"index": task.index, "samples": n_samples, "images": len(task.images), "seconds": time.perf_counter() - t0}
