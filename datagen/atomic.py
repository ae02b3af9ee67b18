"""Files that appear complete or not at all: temporary name beside the target, fsync, rename.

The one place for this pattern for plain files (reports, weights, predictions); HDF5 files go
through :func:`datagen.writer.atomic_h5`, which uses :func:`fsync_dir` from here.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

#: Names :func:`write_temp` gives its temporaries: ``.<name>.<pid>.<8 hex>.tmp`` beside ``<name>``.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.\d+\.[0-9a-f]{8}\.tmp")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_target(name: str) -> str | None:
    """The file name a temporary of :func:`write_temp` named ``name`` was written for, else ``None``
    (to clean up after a writer that was killed before its rename)."""
    m = _TEMP_NAME.fullmatch(name)
    return m["target"] if m else None


def write_temp(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a fresh hidden temporary file beside ``path``, fsynced; returns its name.

    Nothing is left behind if the write fails.  The caller renames it (``os.replace``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (readers see the old or the new file, never a part)."""
    path = Path(path)
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
