"""Where weight files live and how user-provided files are imported (the one place that knows).

Folder
------
All weight files live flat in :func:`weights_dir`: ``$DEFOCUSBENCH_WEIGHTS`` when that variable
is set (and not empty), else ``~/.cache/defocusbench/weights``.  Nothing is ever downloaded: the
user gives a file they have and :func:`import_weights` checks and converts it
(``bench weights import NAME FILE``).

Registry
--------
:data:`WEIGHTS` maps a weight name to a :class:`WeightSpec`: the file name it is stored under,
what it is, which metrics / methods use it, which source formats are accepted and the converter
that turns a source into exactly the file its user loads.

* ``niqe`` -> ``niqe_modelparameters.mat``: the NIQE pristine multivariate Gaussian
  (``mu_prisparam`` 1x36, ``cov_prisparam`` 36x36), the MATLAB v5 file pyiqa's NIQE reads through
  ``scipy.io.loadmat``.  Sources: an ``.npz`` with ``mu_pris_param`` / ``cov_pris_param`` (basicsr's
  ``niqe_pris_params.npz``) or the MATLAB release's ``niqe_modelparameters.mat``.
* ``brisque`` -> ``brisque_svm_weights.pth``: the ``(sv_coef, sv)`` tuple of tensors (N and Nx36)
  pyiqa's BRISQUE reads with ``torch.load``; pyiqa builds in gamma 0.05 and rho -153.591 (the
  official LIVE model).  Sources: the LIVE libsvm text model (``allmodel``, e.g.
  ``brisque_allmodel_live.txt``) or an already converted ``.pth``.

Import
------
:func:`import_weights` validates the source (a one-line :class:`WeightsSourceError` naming the file
and what to do), converts it, and writes the result atomically (temporary name in the same
folder, fsync, ``os.replace``) next to a JSON sidecar ``<file>.json`` holding the sha256 of the
source and of the result, the source file name, the import time and the converter version.
Re-importing the same source is a no-op; a failed import leaves the folder as it was.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from datagen.atomic import fsync_dir, write_temp
from datagen.errors import UserError, unknown_name, writable_dir

__all__ = [
    "ENV_VAR",
    "WEIGHTS",
    "UnknownWeightError",
    "WeightSpec",
    "WeightsSourceError",
    "import_weights",
    "list_weights",
    "register_weight",
    "weight_path",
    "weight_status",
    "weights_dir",
]

ENV_VAR = "DEFOCUSBENCH_WEIGHTS"
DEFAULT_DIR = Path("~") / ".cache" / "defocusbench" / "weights"

NIQE_FEATURES = 36
BRISQUE_FEATURES = 36
BRISQUE_GAMMA = 0.05       # built into pyiqa's BRISQUE ("original" version)
BRISQUE_RHO = -153.591


class WeightsSourceError(UserError):
    """A source file given to :func:`import_weights` is missing, unreadable or of the wrong kind."""


class UnknownWeightError(UserError):
    """A weight name that is not in :data:`WEIGHTS`."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str                          # stored as weights_dir() / filename
    description: str
    used_by: tuple[str, ...]               # metric / method names
    sources: tuple[str, ...]               # accepted source formats, in words (for messages and `list`)
    converter: Callable[[Path, bytes], bytes]   # (source path, its bytes) -> bytes of the stored file
    converter_version: int = 1

    @property
    def import_hint(self) -> str:
        return f"bench weights import {self.name} FILE"


# --------------------------------------------------------------------------------------------
# converters: (source path, source bytes) -> bytes of the file the user of the weights loads
# --------------------------------------------------------------------------------------------

def _fail(name: str, src: Path, what: str, expected: str) -> WeightsSourceError:
    return WeightsSourceError(f"{name} weights: {src.name}: {what}; give {expected}")


_NIQE_EXPECTED = ("an .npz with mu_pris_param (36) and cov_pris_param (36x36) "
                  "or the MATLAB niqe_modelparameters.mat")
_NIQE_MU_KEYS = ("mu_pris_param", "mu_prisparam")
_NIQE_COV_KEYS = ("cov_pris_param", "cov_prisparam")
_MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
#: fixed 116-byte MAT-file description, so the converted file is byte-identical on every import
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by defocusbench (bench.weights)".ljust(116, b" ")


