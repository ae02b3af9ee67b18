"""Bounded reads of small files a user names: regular files only, never more than a limit.

The one reader for inputs that must not hang or exhaust memory when a user (or someone who can
drop files) points us at the wrong thing: manifests, weight files and their sidecars.  A FIFO
cannot block the open (``O_NONBLOCK``), the file is checked with ``fstat`` on the opened
descriptor (the file checked is the file read), so ``/dev/zero``, a FIFO, a socket or a folder is
refused, and at most ``limit + 1`` bytes are ever read.
"""
from __future__ import annotations

import os
import stat

_READ_CHUNK = 1 << 20


class UnreadableFile(Exception):
    """``str(err)`` is a predicate to follow the file's name: "is not a regular file (...)"."""


def read_regular_file(path: str | os.PathLike, *, limit: int, what: str = "files of this kind") -> bytes:
    """The bytes of the regular file ``path`` (symlinks followed), which may hold at most ``limit`` bytes.

    ``what`` names the kind of file in the too-large message ("the limit for {what}").  Read in
    chunks of at most 1 MiB and never past ``limit + 1`` bytes, so a file that grows while being
    read is refused too.  Raises :class:`UnreadableFile`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableFile("not found") from None
    except IsADirectoryError:
        raise UnreadableFile("is a folder, not a file") from None
    except OSError as err:
        raise UnreadableFile(f"cannot be read ({err.strerror or err}; check its permissions)") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UnreadableFile("is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile("is not a regular file (a FIFO, device or socket)")
        too_big = UnreadableFile(f"is larger than {limit} bytes, the limit for {what}")
        if st.st_size > limit:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        while block := os.read(fd, min(_READ_CHUNK, limit + 1 - total)):
            chunks.append(block)
            total += len(block)
            if total > limit:
                raise too_big
        return b"".join(chunks)
    except OSError as err:
        raise UnreadableFile(f"cannot be read ({err.strerror or err})") from None
    finally:
        os.close(fd)
