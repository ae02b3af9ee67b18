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
from dataclasses import dataclass

from . import FORMAT_VERSION, SPLITS
from .errors import ManifestError
from .generators import get_generator
from .manifest import Manifest
from .seeding import stable_digest
from .sources import list_source


@dataclass(frozen=True)
class SourceImage:
    index: int   # row in /sources of the corpus
    key: str
    path: str
    size: int
    split: str


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


def make_plan(manifest: Manifest, *, limit: int | None = None) -> Plan:
    """List the sources, assign splits, apply ``limit`` (a seeded subset of images), cut shards."""
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
    images = tuple(SourceImage(j, k, listed[k][0].path, listed[k][0].size, listed[k][1]) for j, k in enumerate(ordered))
    content = {
        "format_version": FORMAT_VERSION,
        "generator_version": get_generator(manifest.generator.kind).VERSION,   # new code, new data: new id
        **manifest.content(),
        "limit": limit,
        "images": [[im.key, im.size, im.split] for im in images],
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    dataset_id = hashlib.sha256(blob).hexdigest()[:16]
    per = manifest.output.images_per_shard
    shards = []
    for split in SPLITS:
        idx = [im.index for im in images if im.split == split]
        for start in range(0, len(idx), per):
            chunk = idx[start:start + per]
            shards.append(Shard(len(shards), split, chunk[0], chunk[-1] + 1))
    return Plan(manifest, images, tuple(shards), limit, dataset_id)