def _niqe_arrays(src: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    fail = lambda what: _fail("niqe", src, what, _NIQE_EXPECTED)
    if raw.startswith(_ZIP_MAGIC) or src.suffix.lower() == ".npz":
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as err:  # noqa: BLE001 - BadZipFile, ValueError, OSError, ... for corrupt files
            raise fail(f"not a readable .npz ({type(err).__name__}: {err})") from None
        kind = ".npz"
    elif raw[:128].startswith(b"MATLAB 7.3") or raw[512:520] == _HDF5_MAGIC:
        raise fail("is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it with save(..., '-v7')")
    elif raw.startswith(_MAT5_MAGIC) or src.suffix.lower() == ".mat":
        import scipy.io
        try:
            arrays = {k: v for k, v in scipy.io.loadmat(io.BytesIO(raw)).items() if not k.startswith("__")}
        except Exception as err:  # noqa: BLE001 - scipy raises several types for corrupt files
            raise fail(f"not a readable MATLAB .mat file ({type(err).__name__}: {err})") from None
        kind = ".mat"
    else:
        raise fail("is neither an .npz archive nor a MATLAB .mat file")

    def pick(keys: tuple[str, ...]) -> np.ndarray:
        for k in keys:
            if k in arrays:
                return arrays[k]
        found = ", ".join(sorted(arrays)) or "none"
        raise fail(f"{kind} has no {' / '.join(keys)} (arrays found: {found})")

    mu, cov = pick(_NIQE_MU_KEYS), pick(_NIQE_COV_KEYS)
    try:
        mu = np.asarray(mu, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("mu / cov are not numeric arrays") from None
    n = NIQE_FEATURES
    if mu.size != n or sum(d > 1 for d in mu.shape) > 1:
        raise fail(f"mu has shape {mu.shape}, NIQE expects {n} values")
    if cov.shape != (n, n):
        raise fail(f"cov has shape {cov.shape}, NIQE expects {n}x{n}")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise fail("mu / cov hold NaN or infinite values")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
        raise fail("cov is not symmetric (a covariance matrix must be)")
    return mu.reshape(1, n), cov


def _convert_niqe(src: Path, raw: bytes) -> bytes:
    import scipy.io

    mu, cov = _niqe_arrays(src, raw)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"mu_prisparam": mu, "cov_prisparam": cov}, format="5", do_compression=False)
    data = _MAT_DESCRIPTION + buf.getvalue()[len(_MAT_DESCRIPTION):]   # drop savemat's timestamp
    back = scipy.io.loadmat(io.BytesIO(data))                            # what pyiqa does
    assert np.array_equal(np.ravel(back["mu_prisparam"]), mu.ravel())
    assert np.array_equal(back["cov_prisparam"], cov)
    return data


_BRISQUE_EXPECTED = ("the LIVE libsvm model (allmodel, e.g. brisque_allmodel_live.txt) "
                     "or a pyiqa brisque_svm_weights.pth")


