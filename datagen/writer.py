"""HDF5 I/O of the build: shards written atomically, then consolidated into one corpus file.

* :func:`atomic_h5` writes ``path`` through ``path.tmp-<pid>-<rand>`` + fsync + rename, so a
  file at its final name is always complete; a crash leaves only a temporary to delete.
* Shard files (one per Dask task) carry ``layout_id`` and ``complete`` attributes that
  resume checks before reusing them.
* The corpus file holds ``/<split>/<field>`` datasets, the ``/sources`` table and the
  provenance attributes; ``content_sha256`` hashes every field of every split and the
  source keys in canonical order (:func:`content_sha256`), as a two-level hash: the digest
  of a ``/<split>/<field>`` dataset is the SHA-256 of the SHA-256 digests of each source
  image's rows (that split's images in index order, as ``/sources`` lists them).  Workers
  hash their images in parallel; the result does not depend on the shard layout.
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


@contextmanager
def atomic_h5(path: str | os.PathLike, *, after_close: list | None = None) -> Iterator[h5py.File]:
    """Yield an HDF5 file open for writing that appears at ``path`` only once it is complete.

    Callables appended to ``after_close`` run with the temporary path once HDF5 has closed
    the file, before it is synced and renamed (raw writes into allocated datasets)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(tmp, "w", libver=("earliest", "v110")) as f:
            yield f
        for step in after_close or ():
            step(tmp)
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


def write_shard(path: Path, parts: dict[str, list[np.ndarray]], dtypes: dict[str, np.dtype],
                shapes: dict[str, tuple[int, ...]], attrs: dict) -> None:
    """Write one shard (uncompressed) and its attributes; ``complete`` is set last.

    ``parts[name]`` holds each image's rows of field ``name``; they are written one after the
    other into one dataset (no concatenated copy)."""
    with atomic_h5(path) as f:
        for name in sorted(parts):
            total = sum(len(a) for a in parts[name])
            ds = f.create_dataset(name, shape=(total, *shapes[name]), dtype=dtypes[name])
            at = 0
            for a in parts[name]:
                if len(a):
                    ds[at:at + len(a)] = a
                at += len(a)
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


def _sha256(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows)).hexdigest()   # buffer protocol: no extra copy


