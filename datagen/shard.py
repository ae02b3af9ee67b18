"""One Dask task: decode a run of source images, generate their samples, write one shard file;
and the check that decides whether a shard left by an earlier run may be reused.

Runs inside Dask workers: takes plain data (paths, not handles), opens its own files, and
writes its shard through :func:`datagen.writer.write_shard` (temporary name, rename).

A shard's root attributes (this module is their one definition): ``layout_id``,
``shard_version``, ``shard_index``, ``split``, ``n_samples``; ``sources`` (JSON: one row per
image, in order: ``index``, ``key``, ``sha256`` of the source file, ``samples``, generator
statistics), ``digests`` (JSON: per image, the SHA-256 of each field's rows,
:func:`datagen.writer.image_digests`), ``label_counts`` (JSON: samples per class) and
``complete``.  One dataset per field (plus ``source``), each image's rows one after the other.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from .errors import SourceError
from .generators import SourceItem, get_generator
from .imageio import read_image
from .plan import pair_sha256
from .seeding import rng_for
from .writer import image_digests, shard_path, work_dir, write_failed, write_shard

#: Version of the shard file's datasets and attributes; resume reuses only shards of this version.
SHARD_VERSION = 3


class Companion(NamedTuple):
    role: str
    key: str
    path: str
    sha256: str       # planned sha256 of the file


class TaskImage(NamedTuple):
    index: int        # row of /sources
    key: str
    path: str
    sha256: str       # planned sha256 of the file (of the pair: datagen.plan.pair_sha256)
    mask: str | None = None
    companions: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class ShardTask:
    index: int
    split: str
    images: tuple[TaskImage, ...]
    generator: dict                                 # validated generator params (JSON form)
    seed: int
    layout_id: str
    out: str                                        # the corpus file; the shard goes to its work folder

    @property
    def path(self) -> Path:
        return shard_path(work_dir(self.out), self.index)


@dataclass(frozen=True)
class ShardMeta:
    """The parsed attributes of a complete shard (see the module docstring)."""

    index: int
    split: str
    n_samples: int
    sources: list[dict]
    digests: list[dict[str, str]]
    label_counts: list[int]


class UnusableShard(Exception):
    """A shard file that must be rebuilt; ``str(err)`` says why (one line)."""


def _generator(task: ShardTask):
    cls = get_generator(task.generator["kind"])
    return cls(cls.Params.model_validate(task.generator))


def _layout(gen) -> tuple[dict[str, np.dtype], dict[str, tuple[int, ...]]]:
    """dtype and per-sample shape of every dataset of a shard: the generator's fields and ``source``."""
    fields = gen.fields()
    dtypes = {name: np.dtype(spec.dtype) for name, spec in fields.items()} | {"source": np.dtype(np.int32)}
    shapes = {name: tuple(spec.shape) for name, spec in fields.items()} | {"source": ()}
    return dtypes, shapes