def _brisque_from_libsvm(src: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    fail = lambda what: _fail("brisque", src, what, _BRISQUE_EXPECTED)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("is neither text (a libsvm model) nor a torch .pth file") from None
    lines = text.splitlines()
    try:
        sv_at = next(i for i, line in enumerate(lines) if line.strip() == "SV")
    except StopIteration:
        raise fail("has no 'SV' line: not a libsvm model file") from None

    header: dict[str, str] = {}
    for lineno, line in enumerate(lines[:sv_at], start=1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) != 2:
            raise fail(f"header line {lineno} {line.strip()[:40]!r} is not 'key value'")
        header[parts[0]] = parts[1].strip()
    if header.get("kernel_type", "rbf") != "rbf":
        raise fail(f"kernel_type is {header['kernel_type']}, pyiqa's BRISQUE needs an rbf model")
    for key, want in (("gamma", BRISQUE_GAMMA), ("rho", BRISQUE_RHO)):
        if key not in header:
            raise fail(f"header has no {key} (pyiqa's BRISQUE uses {key} {want})")
        try:
            got = float(header[key].split()[0])
        except ValueError:
            raise fail(f"header {key} {header[key]!r} is not a number") from None
        if not math.isclose(got, want, rel_tol=1e-9):
            raise fail(f"{key} is {got} but pyiqa's BRISQUE is fixed to {key} {want} (the LIVE model)")

    coefs: list[float] = []
    rows: list[np.ndarray] = []
    max_index = 0
    for lineno, line in enumerate(lines[sv_at + 1:], start=sv_at + 2):
        parts = line.split()
        if not parts:
            continue
        row = np.zeros(BRISQUE_FEATURES, dtype=np.float64)
        try:
            coef = float(parts[0])
            last = 0
            for item in parts[1:]:
                idx_text, value_text = item.split(":")
                idx, value = int(idx_text), float(value_text)
                if idx <= last:
                    raise ValueError("indices must increase")
                if idx > BRISQUE_FEATURES:
                    raise fail(f"line {lineno} has feature index {idx}; BRISQUE expects {BRISQUE_FEATURES} features")
                row[idx - 1] = value
                last = idx
        except ValueError:
            raise fail(f"line {lineno} {line.strip()[:40]!r} does not parse as "
                       "'coefficient index:value ...' (libsvm)") from None
        if not (math.isfinite(coef) and np.isfinite(row).all()):
            raise fail(f"line {lineno} holds NaN or infinite values")
        max_index = max(max_index, last)
        coefs.append(coef)
        rows.append(row)
    if not rows:
        raise fail("has no support vectors after the 'SV' line")
    if max_index != BRISQUE_FEATURES:
        raise fail(f"support vectors have {max_index} features; BRISQUE expects {BRISQUE_FEATURES}")
    if "total_sv" in header:
        try:
            total = int(header["total_sv"].split()[0])
        except ValueError:
            raise fail(f"header total_sv {header['total_sv']!r} is not a number") from None
        if total != len(rows):
            raise fail(f"header says total_sv {total} but the file holds {len(rows)} support vectors "
                       "(truncated or corrupt)")
    return np.asarray(coefs, dtype=np.float64), np.stack(rows)


def _brisque_from_pth(src: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    import torch

    fail = lambda what: _fail("brisque", src, what, _BRISQUE_EXPECTED)
    if raw.startswith(_ZIP_MAGIC):
        try:
            members = zipfile.ZipFile(io.BytesIO(raw)).namelist()
        except zipfile.BadZipFile:
            raise fail("is a damaged zip archive, not a readable torch .pth file") from None
        if members and all(m.endswith(".npy") for m in members):
            raise fail("is a numpy .npz archive, not a torch .pth file")
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises several types for corrupt files
        raise fail(f"not a readable torch .pth file ({type(err).__name__}; corrupt or truncated?)") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(torch.is_tensor(t) for t in obj)):
        raise fail(f"holds a {type(obj).__name__}, not the (sv_coef, sv) tuple of tensors pyiqa loads")
    coef = obj[0].detach().to(torch.float64).numpy()
    sv = obj[1].detach().to(torch.float64).numpy()
    if coef.ndim == 2 and 1 in coef.shape:
        coef = coef.ravel()
    if coef.ndim != 1 or coef.size == 0:
        raise fail(f"sv_coef has shape {tuple(obj[0].shape)}, expected (N,)")
    if sv.shape != (coef.size, BRISQUE_FEATURES):
        raise fail(f"sv has shape {tuple(obj[1].shape)}, expected ({coef.size}, {BRISQUE_FEATURES}): "
                   f"BRISQUE expects {BRISQUE_FEATURES} features")
    if not (np.isfinite(coef).all() and np.isfinite(sv).all()):
        raise fail("sv_coef / sv hold NaN or infinite values")
    return coef, sv


def _convert_brisque(src: Path, raw: bytes) -> bytes:
    import torch

    if raw.startswith(_ZIP_MAGIC) or src.suffix.lower() in (".pth", ".pt"):
        coef, sv = _brisque_from_pth(src, raw)
    else:
        coef, sv = _brisque_from_libsvm(src, raw)
    buf = io.BytesIO()
    torch.save((torch.from_numpy(coef.copy()), torch.from_numpy(sv.copy())), buf)
    data = buf.getvalue()
    back = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)   # what pyiqa does
    assert torch.equal(back[0], torch.from_numpy(coef)) and torch.equal(back[1], torch.from_numpy(sv))
    return data


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