def image_digests(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """SHA-256 (hex) of the bytes of each field's rows of one source image (C order, stored dtype)."""
    return {name: _sha256(a) for name, a in arrays.items()}


def _combine(per_image: list[str]) -> str:
    return hashlib.sha256(b"".join(bytes.fromhex(d) for d in per_image)).hexdigest()


def dataset_digests(f: h5py.File) -> dict[str, str]:
    """Re-hash every ``/<split>/<field>`` dataset of an open corpus, one source image at a time.

    The rows of an image are cut by the ``/sources`` ``samples`` column; a corpus whose
    counts or rows were altered gives other digests.
    """
    table = f["sources"]
    splits = [s.decode() if isinstance(s, bytes) else str(s) for s in table["split"][...]] if "split" in table else []
    samples = table["samples"][...].astype(np.int64) if "samples" in table else np.zeros(len(splits), np.int64)
    out = {}
    for split in SPLITS:
        if split not in f:
            continue
        counts = [int(n) for s, n in zip(splits, samples) if s == split]
        for field in sorted(f[split]):
            ds = f[split][field]
            per_image, at = [], 0
            for n in counts:
                per_image.append(_sha256(ds[at:at + n]))
                at += n
            if at != ds.shape[0]:
                per_image.append(_sha256(ds[at:]))   # stray rows
            out[_field_header(split, field, ds.dtype, ds.shape)] = _combine(per_image)
    return out


def _contiguous_dataset(group: h5py.Group, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
    """A contiguous dataset whose file space is allocated now and never filled, so that its
    raw bytes can be written at ``get_offset()`` once the file is closed."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)      # no timestamps: the same bytes for the same corpus
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, h5py.h5s.create_simple(shape), dcpl=dcpl)
    return h5py.Dataset(dsid)


def _copy_range(copy: tuple[Path, int, int, int], dst_fd: int) -> None:
    """Copy ``nbytes`` from ``src`` at ``src_offset`` to ``dst_fd`` at ``dst_offset`` (in the kernel
    where possible)."""
    src, src_offset, dst_offset, nbytes = copy
    in_kernel = hasattr(os, "copy_file_range")
    with open(src, "rb") as fh:
        fd, done = fh.fileno(), 0
        while done < nbytes:
            n = 0
            if in_kernel:
                try:
                    n = os.copy_file_range(fd, dst_fd, nbytes - done, src_offset + done, dst_offset + done)
                except OSError:   # not supported for these files: plain reads and writes from now on
                    in_kernel = False
            if not in_kernel:
                n = os.pwrite(dst_fd, os.pread(fd, min(nbytes - done, 1 << 24), src_offset + done), dst_offset + done)
            if n <= 0:
                raise OSError(f"short copy from {src} ({done} of {nbytes} bytes)")
            done += n


def _copy_ranges(copies: list[tuple[Path, int, int, int]], dst: Path) -> None:
    """Run the raw copies into ``dst``, two at a time (the kernel copies without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    fd = os.open(dst, os.O_WRONLY)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for done in [pool.submit(_copy_range, c, fd) for c in copies]:
                done.result()
    finally:
        os.close(fd)


def consolidate(out: Path, shards: list[tuple[Path, str, int]], fields: dict[str, tuple[str, tuple[int, ...]]],
                *, sources: list[dict], digests: dict[int, dict[str, str]], attrs: dict,
                compression: str = "none") -> str:
    """Stitch shards into the corpus file ``out`` (atomically); returns ``content_sha256``.

    ``shards`` is ``[(path, split, n_samples)]`` in canonical order; ``fields`` maps each
    field to ``(dtype, per-sample shape)``; ``sources`` is the ``/sources`` table as rows (in
    index order, with ``split`` and ``samples``); ``digests`` maps a source index to its
    :func:`image_digests`, computed by the workers.

    Uncompressed corpora are stitched by copying each shard dataset's raw bytes into the
    contiguous, pre-allocated dataset of the corpus (``copy_file_range``: no pass through
    Python, the digests are the workers'); compressed ones are read and written by HDF5.
    """
    totals = {s: sum(n for _, sp, n in shards if sp == s) for s in SPLITS}
    raw = compression == "none"
    field_digests: dict[str, str] = {}
    after_close: list = []
    with atomic_h5(out, after_close=after_close) as f:
        datasets = {}
        for split in SPLITS:
            grp = f.create_group(split)
            for field in sorted(fields):
                dtype, shape = fields[field]
                full = (totals[split], *shape)
                if raw:
                    datasets[split, field] = _contiguous_dataset(grp, field, full, dtype)
                else:   # compressed datasets need chunks: ~64k elements per chunk
                    rows = max(1, min(totals[split], 65536 // int(np.prod(shape, dtype=np.int64))))
                    datasets[split, field] = grp.create_dataset(field, shape=full, dtype=dtype, chunks=(rows, *shape),
                                                                compression=compression)
                field_digests[_field_header(split, field, np.dtype(dtype), full)] = _combine(
                    [digests[i][field] for i, row in enumerate(sources) if row["split"] == split])
        copies = []
        at = dict.fromkeys(SPLITS, 0)
        for path, split, n in shards:
            with h5py.File(path, "r") as s:
                for field, (dtype, shape) in fields.items():
                    src = s[field]
                    if src.shape != (n, *shape) or src.dtype != np.dtype(dtype):
                        raise RuntimeError(f"shard {path} field {field}: {src.dtype}{src.shape} != {dtype}{(n, *shape)}")
                    if not n:
                        continue
                    dst = datasets[split, field]
                    if raw and src.id.get_offset() is not None:
                        row = src.dtype.itemsize * int(np.prod(shape, dtype=np.int64))
                        copies.append((path, src.id.get_offset(), dst.id.get_offset() + at[split] * row, n * row))
                    else:
                        dst[at[split]:at[split] + n] = src[...]
            at[split] += n
        after_close.append(lambda tmp: _copy_ranges(copies, tmp))
        src = f.create_group("sources")
        for col in sources[0] if sources else ("key",):
            values = [row[col] for row in sources]
            if values and isinstance(values[0], str):
                src.create_dataset(col, data=np.array(values, dtype=h5py.string_dtype()))
            else:
                src.create_dataset(col, data=np.asarray(values, dtype=np.int64))
        digest = content_sha256(field_digests, [row["key"] for row in sources])
        for k, v in attrs.items():
            f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=True)
        f.attrs["content_sha256"] = digest
        f.attrs["field_digests"] = json.dumps(field_digests, sort_keys=True)
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["complete"] = True
    return digest
