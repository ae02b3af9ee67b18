"""User-facing errors and the exit-code convention shared by every ``datagen`` verb.

A :class:`UserError` is a problem with what the user gave us (a manifest, a path, an
image, a flag).  The CLI prints its message as one line and exits with
:data:`EXIT_USAGE`; it never shows a traceback for it.  Anything else that escapes is a
bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1        # a check ran and failed (``datagen verify``)
EXIT_USAGE = 2         # bad input: manifest, paths, images, flags
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(Exception):
    """Bad input.  ``str(err)`` is a single line that names the field or file and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

    def __reduce__(self):  # keep the exact message when Dask ships it back from a worker
        return (type(self), (str(self),))


class ManifestError(UserError):
    """The manifest is malformed or inconsistent."""


class SourceError(UserError):
    """A source root, folder or image cannot be used."""


class OutputError(UserError):
    """The output path cannot be written, or holds something we must not overwrite."""


class VerificationError(Exception):
    """A corpus file failed an integrity check (``datagen verify`` exits 1)."""


def writable_dir(path: str | os.PathLike, *, hint: str) -> Path:
    """Create ``path`` (with parents) and check it is writable, or raise a one-line :class:`OutputError`.

    ``hint`` says what to do instead, e.g. ``"choose another --out"``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create folder {path} ({err.strerror or err}); {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {path} (permission denied); {hint}")
    return path


def unknown_name(what: str, name: str, known) -> str:
    """One-line message for an unknown registry name, with close matches (``difflib``) or the list.

    >>> unknown_name("method", "zhuo", ["zhuo_sim", "entropy"])
    "unknown method 'zhuo'; did you mean zhuo_sim?"
    """
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or '(none)'}"
    return f"unknown {what} {name!r}; {hint}"


def validation_message(error: dict, loc: str) -> str:
    """One line for one pydantic error entry (``ValidationError.errors()[i]``) at field path ``loc``."""
    loc = loc or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key; remove it or check its spelling"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    got = error.get("input")
    got = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    msg = error["msg"]
    return f"{loc}: {msg[0].lower() + msg[1:]}{got}"


def describe_validation_error(err, prefix: str = "") -> str:
    """One line for the first error of a pydantic ``ValidationError``: the field path and what is wrong."""
    e = err.errors(include_url=False)[0]
    return validation_message(e, ".".join(str(p) for p in (prefix, *e["loc"]) if p != ""))


def stdout_closed() -> int:
    """For ``except BrokenPipeError`` in a CLI ``main``: the reader of our output went away
    (``| head``).  Point stdout at /dev/null so the interpreter's final flush stays quiet; exit 0."""
    import sys
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