WEIGHTS: dict[str, WeightSpec] = {
    "niqe": WeightSpec(
        name="niqe",
        filename="niqe_modelparameters.mat",
        description="NIQE pristine-image model (MVG mean 36, covariance 36x36) of the MATLAB release",
        used_by=("niqe",),
        sources=(".npz with mu_pris_param / cov_pris_param (basicsr niqe_pris_params.npz)",
                 "MATLAB niqe_modelparameters.mat (mu_prisparam, cov_prisparam)"),
        converter=_convert_niqe,
    ),
    "brisque": WeightSpec(
        name="brisque",
        filename="brisque_svm_weights.pth",
        description="BRISQUE SVR on LIVE (official allmodel: RBF gamma 0.05, rho -153.591, 36 features)",
        used_by=("brisque",),
        sources=("libsvm text model (allmodel, e.g. brisque_allmodel_live.txt)",
                 "pyiqa brisque_svm_weights.pth ((sv_coef, sv) tuple of tensors)"),
        converter=_convert_brisque,
    ),
}


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a weight (e.g. a method's) to :data:`WEIGHTS`; re-registering the same name replaces it."""
    WEIGHTS[spec.name] = spec
    return spec


def _spec(name: str) -> WeightSpec:
    if name not in WEIGHTS:
        raise UnknownWeightError(unknown_name("weight", name, WEIGHTS))
    return WEIGHTS[name]


# --------------------------------------------------------------------------------------------
# paths and status
# --------------------------------------------------------------------------------------------

def weights_dir() -> Path:
    """``$DEFOCUSBENCH_WEIGHTS`` if set and not empty, else ``~/.cache/defocusbench/weights`` (not created)."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else DEFAULT_DIR.expanduser()


def weight_path(name: str) -> Path:
    """Where weight ``name`` is (or would be) stored; the file may not exist."""
    return weights_dir() / _spec(name).filename


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def weight_status(name: str) -> dict:
    """``name, path, present, sha256 (None when absent), source_sha256, imported_at, used_by,
    description`` plus ``filename``, ``sources``, ``source_file`` and ``verified`` (the file's
    sha256 matches its sidecar; ``None`` when there is no sidecar, e.g. a file copied by hand)."""
    spec = _spec(name)
    path = weights_dir() / spec.filename
    present = path.is_file()
    sha = _sha256_file(path) if present else None
    side = _read_sidecar(path) if present else None
    return {
        "name": spec.name,
        "path": str(path),
        "present": present,
        "sha256": sha,
        "source_sha256": side.get("source_sha256") if side else None,
        "source_file": side.get("source_file") if side else None,
        "imported_at": side.get("imported_at") if side else None,
        "verified": (side.get("sha256") == sha) if side else None,
        "used_by": list(spec.used_by),
        "description": spec.description,
        "filename": spec.filename,
        "sources": list(spec.sources),
    }


def list_weights() -> list[dict]:
    """:func:`weight_status` of every registered weight, sorted by name."""
    return [weight_status(name) for name in sorted(WEIGHTS)]


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------

def _atomic_write_pair(path: Path, data: bytes, sidecar: bytes) -> None:
    """Replace ``path`` and its sidecar; on any failure no temporary file is left behind.

    Both temporaries are complete and fsynced before the first rename; the data file is renamed
    first, so a crash between the two renames leaves a sidecar whose ``sha256`` does not match
    (``weight_status(...)["verified"] is False``; re-importing repairs it).
    """
    temps: list[Path] = []
    try:
        temps.append(write_temp(path, data))
        temps.append(write_temp(_sidecar(path), sidecar))
        os.replace(temps[0], path)
        os.replace(temps[1], _sidecar(path))
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)


def import_weights(name: str, source_path: str | os.PathLike) -> Path:
    """Check ``source_path``, convert it to weight ``name``'s file and store it; returns its path.

    Raises :class:`WeightsSourceError` (one line: the file, what is wrong, what to give instead)
    for a missing / unreadable / wrong-format / corrupt source, :class:`UnknownWeightError` for an
    unknown name and :class:`~datagen.errors.OutputError` when the folder cannot be written.
    Importing the source the stored file came from (same sha256, same converter) changes nothing.
    """
    spec = _spec(name)
    src = Path(source_path).expanduser()
    expected = " or ".join(spec.sources)
    if not src.exists():
        raise WeightsSourceError(f"{name} weights: source {src} not found; give the path to {expected}")
    if src.is_dir():
        raise WeightsSourceError(f"{name} weights: {src} is a folder, not a file; give the path to {expected}")
    try:
        raw = src.read_bytes()
    except OSError as err:
        raise WeightsSourceError(f"{name} weights: cannot read {src} ({err.strerror or err}); "
                                 "check its permissions") from None
    if not raw:
        raise WeightsSourceError(f"{name} weights: {src.name} is empty; give {expected}")
    source_sha = _sha256_bytes(raw)

    dest = weights_dir() / spec.filename
    side = _read_sidecar(dest) if dest.is_file() else None
    if (side and side.get("source_sha256") == source_sha
            and side.get("converter_version") == spec.converter_version
            and side.get("sha256") == _sha256_file(dest)):
        return dest

    data = spec.converter(src, raw)
    folder = writable_dir(dest.parent, hint=f"set {ENV_VAR} to a writable folder")
    dest = folder / spec.filename
    record = {
        "name": spec.name,
        "file": spec.filename,
        "sha256": _sha256_bytes(data),
        "size": len(data),
        "source_file": src.name,
        "source_sha256": source_sha,
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "converter": f"bench.weights:{spec.converter.__name__}",
        "converter_version": spec.converter_version,
    }
    _atomic_write_pair(dest, data, (json.dumps(record, indent=2) + "\n").encode())
    return dest
