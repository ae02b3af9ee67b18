"""The build plan: which images, in which split, in which shard -- decided before any pixel is read.

Canonical order (the order of samples in the corpus and in ``content_sha256``): splits in
``train, val, test`` order; within a split, images by key; within an image, the order the
generator returns.  Shards are runs of consecutive images of one split, so the order does
not depend on the shard size, the worker count or the scheduler.

Companions (images of another role, e.g. the backgrounds of composites) are rows of ``/sources``
after all primary images (split, then key order) and make no samples of their own.  Each primary
image draws ``Generator.COMPANIONS[role]`` distinct images of each role from the same split: the
first in the order of ``stable_digest(seed, "companion", role, key, companion key)``, a choice fixed
by the manifest and the keys alone.  Only the companions drawn are listed (and hashed).

An image + mask pair is one source image: its ``sha256`` is :func:`pair_sha256` of the two files'.
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
from .generators import get_generator
from .manifest import PRIMARY, Manifest
from .seeding import stable_digest
from .sources import list_source


@dataclass(frozen=True)
class SourceImage:
    index: int    # row in /sources of the corpus
    key: str
    path: str
    size: int     # bytes
    split: str
    sha256: str   # hex digest of the file's bytes when planned (part of the dataset id); pairs: pair_sha256
    mask: str | None = None          # the mask file of an image + mask pair
    role: str = PRIMARY
    companions: tuple[int, ...] = ()  # indices of the companion images drawn for this one


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
        """Primary images per split (the images samples are made from)."""
        return {s: sum(1 for im in self.images if im.split == s and im.role == PRIMARY) for s in SPLITS}

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


def pair_sha256(image_sha256: str, mask_sha256: str) -> str:
    """The identity of an image + mask pair: SHA-256 over the two files' hex digests."""
    return hashlib.sha256(f"pair:{image_sha256}:{mask_sha256}".encode()).hexdigest()


def assign_splits(keys: list[str], split, *, seed: int, order: str = "hash") -> dict[str, str]:
    """Split by image: a fixed split name, or exact fractions (largest remainder) dealt in split order
    (train, val, test) over a seeded, key-hashed order of the keys (``order="hash"``) or their
    sorted order (``"sorted"``: the first ``train`` fraction of the sorted keys is train, ...)."""
    if isinstance(split, str):
        return {k: split for k in keys}
    if order == "sorted":
        ordered = sorted(keys)
    else:
        ordered = sorted(keys, key=lambda k: stable_digest(seed, "split", k))
    out, at = {}, 0
    counts = _apportion(len(ordered), split)
    for s in sorted(counts, key=SPLITS.index):
        for k in ordered[at:at + counts[s]]:
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
    """List the sources, assign splits, apply ``limit`` (a seeded subset of the primary images),
    draw companions, hash the chosen images' bytes (cached per stat signature:
    :mod:`datagen.filehash`), cut shards."""
    if limit is not None and limit < 1:
        raise ManifestError(f"--limit must be >= 1 (got {limit})")
    listed: dict[str, tuple] = {}
    role_of: dict[str, str] = {}
    seen_paths: dict[str, int] = {}
    for i, src in enumerate(manifest.sources):
        items = list_source(manifest, i)
        splits = assign_splits([it.key for it in items], src.split, seed=manifest.seed, order=src.split_order)
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
            role_of[it.key] = src.role
    keys = sorted(k for k in listed if role_of[k] == PRIMARY)
    if limit is not None and limit < len(keys):
        keys = sorted(sorted(keys, key=lambda k: stable_digest(manifest.seed, "limit", k))[:limit])
    ordered = sorted(keys, key=lambda k: (SPLITS.index(listed[k][1]), k))
    drawn = _draw_companions(manifest, ordered, listed, role_of)
    companions = sorted({k for ks in drawn.values() for k in ks}, key=lambda k: (SPLITS.index(listed[k][1]), k))
    rows = ordered + companions
    paths = [listed[k][0].path for k in rows]
    masks = [listed[k][0].mask for k in rows if listed[k][0].mask is not None]
    digests = sha256_files(paths + masks)
    mask_digest = dict(zip(masks, digests[len(paths):], strict=True))
    index = {k: j for j, k in enumerate(rows)}
    images = []
    for j, (k, sha) in enumerate(zip(rows, digests[:len(paths)], strict=True)):
        it, split = listed[k]
        if it.mask is not None:
            sha = pair_sha256(sha, mask_digest[it.mask])
        images.append(SourceImage(j, k, it.path, it.size, split, sha, it.mask, role_of[k],
                                  tuple(index[c] for c in drawn.get(k, ()))))
    images = tuple(images)
    dataset_id = compute_dataset_id(manifest.content(), limit=limit,
                                    images=[(im.key, im.split, im.sha256) for im in images])
    per = manifest.output.images_per_shard
    shards = []
    for split in SPLITS:
        idx = [im.index for im in images if im.split == split and im.role == PRIMARY]
        for start in range(0, len(idx), per):
            chunk = idx[start:start + per]
            shards.append(Shard(len(shards), split, chunk[0], chunk[-1] + 1))
    return Plan(manifest, images, tuple(shards), limit, dataset_id)


def _draw_companions(manifest: Manifest, primaries: list[str], listed: dict, role_of: dict) -> dict[str, list[str]]:
    """Primary key -> its companion keys (per role, in role order): see the module docstring."""
    wanted = get_generator(manifest.generator.kind).COMPANIONS
    if not wanted:
        return {}
    pools = {(role, split): sorted(k for k in listed if role_of[k] == role and listed[k][1] == split)
             for role in wanted for split in SPLITS}
    out: dict[str, list[str]] = {}
    for key in primaries:
        split = listed[key][1]
        chosen: list[str] = []
        for role, count in wanted.items():
            pool = pools[role, split]
            if len(pool) < count:
                raise ManifestError(f"sources: the {split} split has {len(pool)} {role} image(s) but each primary image "
                                    f"draws {count}; give the {role} sources a {split} share")
            chosen += sorted(pool, key=lambda c: stable_digest(manifest.seed, "companion", role, key, c))[:count]
        out[key] = chosen
    return out
