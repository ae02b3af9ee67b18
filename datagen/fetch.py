"""Download and unpack public source datasets (``datagen fetch``): checksummed and resumable.

Layout under ``DEST``::

    DEST/.downloads/NAME.part       partial download (kept on failure; a rerun resumes it)
    DEST/.downloads/NAME.corrupt    a download whose size or SHA-256 did not match
    DEST/.downloads/NAME.complete   marker "NAME SIZE SHA256": FOLDER was extracted from it
    DEST/FOLDER/                    the extracted archive (e.g. DIV2K_train_HR/*.png)

A rerun skips every archive whose folder and marker both exist, without touching the
network.  Only the standard library is used.

Bounds (a hostile mirror or checksums file cannot fill the disk): a download never writes
more than the archive's declared size (the checksum table's ``SIZE``; a server that announces
or sends more is refused), and an archive is unpacked only if its members' declared sizes
sum to at most :data:`MAX_UNPACK_RATIO` times the archive size (zip bombs expand 1000x; the
PNG archives we fetch do not compress at all).  A failed unpack removes its staging folder.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .errors import OutputError, SourceError, UserError, writable_dir
from .filehash import file_sha256

CHUNK = 1 << 20  # bytes per read and write step
#: Largest accepted (sum of members' uncompressed sizes) / (archive size).
MAX_UNPACK_RATIO = 4
_SHA256 = re.compile(r"[0-9a-f]{64}")

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Archive:
    """One downloadable zip archive of a dataset."""

    name: str    # file name on the server, e.g. "DIV2K_train_HR.zip"
    size: int    # bytes
    sha256: str  # lower-case hex digest
    folder: str  # top-level folder the zip extracts to, e.g. "DIV2K_train_HR"


#: name -> (default base URL, archives).  DIV2K sizes and SHA-256 digests are those of
#: TFDS ``tensorflow_datasets/url_checksums/div2k.txt`` for the official ETH Zurich files.
DATASETS: dict[str, tuple[str, tuple[Archive, ...]]] = {
    "div2k": ("https://data.vision.ee.ethz.ch/cvl/DIV2K/", (
        Archive("DIV2K_train_HR.zip", 3530603713,
                "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", "DIV2K_train_HR"),
        Archive("DIV2K_valid_HR.zip", 448993893,
                "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", "DIV2K_valid_HR"),
    )),
}


def fetch(dataset: str, dest: str | os.PathLike, *, base_url: str | None = None,
          checksums: str | os.PathLike | None = None, progress: ProgressCallback | None = None,
          timeout: float = 60.0) -> Path:
    """Download, verify and extract every archive of ``dataset`` into ``dest``.

    Parameters
    ----------
    dataset : str
        A key of :data:`DATASETS`, e.g. ``"div2k"``.
    dest : str or os.PathLike
        Folder that becomes the dataset root (created if needed).
    base_url : str, optional
        Server or mirror to download from instead of the official one.
    checksums : str or os.PathLike, optional
        Text file of ``NAME SIZE SHA256`` lines overriding the built-in size and digest
        of the archives it names (blank lines and ``#`` comments allowed).
    progress : callable, optional
        Called as ``progress(name, bytes_done, bytes_total)`` when each download starts (``bytes_done``:
        what an interrupted download already has), then every 1 % of it (``datagen fetch`` draws
        :class:`datagen.progress.Progress` from these calls).
    timeout : float
        Seconds to wait for the server on connect and on each read.

    Returns
    -------
    pathlib.Path
        ``dest``, now holding one folder per archive.

    Raises
    ------
    UserError
        Unknown dataset, bad checksums file, network failure (rerun to resume), checksum
        mismatch, unsafe or corrupt archive (:class:`SourceError`); unwritable ``dest`` or a
        folder there that this function did not create (:class:`OutputError`).
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; known datasets: {', '.join(sorted(DATASETS))}")
    default_url, archives = DATASETS[dataset]
    if checksums is not None:
        archives = _override(archives, Path(checksums))
    root = Path(dest).expanduser()
    pending = [a for a in archives if not _is_done(root, a)]
    for archive in pending:
        if (root / archive.folder).exists():
            raise OutputError(f"{root / archive.folder} already exists and was not extracted by datagen fetch; "
                              "move it away or pass another --dest")
    downloads = writable_dir(root / ".downloads", hint="pass a writable --dest")
    base = (base_url or default_url).rstrip("/") + "/"
    for archive in pending:
        url = base + urllib.parse.quote(archive.name)
        zip_path = _download(archive, url, downloads, progress=progress, timeout=timeout)
        _extract(zip_path, archive, root)
        zip_path.unlink()
    return root


def read_checksums(path: Path) -> dict[str, tuple[int, str, int]]:
    """Parse a checksums file into ``{name: (size, sha256, line number)}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read checksums file {path}: {exc}; pass a readable text file") from exc
    table = {}
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[1].isdigit() or not _SHA256.fullmatch(fields[2].lower()):
            raise SourceError(f"{path}:{number}: expected 'NAME SIZE SHA256' (size in bytes, 64 hex digits), "
                              f"got {raw.strip()!r}")
        table[fields[0]] = (int(fields[1]), fields[2].lower(), number)
    return table


def _override(archives: tuple[Archive, ...], path: Path) -> tuple[Archive, ...]:
    table = read_checksums(path)
    known = {a.name for a in archives}
    for name, (_, _, number) in table.items():
        if name not in known:
            raise SourceError(f"{path}:{number}: unknown archive {name!r}; expected one of {', '.join(sorted(known))}")
    return tuple(replace(a, size=table[a.name][0], sha256=table[a.name][1]) if a.name in table else a
                 for a in archives)


def _marker(root: Path, archive: Archive) -> Path:
    return root / ".downloads" / f"{archive.name}.complete"


def _is_done(root: Path, archive: Archive) -> bool:
    return (root / archive.folder).is_dir() and _marker(root, archive).is_file()


def _download(archive: Archive, url: str, downloads: Path, *, progress: ProgressCallback | None,
              timeout: float) -> Path:
    """Fetch ``url`` into ``downloads/NAME`` (via ``NAME.part``) and verify it."""
    final, part = downloads / archive.name, downloads / f"{archive.name}.part"
    if final.is_file():  # verified by an earlier run that stopped before extracting: verify again
        os.replace(final, part)
    have = part.stat().st_size if part.is_file() else 0
    if have < archive.size:
        _transfer(url, part, have, archive, progress=progress, timeout=timeout)
        have = part.stat().st_size
        if have < archive.size:
            raise SourceError(f"download of {url} stopped after {have} of {archive.size} bytes; "
                              f"rerun the same command to resume from {part}")
    _verify(part, archive, url)
    os.replace(part, final)
    return final


def _transfer(url: str, part: Path, start: int, archive: Archive, *, progress: ProgressCallback | None,
              timeout: float) -> None:
    """Append to ``part`` from byte ``start`` (or rewrite it when the server ignores Range),
    never past ``archive.size`` bytes: a longer body is refused (:func:`_too_long`)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc, part) from exc
    with response:
        done = start if start and response.status == 206 else 0
        announced = response.headers.get("Content-Length")
        if announced and announced.strip().isdigit() and done + int(announced) > archive.size:
            raise _too_long(url, archive, f"announces {done + int(announced)} bytes,")
        step, next_report = max(CHUNK, archive.size // 100), done + max(CHUNK, archive.size // 100)
        if progress is not None:
            progress(archive.name, done, archive.size)
        try:
            with open(part, "ab" if done else "wb") as out:
                for chunk in _chunks(response, url, part, archive.size - done):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None and (done >= next_report or done >= archive.size):
                        progress(archive.name, done, archive.size)
                        next_report = done + step
        except OSError as exc:
            raise OutputError(f"cannot write {part}: {exc.strerror or exc}; free disk space or pass another --dest") \
                from exc
        if done >= archive.size and _read(response, url, part, 1):
            os.replace(part, part.with_name(f"{archive.name}.corrupt"))
            raise _too_long(url, archive, "sends")


def _too_long(url: str, archive: Archive, what: str) -> SourceError:
    return SourceError(f"cannot download {url}: the server {what} more than the declared {archive.size} bytes of "
                       f"{archive.name}; check --base-url and the --checksums entry")


def _read(response, url: str, part: Path, size: int) -> bytes:
    try:
        return response.read(size)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc, part) from exc


