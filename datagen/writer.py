"""HDF5 I/O of the build: shards written atomically, then consolidated into one corpus file.

* :func:`atomic_h5` writes ``path`` through ``path.tmp-<pid>-<rand>`` + fsync + rename, so a
  file at its final name is always complete.  Its root attribute ``complete`` is written
  last, after every byte (raw copies included) is in place and synced: a killed writer's
  temporary never claims to be complete, and the next build of the same output removes it
  (:func:`remove_stale_temporaries`, under the output lock).
* Shard files (one per Dask task) carry ``layout_id``, ``complete`` and per-image digests
  that resume checks before reusing them (:mod:`datagen.shard`).
* The corpus file holds ``/<split>/<field>`` datasets, the ``/sources`` table and the
  provenance attributes; ``content_sha256`` hashes every field of every split and the
  source keys in canonical order (:func:`content_sha256`), as a two-level hash: the digest
  of a ``/<split>/<field>`` dataset is the SHA-256 of the SHA-256 digests of each source
  image's rows (that split's images in index order, as ``/sources`` lists them).  Workers
  hash their images in parallel; the result does not depend on the shard layout.
* Every group and dataset of the corpus carries a ``doc`` attribute (a field's ``doc`` from its
  generator's :class:`~datagen.generators.base.Field`, ``units`` where the field states them,
  ``dtype``, and what its rows are), so that ``h5ls -v`` and HDFView explain the file.  Neither
  hash covers these attributes: they describe the layout and never change a sample.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import FORMAT, FORMAT_VERSION, SPLITS
from .atomic import fsync_dir
from .errors import OutputError

#: HDF5 library versions of every file we write: the oldest format that holds our data, so
#: that the same build gives the same bytes (and older readers can open it).
_LIBVER = ("earliest", "v110")

#: ``<name>.tmp-<pid>-<8 hex>``: the temporary names of :func:`atomic_h5`.
_TEMPORARY = re.compile(r"(?P<target>.+)\.tmp-[0-9]+-[0-9a-f]{8}")

#: Environment variable naming a :func:`pause_point` (tests only).
PAUSE_ENV = "DATAGEN_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """Test hook: stop here for good when ``$DATAGEN_TEST_PAUSE_AT`` is ``name``.

    The process says ``datagen: test pause at NAME (pid P)`` on stderr and sleeps, so that a
    test can ``kill -9`` it at exactly this point of a build.  The points of ``datagen build``
    (driver process): ``built-shard-K`` (the K-th shard of this run is complete),
    ``consolidate-copy`` (half of the raw copies into the temporary corpus are done),
    ``consolidate-copied`` (all are done; ``complete`` is not set yet), ``renamed``
    (the corpus is at ``--out``; the work folder is not removed yet).  Unset: a no-op.
    """
    if os.environ.get(PAUSE_ENV) == name:
        print(f"datagen: test pause at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (``<name>.tmp-<pid>-<8 hex>``)."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


#: ``errno`` values that mean the disk (or the user's quota, or a size limit) is full.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_failed(out: Path, err: OSError) -> OutputError:
    """The one-line error for a failed write of the build of ``out`` (a shard or the corpus).

    The complete shards stay in the work folder, so a rerun resumes."""
    reason = os.strerror(err.errno) if err.errno else (str(err).splitlines() or [type(err).__name__])[0]
    todo = "free space" if err.errno in DISK_FULL else "fix the cause"
    return OutputError(f"cannot write {out} ({reason}); {todo} or choose another --out, then rerun: "
                       "the complete shards are reused")


@contextmanager
def atomic_h5(path: str | os.PathLike, *, after_close: list | None = None) -> Iterator[h5py.File]:
    """Yield an HDF5 file open for writing that appears at ``path`` only once it is complete.

    Callables appended to ``after_close`` run with the temporary path once HDF5 has closed
    the file (raw writes into allocated datasets).  Then the file is synced, its root
    attribute ``complete`` is set to True (the last write: callers never set it), synced
    again and renamed to ``path``."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
            yield f
        for step in after_close or ():
            step(tmp)
        _fsync(tmp)
        with h5py.File(tmp, "r+", libver=_LIBVER) as f:
            f.attrs["complete"] = True
        _fsync(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path, *, of: str | None = None) -> int:
    """Delete the temporaries that killed :func:`atomic_h5` writers left in ``folder``: those of
    the file named ``of``, or of any file when ``of`` is None (a folder that is all ours, such
    as the work folder).  Only names of our exact pattern go; returns how many.

    Call it only while holding the output's lock (:mod:`datagen.lock`): a temporary of a live
    writer would be removed too.
    """
    n = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        m = _TEMPORARY.fullmatch(entry.name)
        if m and (of is None or m["target"] == of) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            n += 1
    return n


