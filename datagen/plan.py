"""The build plan: which images, in which split, in which shard -- decided before any pixel is read.

Canonical order (the order of samples in the corpus and in ``content_sha256``): splits in
``train, val, test`` order; within a split, images by key; within an image, the order the
generator returns.  Shards are runs of consecutive images of one split, so the order does
not depend on the shard size, the worker count or the scheduler.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from . import FORMAT_VERSION, SPLITS
from .errors import ManifestError
from .filehash import sha256_files
from .manifest import Manifest
from .seeding import stable_digest
from .sources import list_source


@dataclass(frozen=True)
class SourceImage:
    index: int    # row in /sources of the corpus
    key: str
    path: str
    size: int     # bytes
    split: str
    sha256: str   # hex digest of the file's bytes when planned (part of the dataset id)


@dataclass(frozen=True)
class Shard:
    index: int
    split: str
    start: int   # first image index (inclusive)
    stop: int    # last image index (exclusive)


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    images: tuple[SourceImage, ...]
    shards: tuple[Shard, ...]
    limit: int | None
    dataset_id: str

    @property
    def layout_id(self) -> str:
        """Identifies the shard layout: resumable shards must match it as well as the dataset id."""
        return f"{self.dataset_id}-{self.manifest.output.images_per_shard}"

    def images_per_split(self) -> dict[str, int]:
        return {s: sum(1 for im in self.images if im.split == s) for s in SPLITS}

    def shard_images(self, shard: Shard) -> tuple[SourceImage, ...]:
        return self.images[shard.start:shard.stop]


def _apportion(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder integer counts summing to ``n`` (ties broken by split order)."""
    raw = {s: n * f for s, f in fractions.items()}
    counts = {s: math.floor(v) for s, v in raw.items()}
    rest = n - sum(counts.values())
    for s in sorted(raw, key=lambda s: (-(raw[s] - counts[s]), SPLITS.index(s)))[:rest]:
        counts[s] += 1
    return counts


def assign_splits(keys: list[str], split, *, seed: int) -> dict[str, str]:
    """Split by image: a fixed split name, or exact fractions over a seeded, key-hashed order."""
    if isinstance(split, str):
        return {k: split for k in keys}
    order = sorted(keys, key=lambda k: stable_digest(seed, "split", k))
    out, at = {}, 0
    counts = _apportion(len(order), split)
    for s in sorted(counts, key=SPLITS.index):
        for k in order[at:at + counts[s]]:
            out[k] = s
        at += counts[s]
    return out


#: Keys of a corpus's stored ``manifest`` attribute that :meth:`Manifest.content` does not give
#: (the runner adds them for reading): everything else in it is identity content.
_NOT_CONTENT = ("name", "description", "output", "limit")


def compute_dataset_id(content: dict, *, limit: int | None, images: Iterable[tuple[str, str, str]]) -> str:
    """The ``dataset_id``: 16 hex digits of the SHA-256 of what determines a corpus's bytes.

    ``content`` is :meth:`Manifest.content` (seed, generator kind + version + parameters, sources
    without their roots), ``limit`` the ``--limit``, ``images`` the ``(key, split, sha256 of the
    file's bytes)`` of every source image, in any order.  Never paths, sizes or times.  The one
    definition: :func:`make_plan` gives it the listed sources; ``datagen verify`` gives it a
    corpus's stored manifest and ``/sources`` table (:func:`stored_dataset_id`).
    """
    blob = json.dumps({"format_version": FORMAT_VERSION, "content": content, "limit": limit,
                       "images": sorted([str(k), str(s), str(d)] for k, s, d in images)},
                      sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stored_dataset_id(manifest: dict, images: Iterable[tuple[str, str, str]]) -> str:
    """:func:`compute_dataset_id` of a built corpus: its ``manifest`` attribute (as JSON-decoded)
    and its ``/sources`` ``(key, split, sha256)`` rows."""
    content = {k: v for k, v in manifest.items() if k not in _NOT_CONTENT}
    return compute_dataset_id(content, limit=manifest.get("limit"), images=images)


def make_plan(manifest: Manifest, *, limit: int | None = None) -> Plan:
    """List the sources, assign splits, apply ``limit`` (a seeded subset of images), hash the chosen
    images' bytes (cached per stat signature: :mod:`datagen.filehash`), cut shards."""
    if limit is not None and limit < 1:
        raise ManifestError(f"--limit must be >= 1 (got {limit})")
    listed: dict[str, tuple] = {}
    seen_paths: dict[str, int] = {}
    for i, src in enumerate(manifest.sources):
        items = list_source(manifest, i)
        splits = assign_splits([it.key for it in items], src.split, seed=manifest.seed)
        for it in items:
            if it.key in listed:
                raise ManifestError(f"sources.{i}: image key {it.key!r} is also produced by another source; "
                                    "give one of them a distinct `name:`")
            real = os.path.realpath(it.path)
            if real in seen_paths:
                raise ManifestError(f"sources.{i}: {it.path} is also listed by sources.{seen_paths[real]}; "
                                    "an image may belong to one source (and split) only")
            seen_paths[real] = i
            listed[it.key] = (it, splits[it.key])
    keys = sorted(listed)
    if limit is not None and limit < len(keys):
        keys = sorted(sorted(keys, key=lambda k: stable_digest(manifest.seed, "limit", k))[:limit])
    ordered = sorted(keys, key=lambda k: (SPLITS.index(listed[k][1]), k))
    digests = sha256_files([listed[k][0].path for k in ordered])
    images = tuple(SourceImage(j, k, listed[k][0].path, listed[k][0].size, listed[k][1], sha)
                   for j, (k, sha) in enumerate(zip(ordered, digests, strict=True)))
    dataset_id = compute_dataset_id(manifest.content(), limit=limit,
                                    images=[(im.key, im.split, im.sha256) for im in images])
    per = manifest.output.images_per_shard
    shards = []
    for split in SPLITS:
        idx = [im.index for im in images if im.split == split]
        for start in range(0, len(idx), per):
            chunk = idx[start:start + per]
            shards.append(Shard(len(shards), split, chunk[0], chunk[-1] + 1))
    return Plan(manifest, images, tuple(shards), limit, dataset_id)