def _chunks(response, url: str, part: Path, limit: int):
    """Yield at most ``limit`` bytes of the body of ``response``, in :data:`CHUNK` pieces,
    turning read errors into UserErrors."""
    while limit > 0:
        chunk = _read(response, url, part, min(CHUNK, limit))
        if not chunk:
            return
        limit -= len(chunk)
        yield chunk


def _network_error(url: str, exc: BaseException, part: Path) -> SourceError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    return SourceError(f"cannot download {url}: {reason}; check the network or --base-url, "
                       f"then rerun the same command to resume from {part}")


def _verify(part: Path, archive: Archive, url: str) -> None:
    """Check size and SHA-256; on mismatch rename to ``NAME.corrupt`` and raise."""
    size = part.stat().st_size
    digest = file_sha256(part) if size == archive.size else None
    if digest == archive.sha256:
        return
    got = f"sha256 {digest}" if digest else f"{size} bytes"
    corrupt = part.with_name(f"{archive.name}.corrupt")
    os.replace(part, corrupt)
    raise SourceError(f"checksum mismatch for {archive.name} from {url}: expected {archive.size} bytes "
                      f"with sha256 {archive.sha256}, got {got}; moved it to {corrupt}; "
                      "rerun to download it again (or fix the --checksums entry)")


