"""HDF5 I/O of the build: shards written atomically, then consolidated into one corpus file.

* :func:`atomic_h5` writes ``path`` through ``path.tmp-<pid>-<rand>`` + fsync + rename, so a
  file at its final name is always complete; a crash leaves only a temporary to delete.
* Shard files (one per Dask task) carry ``layout_id`` and ``complete`` attributes that
  resume checks before reusing them.
* The corpus file holds ``/<split>/<field>`` datasets, the ``/sources`` table and the
  provenance attributes; ``content_sha256`` hashes every field of every split and the
  source keys in canonical order (:func:`content_sha256`).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import FORMAT, FORMAT_VERSION, SPLITS
from .atomic import fsync_dir

BLOCK_ROWS = 8192  # rows per read/write block when streaming datasets


@contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Yield an HDF5 file open for writing that appears at ``path`` only once it is complete."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(tmp, "w", libver=("earliest", "v110")) as f:
            yield f
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> int:
    """Delete ``*.tmp-*`` files left by killed writers; returns how many."""
    n = 0
    for p in folder.glob("*.tmp-*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def shard_path(workdir: Path, index: int) -> Path:
    return workdir / "shards" / f"shard-{index:05d}.h5"


def write_shard(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """Write one shard's arrays (uncompressed) and attributes; ``complete`` is set last."""
    with atomic_h5(path) as f:
        for name in sorted(arrays):
            f.create_dataset(name, data=arrays[name])
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["complete"] = True


def read_shard_attrs(path: Path) -> dict | None:
    """Attributes of a complete shard, or ``None`` if it is unreadable or incomplete."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError):
        return None
    return attrs if attrs.get("complete") else None


def _field_header(split: str, field: str, dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{split}/{field}|{np.dtype(dtype).str}|{','.join(map(str, shape))}"


def content_sha256(field_digests: dict[str, str], source_keys: list[str]) -> str:
    """Combine per-dataset digests (keyed by :func:`_field_header`) and the source keys."""
    h = hashlib.sha256(f"{FORMAT} v{FORMAT_VERSION}\n".encode())
    for header in sorted(field_digests, key=lambda s: (SPLITS.index(s.split("/", 1)[0]), s)):
        h.update(f"{header}={field_digests[header]}\n".encode())
    h.update(hashlib.sha256("\n".join(source_keys).encode()).hexdigest().encode())
    return h.hexdigest()


def dataset_digests(f: h5py.File) -> dict[str, str]:
    """Re-hash every ``/<split>/<field>`` dataset of an open corpus, streaming in row blocks."""
    out = {}
    for split in SPLITS:
        if split not in f:
            continue
        for field in sorted(f[split]):
            ds = f[split][field]
            h = hashlib.sha256()
            for start in range(0, ds.shape[0], BLOCK_ROWS):
                h.update(np.ascontiguousarray(ds[start:start + BLOCK_ROWS]))  # buffer protocol: no extra copy
            out[_field_header(split, field, ds.dtype, ds.shape)] = h.hexdigest()
    return out


def consolidate(out: Path, shards: list[tuple[Path, str, int]], fields: dict[str, tuple[str, tuple[int, ...]]],
                *, sources: list[dict], attrs: dict, compression: str = "none") -> str:
    """Stitch shards into the corpus file ``out`` (atomically); returns ``content_sha256``.

    ``shards`` is ``[(path, split, n_samples)]`` in canonical order; ``fields`` maps each
    field to ``(dtype, per-sample shape)``; ``sources`` is the ``/sources`` table as rows.
    """
    totals = {s: sum(n for _, sp, n in shards if sp == s) for s in SPLITS}
    digests: dict[str, str] = {}
    comp = {} if compression == "none" else {"compression": compression}
    with atomic_h5(out) as f:
        for split in SPLITS:
            grp = f.create_group(split)
            members = [(p, n) for p, sp, n in shards if sp == split]
            for field in sorted(fields):
                dtype, shape = fields[field]
                full = (totals[split], *shape)
                extra = {}
                if comp and totals[split]:  # compressed datasets need chunks: ~64k elements per chunk
                    rows = min(totals[split], max(1, 65536 // int(np.prod(shape, dtype=np.int64))))
                    extra = dict(comp, chunks=(rows, *shape))
                ds = grp.create_dataset(field, shape=full, dtype=dtype, **extra)
                h = hashlib.sha256()
                at = 0
                for path, n in members:
                    with h5py.File(path, "r") as s:
                        block = s[field][...]
                    if block.shape != (n, *shape) or block.dtype != np.dtype(dtype):
                        raise RuntimeError(f"shard {path} field {field}: {block.dtype}{block.shape} != {dtype}{(n, *shape)}")
                    ds[at:at + n] = block
                    h.update(np.ascontiguousarray(block))
                    at += n
                digests[_field_header(split, field, np.dtype(dtype), full)] = h.hexdigest()
        src = f.create_group("sources")
        for col in sources[0] if sources else ("key",):
            values = [row[col] for row in sources]
            if values and isinstance(values[0], str):
                src.create_dataset(col, data=np.array(values, dtype=h5py.string_dtype()))
            else:
                src.create_dataset(col, data=np.asarray(values, dtype=np.int64))
        digest = content_sha256(digests, [row["key"] for row in sources])
        for k, v in attrs.items():
            f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=True)
        f.attrs["content_sha256"] = digest
        f.attrs["field_digests"] = json.dumps(digests, sort_keys=True)
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["complete"] = True
    return digest
