"""One writer per output: an exclusive lock file beside what a command writes.

``datagen build --out X`` and ``bench run --out X`` (and anything else that writes a
result that another process could be writing at the same time) hold :func:`output_lock`
on ``X`` while they work.  The lock is ``<X>.lock``, a small JSON file naming the holder
(pid, host, command, start time), locked with ``flock(2)``:

* a second process that wants the same output fails at once with a one-line
  :class:`~datagen.errors.OutputError` naming the holder;
* the kernel drops the lock when its holder dies (``kill -9``, a crash, a power cut of a
  local disk), so a stale lock file left by a dead process is simply taken over;
* the file is removed when the holder releases it.  Removal cannot race a waiter: a
  process that locked a file which has since been unlinked or replaced (different inode
  at the path) lets it go and tries again.

The lock is advisory and per host for local file systems; on network file systems
``flock`` maps to POSIX locks where the server supports them (NFSv4).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``<target>.lock`` in the same folder."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']} ({info.get('command', '?')}, since {info.get('since', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def acquire(target: str | os.PathLike, *, what: str = "--out") -> int:
    """Lock ``target`` for this process; returns the lock's file descriptor (see :func:`release`).

    Raises a one-line :class:`OutputError` when another live process holds it, or when the
    lock file cannot be created (the folder is missing or read-only).
    """
    path = lock_path(target)
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise OutputError(f"{what} {target}: cannot create lock file {path} ({err.strerror or err}); "
                              "choose another output") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{what} {target} is in use by {_holder(path)}; wait for it to finish, stop it, "
                                  "or choose another output") from None
            raise OutputError(f"{what} {target}: cannot lock {path} ({err.strerror or err})") from None
        if not _same_file(fd, path):   # removed or replaced by its previous holder meanwhile: try again
            os.close(fd)
            continue
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else "",
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        data = (json.dumps(info, sort_keys=True) + "\n").encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            pass   # the lock holds without the note; only the message of a second process is poorer
        return fd
    raise OutputError(f"{what} {target}: its lock file {path} keeps changing; is another process racing for it?")


def release(target: str | os.PathLike, fd: int) -> None:
    """Remove the lock file of ``target`` and drop the lock held through ``fd``."""
    path = lock_path(target)
    try:
        if _same_file(fd, path):
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def output_lock(target: str | os.PathLike, *, what: str = "--out") -> Iterator[Path]:
    """Hold the exclusive lock of ``target`` for the ``with`` block; yields the lock file's path."""
    fd = acquire(target, what=what)
    try:
        yield lock_path(target)
    finally:
        release(target, fd)
