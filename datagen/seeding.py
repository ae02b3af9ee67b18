"""Deterministic randomness keyed by content, never by worker or partition.

Every random draw is made from ``rng_for(seed, key)``, a generator seeded with
``np.random.SeedSequence(seed, spawn_key=stable_words(key))``: the bytes of a sample
depend only on the manifest seed and the sample's stable key, so any worker count or
scheduler produces the same corpus.
"""
from __future__ import annotations

import hashlib

import numpy as np


def stable_digest(*parts: object) -> bytes:
    """SHA-256 of the parts' ``str`` forms joined by NUL bytes (stable across runs and machines)."""
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()


def stable_words(*parts: object, n: int = 4) -> tuple[int, ...]:
    """``n`` unsigned 32-bit words of :func:`stable_digest`, usable as a ``spawn_key``."""
    d = stable_digest(*parts)
    return tuple(int.from_bytes(d[4 * i:4 * i + 4], "little") for i in range(n))


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """Independent ``numpy`` generator for one sample, from the manifest seed and a stable key."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=stable_words(*key)))
