"""Content hashes (SHA-256) of source files, with a git-index-like fast path.

Hashing every source image on every ``datagen build`` / ``validate`` would cost seconds per
thousand images, so a per-user cache remembers each file's digest together with its stat
signature ``(size, mtime_ns, ctime_ns, inode, device)``.  A stored digest is trusted while
the signature is unchanged; any write, replacement, rename over, copy with preserved times
(new ctime) or restore gives another signature and the file is hashed again.

*Racy entries* (as in git): a file modified within the timestamp granularity of the moment it
was hashed could change again without changing its mtime, so a digest is stored only when the
file's mtime is :data:`RACY_NS` older than the moment hashing started; younger files are hashed
again next time until they age.  (A later write that also resets the mtime, as ``cp -p`` or
``rsync -t`` do, still sets a new ctime.)

The cache lives in ``$DEFOCUSBENCH_CACHE`` or else ``$XDG_CACHE_HOME/defocusbench`` (default
``~/.cache/defocusbench``), as one JSON file :data:`CACHE_NAME`, keyed by the file's real path.
It is only an accelerator: a missing, corrupt, foreign-owned or unwritable cache is ignored
(and rewritten when possible), never an error.  Writes are atomic (:mod:`datagen.atomic`) and
merge with entries written meanwhile by a concurrent process (the last writer wins per path;
a lost entry only costs one more hash).  At most :data:`MAX_ENTRIES` paths are kept, the ones
used least recently dropped first.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import SourceError

#: Bytes read per ``readinto`` while hashing: memory per hashing thread stays bounded.
READ_SIZE = 1 << 20

#: A digest is cached only for files whose mtime is older than this when hashing starts
#: (nanoseconds; covers coarse filesystem timestamps, e.g. FAT's 2 s).
RACY_NS = 2_000_000_000

#: Most paths kept in the cache file (~150 bytes each).
MAX_ENTRIES = 200_000

CACHE_NAME = "file-sha256.json"
_CACHE_FORMAT = "defocusbench-file-sha256 v1"


def cache_dir() -> Path:
    """The folder of our per-user caches: ``$DEFOCUSBENCH_CACHE``, ``$XDG_CACHE_HOME/defocusbench``
    or ``~/.cache/defocusbench``."""
    if os.environ.get("DEFOCUSBENCH_CACHE"):
        return Path(os.environ["DEFOCUSBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "defocusbench"


def _unreadable(path, err: OSError) -> SourceError:
    return SourceError(f"{path}: cannot read image ({err.strerror or err}); check the path and permissions")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read :data:`READ_SIZE` bytes at a time (hashlib releases
    the GIL on large updates, so threads hash in parallel).  ``OSError`` if it cannot be read."""
    h = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """:func:`file_sha256` of a source image; one-line :class:`SourceError` if it cannot be read."""
    try:
        return file_sha256(path)
    except OSError as err:
        raise _unreadable(path, err) from None


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _is_entry(value) -> bool:
    return (isinstance(value, list) and len(value) == 6 and all(type(v) is int for v in value[:5])
            and isinstance(value[5], str) and len(value[5]) == 64)


class HashCache:
    """The cache file: ``{real path: [size, mtime_ns, ctime_ns, inode, device, sha256 hex]}``."""

    def __init__(self):
        self.path = cache_dir() / CACHE_NAME
        self.entries = self._read()
        self.used: dict[str, list] = {}   # entries used or added by this process, in order
        self.added = 0

    def _read(self) -> dict[str, list]:
        """The valid entries of the cache file; ``{}`` if it is missing, corrupt or not ours."""
        try:
            with open(self.path, "rb") as fh:
                if hasattr(os, "getuid") and os.fstat(fh.fileno()).st_uid != os.getuid():
                    return {}   # someone else's file: its digests could lie
                data = json.loads(fh.read())
        except (OSError, ValueError):
            return {}
        ours = isinstance(data, dict) and data.get("format") == _CACHE_FORMAT
        if not ours or not isinstance(data.get("entries"), dict):
            return {}
        return {k: v for k, v in data["entries"].items() if _is_entry(v)}

    def get(self, real: str, st: os.stat_result) -> str | None:
        """The stored digest of ``real`` if its signature is still ``st``'s."""
        entry = self.entries.get(real)
        return entry[5] if entry is not None and entry[:5] == _signature(st) else None

    def touch(self, real: str) -> None:
        """Mark the entry of ``real`` as used now (kept first when the cache is trimmed)."""
        self.used[real] = self.entries[real]

    def put(self, real: str, st: os.stat_result, digest: str, *, started_ns: int) -> None:
        """Remember ``digest`` unless the file is too young to trust its signature (racy)."""
        if st.st_mtime_ns > started_ns - RACY_NS:
            return
        entry = [*_signature(st), digest]
        self.entries[real] = self.used[real] = entry
        self.added += 1

    def save(self) -> None:
        """Write the cache if this process added digests: merged with the file's current entries,
        most recently used last, trimmed to :data:`MAX_ENTRIES`.  Failures are ignored."""
        if not self.added:
            return
        merged = self._read()
        for real in self.used:
            merged.pop(real, None)
        merged.update(self.used)
        keep = dict(list(merged.items())[-MAX_ENTRIES:])
        data = json.dumps({"format": _CACHE_FORMAT, "entries": keep}, separators=(",", ":")).encode()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write_bytes(self.path, data)
        except OSError:
            return
        self.entries, self.added = keep, 0


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        raise _unreadable(path, err) from None


def _hash(path: str, st: os.stat_result) -> tuple[str, bool]:
    """``(digest, whether the file kept the signature ``st`` while it was read)``."""
    digest = sha256_file(path)
    try:
        return digest, _signature(os.stat(path)) == _signature(st)
    except OSError:
        return digest, False


def sha256_files(paths: Sequence[str | os.PathLike], *, use_cache: bool = True,
                 threads: int | None = None) -> list[str]:
    """SHA-256 (hex) of each file's bytes, in the order of ``paths``.

    With ``use_cache`` (default), digests come from the per-user cache while a file's stat
    signature is unchanged, and new digests are stored there.  The other files are hashed in
    ``threads`` threads (default: cores + 4, at most 32; reading and hashing release the GIL).
    Raises a one-line :class:`SourceError` for a file that cannot be read.
    """
    paths = [os.fspath(p) for p in paths]
    cache = HashCache() if use_cache else None
    started_ns = time.time_ns()
    digests: list[str | None] = [None] * len(paths)
    todo = []   # (position, real path, stat) of the files to hash
    for i, path in enumerate(paths):
        st = _stat(path)
        real = os.path.realpath(path) if cache is not None else path
        digests[i] = cache.get(real, st) if cache is not None else None
        if digests[i] is not None:
            cache.touch(real)
        else:
            todo.append((i, real, st))
    if todo:
        threads = threads or min(32, (os.cpu_count() or 1) + 4)
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(todo)))) as pool:
            hashed = list(pool.map(lambda job: _hash(paths[job[0]], job[2]), todo))
        for (i, real, st), (digest, unchanged) in zip(todo, hashed):
            digests[i] = digest
            if cache is not None and unchanged:   # a file changed while read is hashed again next time
                cache.put(real, st, digest, started_ns=started_ns)
    if cache is not None:
        cache.save()
    return digests