def _check_member(name: str, zip_path: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"[A-Za-z]:", name):
        raise SourceError(f"unsafe archive {zip_path}: member {name!r} would land outside the destination; "
                          "delete it and use a trusted mirror")


def _check_sizes(zf: zipfile.ZipFile, zip_path: Path, archive: Archive) -> None:
    """Refuse an archive whose members would unpack to more than :data:`MAX_UNPACK_RATIO` times
    its size (``zipfile`` never writes more than a member's declared size)."""
    total = sum(info.file_size for info in zf.infolist())
    if total > MAX_UNPACK_RATIO * archive.size:
        raise SourceError(f"archive {zip_path} would unpack to {total} bytes, more than {MAX_UNPACK_RATIO}x its "
                          f"{archive.size} bytes (a zip bomb?); delete it and use a trusted mirror")


def _extract(zip_path: Path, archive: Archive, root: Path) -> None:
    """Unzip into ``.extract-NAME.incomplete`` then move ``folder`` into place atomically;
    on any failure the staging folder is removed."""
    staging = root / f".extract-{archive.name}.incomplete"
    try:
        _unpack(zip_path, archive, staging)
        # The marker goes first: a folder with a marker is ours even if we stop right after the move.
        _marker(root, archive).write_text(f"{archive.name} {archive.size} {archive.sha256}\n", encoding="utf-8")
        os.replace(staging / archive.folder, root / archive.folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(zip_path: Path, archive: Archive, staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                _check_member(member, zip_path)
            _check_sizes(zf, zip_path, archive)
            zf.extractall(staging)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise SourceError(f"corrupt archive {zip_path}: {exc}; delete it and rerun to download again") from exc
    except OSError as exc:
        raise OutputError(f"cannot extract {zip_path} into {staging}: {exc.strerror or exc}; "
                          "free disk space or pass another --dest") from exc
    if not (staging / archive.folder).is_dir():
        raise SourceError(f"archive {zip_path} has no top-level folder {archive.folder}/; "
                          "check the mirror (--base-url) and delete the file to download again")