def work_dir(out: str | os.PathLike) -> Path:
    """The work folder of the build of ``out``: ``<out>.incomplete`` (shards, plan stamp)."""
    out = Path(out)
    return out.with_name(out.name + ".incomplete")


def shard_path(workdir: Path, index: int) -> Path:
    return workdir / "shards" / f"shard-{index:05d}.h5"


def write_shard(path: Path, parts: dict[str, list[np.ndarray]], dtypes: dict[str, np.dtype],
                shapes: dict[str, tuple[int, ...]], attrs: dict) -> None:
    """Write one shard (uncompressed) and its attributes (:func:`atomic_h5` sets ``complete`` last).

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


def _field_header(split: str, field: str, dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{split}/{field}|{np.dtype(dtype).str}|{','.join(map(str, shape))}"


def content_sha256(field_digests: dict[str, str], source_keys: list[str]) -> str:
    """Combine per-dataset digests (keyed by :func:`_field_header`) and the source keys."""
    h = hashlib.sha256(f"{FORMAT} v{FORMAT_VERSION}\n".encode())
    for header in sorted(field_digests, key=lambda s: (SPLITS.index(s.split("/", 1)[0]), s)):
        h.update(f"{header}={field_digests[header]}\n".encode())
    h.update(hashlib.sha256("\n".join(source_keys).encode()).hexdigest().encode())
    return h.hexdigest()


#: Attributes that :func:`provenance_sha256` leaves out: itself, and the flag set after it.
_UNHASHED_ATTRS = ("provenance_sha256", "complete")


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, np.generic):
        return json.dumps(value.item())
    return value if isinstance(value, str) else json.dumps(value)


def provenance_sha256(f: h5py.File) -> str:
    """SHA-256 of a corpus's provenance: every root attribute (but :data:`_UNHASHED_ATTRS`) and
    every column of the ``/sources`` table, by name.

    Stored as the ``provenance_sha256`` attribute by :func:`consolidate` and checked by
    ``datagen verify``, so that an edited ``dataset_id``, seed, manifest or source row is
    caught as surely as an edited sample (``content_sha256`` covers the samples).
    """
    h = hashlib.sha256(f"{FORMAT} provenance v1\n".encode())
    for name in sorted(f.attrs):
        if name not in _UNHASHED_ATTRS:
            h.update(f"attr {name}={_attr_text(f.attrs[name])}\n".encode("utf-8", "surrogateescape"))
    table = f.get("sources")
    for col in sorted(table) if isinstance(table, h5py.Group) else ():
        ds = table[col]
        values = ds[...]
        if values.dtype.kind in "OSU":
            data = "\x00".join(v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
                                for v in values.ravel()).encode("utf-8", "surrogateescape")
        else:
            data = np.ascontiguousarray(values).tobytes()
        h.update(f"sources {col}|{values.dtype.kind}|{values.shape}|{hashlib.sha256(data).hexdigest()}\n".encode())
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


#: ``doc`` of the ``/sources`` columns every corpus has; the others are per-image statistics of the
#: generator (the second value of its ``make``).
SOURCE_COLUMN_DOCS = {
    "key": "source image key, SOURCE:IMAGE (e.g. builtin:coffee)",
    "split": "the split of the image's samples: train, val or test",
    "sha256": "SHA-256 of the source image file (of image and mask together for a pair)",
    "samples": "number of samples made from the image; its rows are consecutive in /<split>/*",
    "role": "primary (makes samples) or a companion's role (used by other images' samples)",
}


def _describe_field(ds: h5py.Dataset, split: str, field: str, info: dict) -> None:
    """The attributes of ``/<split>/<field>``: ``doc`` and ``units`` from the field's declaration
    (``info``: the ``fields`` root attribute's entry), ``dtype`` and ``rows``."""
    ds.attrs["doc"] = info.get("doc") or field
    if info.get("units"):
        ds.attrs["units"] = info["units"]
    ds.attrs["dtype"] = np.dtype(ds.dtype).name
    ds.attrs["rows"] = (f"one per sample of the {split} split, in /sources order; /{split}/source[i] is "
                        "sample i's row of /sources")


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
            for i, done in enumerate([pool.submit(_copy_range, c, fd) for c in copies]):
                done.result()
                if i == len(copies) // 2:
                    pause_point("consolidate-copy")
    finally:
        os.close(fd)


def consolidate(out: Path, shards: list[tuple[Path, str, int]], fields: dict[str, tuple[str, tuple[int, ...]]],
                *, sources: list[dict], digests: dict[int, dict[str, str]], attrs: dict,
                compression: str = "none", chunks: dict[str, tuple[int, ...]] | None = None) -> str:
    """Stitch shards into the corpus file ``out`` (atomically); returns ``content_sha256``.

    ``shards`` is ``[(path, split, n_samples)]`` in canonical order; ``fields`` maps each
    field to ``(dtype, per-sample shape)``; ``sources`` is the ``/sources`` table as rows (in
    index order, with ``split`` and ``samples``); ``digests`` maps a source index to its
    :func:`image_digests`, computed by the workers; ``chunks`` the per-sample HDF5 chunk of the
    fields that declare one (compressed corpora; :class:`datagen.generators.base.Field`).

    Uncompressed corpora are stitched by copying each shard dataset's raw bytes into the
    contiguous, pre-allocated dataset of the corpus (``copy_file_range``: no pass through
    Python, the digests are the workers'); compressed ones are read and written by HDF5.
    """
    totals = {s: sum(n for _, sp, n in shards if sp == s) for s in SPLITS}
    raw = compression == "none"
    field_digests: dict[str, str] = {}
    after_close: list = []
    declared = attrs.get("fields") or {}
    with atomic_h5(out, after_close=after_close) as f:
        datasets = {}
        for split in SPLITS:
            grp = f.create_group(split)
            grp.attrs["doc"] = (f"the {split} split: one dataset per field, row i of each is sample i "
                                f"({totals[split]} samples)")
            for field in sorted(fields):
                dtype, shape = fields[field]
                full = (totals[split], *shape)
                if raw:
                    datasets[split, field] = _contiguous_dataset(grp, field, full, dtype)
                elif not totals[split]:   # an empty split: no chunk fits a zero-length dataset
                    datasets[split, field] = grp.create_dataset(field, shape=full, dtype=dtype)
                else:   # compressed datasets need chunks: the field's own, or ~64k elements per chunk
                    rows = max(1, min(totals[split], 65536 // int(np.prod(shape, dtype=np.int64))))
                    chunk = (1, *chunks[field]) if chunks and field in chunks else (rows, *shape)
                    datasets[split, field] = grp.create_dataset(field, shape=full, dtype=dtype, chunks=chunk,
                                                                compression=compression)
                _describe_field(datasets[split, field], split, field, declared.get(field, {}))
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
        after_close.append(lambda tmp: pause_point("consolidate-copied"))
        src = f.create_group("sources")
        src.attrs["doc"] = "the source images, one row per image in index order; one dataset per column"
        for col in sources[0] if sources else ("key",):
            values = [row[col] for row in sources]
            if values and isinstance(values[0], str):
                ds = src.create_dataset(col, data=np.array(values, dtype=h5py.string_dtype()))
            elif any(isinstance(v, float) for v in values):
                ds = src.create_dataset(col, data=np.asarray(values, dtype=np.float64))
            else:
                ds = src.create_dataset(col, data=np.asarray(values, dtype=np.int64))
            ds.attrs["doc"] = SOURCE_COLUMN_DOCS.get(col, f"per-image statistic of the {attrs.get('generator', '')} "
                                                          "generator")
        digest = content_sha256(field_digests, [row["key"] for row in sources])
        for k, v in attrs.items():
            f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=True)
        f.attrs["content_sha256"] = digest
        f.attrs["field_digests"] = json.dumps(field_digests, sort_keys=True)
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["provenance_sha256"] = provenance_sha256(f)
    return digest