def _one_thread_per_task() -> None:
    """Dask runs one task per worker thread; keep OpenCV from starting its own pool on top."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency, but generators may not need it
        return
    cv2.setNumThreads(1)


def _changed(path: str, sha: str, planned: str) -> SourceError:
    return SourceError(f"{path}: the file changed during the build (SHA-256 {sha[:12]}, planned "
                       f"{planned[:12]}); rerun when the sources are stable")


def _load_item(gen, im: TaskImage, split: str) -> SourceItem:
    """Decode one task image (its mask and companions too), each checked against its planned sha256."""
    image, sha = read_image(im.path, color=gen.COLOR)
    mask = None
    if im.mask is not None:
        mask, mask_sha = read_image(im.mask, color="gray", what="mask")
        if mask.shape != image.shape[:2]:
            raise SourceError(f"{im.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {im.path} is "
                              f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size")
        sha = pair_sha256(sha, mask_sha)
    if sha != im.sha256:
        raise _changed(im.mask or im.path, sha, im.sha256)
    companions: dict[str, list[np.ndarray]] = {}
    for c in im.companions:
        other, other_sha = read_image(c.path, color=gen.COLOR)
        if other_sha != c.sha256:
            raise _changed(c.path, other_sha, c.sha256)
        companions.setdefault(c.role, []).append(other)
    return SourceItem(im.key, image, mask, {r: tuple(v) for r, v in companions.items()}, split)


def run_shard(task: ShardTask) -> dict:
    """Build and write one shard; returns a summary (samples, per-image stats, seconds).

    Raises a one-line :class:`SourceError` when a source file's bytes are not those planned
    (it changed during the build) or a mask does not fit its image, and a one-line
    :class:`OutputError` naming the corpus when the shard cannot be written (disk full, quota,
    I/O error): both travel back through Dask.
    """
    t0 = time.perf_counter()
    _one_thread_per_task()
    gen = _generator(task)
    dtypes, shapes = _layout(gen)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
    stats, digests = [], []
    first = next(iter(gen.fields()))
    for im in task.images:
        arrays, st = gen.make(_load_item(gen, im, task.split), rng_for(task.seed, im.key))
        n = len(arrays[first])
        arrays = {name: np.ascontiguousarray(arrays[name], dtype=dtypes[name]) for name in gen.fields()}
        for name, arr in arrays.items():
            if arr.shape != (n, *shapes[name]):
                raise RuntimeError(f"generator {gen.KIND} returned {name} of shape {arr.shape} for {im.key}; "
                                   f"expected {(n, *shapes[name])}")
        arrays["source"] = np.full(n, im.index, np.int32)
        for name, arr in arrays.items():
            parts[name].append(arr)
        digests.append(image_digests(arrays))     # hashed here, in parallel, not by the consolidation
        extra = {"companions": " ".join(c.key for c in im.companions)} if gen.COMPANIONS else {}
        stats.append({"index": im.index, "key": im.key, "sha256": im.sha256, "samples": n, **extra, **st})
    n_samples = sum(len(a) for a in parts["source"])
    labels = np.concatenate(parts["label"]) if parts.get("label") else np.empty(0, np.int64)
    try:
        write_shard(task.path, parts, dtypes, shapes, {
            "layout_id": task.layout_id,
            "shard_version": SHARD_VERSION,
            "shard_index": task.index,
            "split": task.split,
            "n_samples": n_samples,
            "sources": json.dumps(stats, sort_keys=True),
            "digests": json.dumps(digests, sort_keys=True),
            "label_counts": json.dumps(np.bincount(labels, minlength=len(gen.classes())).tolist()),
        })
    except OSError as err:
        raise write_failed(Path(task.out), err) from None
    return {"index": task.index, "samples": n_samples, "images": len(task.images), "seconds": time.perf_counter() - t0}


def _json_attr(attrs, name: str, kind: type):
    raw = attrs[name]
    value = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    if not isinstance(value, kind):
        raise TypeError(f"attribute {name} is not a JSON {kind.__name__}")
    return value


def _read_meta(f: h5py.File, task: ShardTask) -> ShardMeta:
    """Parse the attributes of an open shard and check them against ``task``; raises
    :class:`UnusableShard` (or ``KeyError``/``ValueError``/``TypeError``/``OSError`` on damage)."""
    a = f.attrs
    if not a.get("complete"):
        raise UnusableShard("not marked complete")
    found = (str(a.get("layout_id")), int(a.get("shard_version", -1)), int(a.get("shard_index", -1)))
    if found != (task.layout_id, SHARD_VERSION, task.index):
        raise UnusableShard(f"written for another plan or engine (layout {found[0]}, shard version {found[1]}, "
                            f"index {found[2]})")
    sources, digests = _json_attr(a, "sources", list), _json_attr(a, "digests", list)
    label_counts = _json_attr(a, "label_counts", list)
    meta = ShardMeta(task.index, str(a["split"]), int(a["n_samples"]), sources, digests, label_counts)
    planned = [(im.index, im.key, im.sha256) for im in task.images]
    held = [(int(r["index"]), str(r["key"]), str(r["sha256"])) for r in sources]
    if meta.split != task.split or held != planned:
        raise UnusableShard("holds other images than planned (or another version of them)")
    if len(digests) != len(sources) or meta.n_samples != sum(int(r["samples"]) for r in sources):
        raise UnusableShard("its digests or sample counts do not add up")
    if not all(isinstance(d, dict) for d in digests) or not all(isinstance(c, int) for c in label_counts):
        raise UnusableShard("malformed digests or label counts")
    return meta


def _verify_data(f: h5py.File, meta: ShardMeta, gen) -> None:
    """Re-hash every dataset of an open shard, image by image, against ``meta.digests``, and
    recount its labels; raises :class:`UnusableShard` on any difference."""
    dtypes, shapes = _layout(gen)
    for name in sorted(dtypes):
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset) or ds.dtype != dtypes[name] or ds.shape != (meta.n_samples, *shapes[name]):
            raise UnusableShard(f"dataset {name} is missing or has another type or shape")
        data = ds[...]
        at = 0
        for row, digest in zip(meta.sources, meta.digests, strict=True):
            n = int(row["samples"])
            if image_digests({name: data[at:at + n]})[name] != digest.get(name):
                raise UnusableShard(f"{name} of {row['key']} does not match its stored digest")
            at += n
        if name == "label" and np.bincount(data, minlength=len(meta.label_counts)).tolist() != meta.label_counts:
            raise UnusableShard("its label counts do not match its labels")
    if len(meta.label_counts) != len(gen.classes()):
        raise UnusableShard("its label counts do not match the generator's classes")


def check_shard(task: ShardTask, *, verify: bool = True) -> ShardMeta:
    """The attributes of the complete shard of ``task``, checked against the task (plan, engine
    version, images and their planned SHA-256) and, with ``verify``, its data re-hashed image
    by image against the digests the worker stored (the consolidation trusts them).

    Raises :class:`UnusableShard` (one line: why) for a missing, incomplete, unreadable,
    tampered or foreign shard, which the caller rebuilds.
    """
    path = task.path
    if not path.exists():
        raise UnusableShard("missing")
    try:
        with h5py.File(path, "r") as f:
            meta = _read_meta(f, task)
            if verify:
                _verify_data(f, meta, _generator(task))
    except UnusableShard:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError, UnicodeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UnusableShard(f"unreadable or corrupt ({type(err).__name__}: {first})") from None
    return meta

