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
what it is, which metrics / methods use it, which source formats are accepted, and three
functions over one in-memory form, a ``dict`` of float64 arrays: ``parse`` (any accepted source
-> arrays), ``dump`` (arrays -> bytes of the stored file) and ``load`` (stored bytes -> arrays).

* ``niqe`` -> ``niqe_modelparameters.mat``, arrays ``mu`` (36,) and ``cov`` (36x36): the NIQE
  pristine multivariate Gaussian, stored as the MATLAB v5 file (``mu_prisparam`` 1x36,
  ``cov_prisparam`` 36x36) pyiqa's NIQE reads.  Sources: an ``.npz`` with ``mu_pris_param`` /
  ``cov_pris_param`` (basicsr's ``niqe_pris_params.npz``) or the MATLAB release's
  ``niqe_modelparameters.mat``.
* ``brisque`` -> ``brisque_svm_weights.pth``, arrays ``sv_coef`` (N,) and ``sv`` (Nx36): stored as
  the ``(sv_coef, sv)`` tuple of float64 tensors pyiqa's BRISQUE reads; pyiqa builds in gamma 0.05
  and rho -153.591 (the official LIVE model).  Sources: the LIVE libsvm text model (``allmodel``,
  e.g. ``brisque_allmodel_live.txt``) or an already converted ``.pth``.

Import
------
:func:`import_weights` validates the source (a one-line :class:`WeightsSourceError` naming the file
and what to do), converts it, and writes the result atomically (temporary name in the same
folder, fsync, ``os.replace``) next to a JSON sidecar ``<file>.json`` holding the sha256 of the
source and of the result, the source file name, the import time and the converter version.
Re-importing the same source is a no-op; a failed import leaves the folder as it was.  Sources
and stored files are read by :func:`datagen.safe_read.read_regular_file`: regular files only (never a FIFO or a
device such as ``/dev/zero``), at most :data:`MAX_WEIGHT_BYTES`.

Shipped metric files
--------------------
The NIQE and BRISQUE model files ship inside the package, in their source formats, in
``bench/metrics/iqa_models/`` (``README.md`` there: source and terms), with their sha256 pinned
in the spec (``shipped``, ``shipped_sha256``).  They are used when nothing is imported, so a fresh
installation reports real NIQE and BRISQUE values; an imported file takes precedence.

Use
---
Nothing in the weights folder is trusted for being there.  :func:`load_weights` reads the stored
file once, checks its sha256 against the digest :func:`_trusted_sha256` names (today: the
sidecar ``bench weights import`` wrote), and parses those same bytes without running code from
them (``torch.load(..., weights_only=True)``, ``scipy.io.loadmat``, ``np.load(allow_pickle=False)``).
A file without a sidecar, or with a sidecar whose sha256 differs (e.g. a hand-placed
``brisque_svm_weights.pth``), raises a one-line :class:`WeightsUnusable` that says to re-import it.
Users of the weights (e.g. :mod:`bench.metrics.iqa`) get arrays, never paths.

Method weights
--------------
The catalog (:func:`catalog`) is the metric weights of :data:`WEIGHTS` plus the weights that
registered methods declare in ``Method.WEIGHTS`` (``name -> description``), found by importing
each method class when the catalog is read (:func:`method_weights`).  A method weight ``NAME`` is
a torch state dict: shipped inside the package as ``methods/weights/NAME.pt`` with an optional
model card ``NAME.json`` beside it (:func:`shipped_file`, :func:`model_card`), or imported with
``bench weights import NAME FILE`` (the file must load with ``torch.load(weights_only=True)`` as a
dict of tensors or ``{"state_dict": ...}``; stored as ``NAME.pt`` with the same sidecar, at most
:data:`MAX_METHOD_WEIGHT_BYTES`).  :func:`resolve_weights` picks the file a method uses: a path
given by the user (``--weights``, origin ``"user"``) > the imported file, verified against its
sidecar (``"imported"``) > the shipped file (``"shipped"``), and returns its path and sha256.
Shipped files are trusted like the package's code; a model card whose ``weights.sha256`` differs
is reported by :func:`weight_status` (``card_matches``), not refused.

Source folders (a method's own release format)
----------------------------------------------
A method may also accept its weights as a *folder* in another format (e.g. the authors' release
of ``karaali2022``: one MATLAB ``.mat`` per TensorFlow variable) by naming a converter in the
class attribute ``WEIGHT_CONVERTERS = {weight name: "module:function"}``.  The function takes the
folder's path and returns an object with ``state_dict`` (``{name: tensor}``), ``files``
(``{relative file name: sha256}``, every file it read) and ``sha256`` (its digest of the folder,
independent of where the folder lies); it reads the files as data only (never executes them) and
raises a one-line :class:`~datagen.errors.UserError` naming the file and what it expected.  Then

* ``bench weights import NAME DIR`` stores the converted state dict as ``NAME.pt`` (a plain
  ``torch.save`` of the dict: byte-identical on every import of the same folder) with the usual
  sidecar, whose ``source_sha256`` is the folder digest and ``source_files`` the per-file digests;
  a file ``bench weights import NAME FILE`` is still read as a torch state dict;
* ``--weights DIR`` (``bench predict`` / ``bench run``) is accepted as it is: :func:`resolve_weights`
  converts it once to check it (one-line :class:`WeightsSourceError` when it is malformed) and
  records the folder digest as its sha256 (``source_files`` in ``run.json``); the method is given
  the folder and converts it in memory.  :func:`weights_digest` gives that digest for the run's
  per-task check that the weights did not change.
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
from datagen.safe_read import UnreadableFile, read_regular_file

__all__ = [
    "ENV_VAR",
    "MAX_METHOD_WEIGHT_BYTES",
    "MAX_WEIGHT_BYTES",
    "WEIGHTS",
    "ResolvedWeights",
    "UnknownWeightError",
    "WeightSpec",
    "WeightsMissing",
    "WeightsSourceError",
    "WeightsUnusable",
    "card_for",
    "catalog",
    "import_weights",
    "list_weights",
    "load_weights",
    "method_weights",
    "model_card",
    "register_weight",
    "resolve_method_weights",
    "resolve_weights",
    "shipped_file",
    "stored_identity",
    "weight_path",
    "weight_status",
    "weights_digest",
    "weights_dir",
]

ENV_VAR = "DEFOCUSBENCH_WEIGHTS"
#: Folder of the metric model files shipped in the package (``bench/metrics/iqa_models/``).
METRIC_MODELS_DIR = "iqa_models"
DEFAULT_DIR = Path("~") / ".cache" / "defocusbench" / "weights"

NIQE_FEATURES = 36
BRISQUE_FEATURES = 36
BRISQUE_GAMMA = 0.05       # built into pyiqa's BRISQUE ("original" version)
BRISQUE_RHO = -153.591

#: Largest weight file read, as a source to import or as a stored file (bytes; a
#: :class:`WeightSpec` may set its own ``max_bytes``).  Generous for the real files: the NIQE
#: .mat / .npz are ~10 kB, the LIVE BRISQUE libsvm text ~0.3 MB and its .pth ~0.2 MB.
MAX_WEIGHT_BYTES = 16 * 2**20
#: Largest method weight file (a torch state dict) read, as a source or a stored / shipped file
#: (bytes); MobileNetV2 of galetto2022 is ~9 MB in float32.
MAX_METHOD_WEIGHT_BYTES = 64 * 2**20
#: Largest sidecar read (bytes); a real one is ~0.4 kB.
MAX_SIDECAR_BYTES = 64 * 2**10
#: Largest model card read (bytes).
MAX_CARD_BYTES = 4 * 2**20

Arrays = dict[str, np.ndarray]


class WeightsSourceError(UserError):
    """A source file given to :func:`import_weights` is missing, unreadable or of the wrong kind."""


class UnknownWeightError(UserError):
    """A weight name that is not in :data:`WEIGHTS`."""


class WeightsUnusable(UserError):
    """The stored file of a weight may not be used: unreadable, not verified against its sidecar,
    or not loadable; the one-line message says to re-import it."""


class WeightsMissing(WeightsUnusable):
    """A weight's file has not been imported (``bench weights import NAME FILE``)."""


class _Invalid(Exception):
    """What is wrong with a file's content (a phrase); callers add the file and what to do."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str                          # stored as weights_dir() / filename
    description: str
    used_by: tuple[str, ...]               # metric / method names
    sources: tuple[str, ...]               # accepted source formats, in words (for messages and `list`)
    parse: Callable[[Path, bytes], Arrays]  # (source path, its bytes) -> arrays; raises _Invalid
    dump: Callable[[Arrays], bytes]         # arrays -> bytes of the stored file
    load: Callable[[Path, bytes], Arrays]   # (stored path, its bytes) -> arrays; runs no code from the file
    converter_version: int = 1
    max_bytes: int = MAX_WEIGHT_BYTES       # largest source / stored file read
    kind: str = "metric"                    # "metric" (WEIGHTS) or "method" (declared by a method)
    shipped: str | None = None              # metric weights: a source file in bench/metrics/iqa_models/
    shipped_sha256: str | None = None       # ... and its pinned digest
    folder_converter: str | None = None     # method weights: "module:function" converting a source *folder*

    @property
    def accepts_folder(self) -> bool:
        return self.folder_converter is not None

    @property
    def import_hint(self) -> str:
        return f"bench weights import {self.name} FILE"


# --------------------------------------------------------------------------------------------
# formats: parse (source -> arrays), dump (arrays -> stored bytes), load (stored bytes -> arrays)
# --------------------------------------------------------------------------------------------

_NIQE_MU_KEYS = ("mu_pris_param", "mu_prisparam")
_NIQE_COV_KEYS = ("cov_pris_param", "cov_prisparam")
_MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
#: fixed 116-byte MAT-file description, so the converted file is byte-identical on every import
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by defocusbench (bench.weights)".ljust(116, b" ")


def _niqe_arrays(src: Path, raw: bytes) -> Arrays:
    """``{"mu": (36,), "cov": (36, 36)}`` float64 from an .npz or a MATLAB v5 .mat (no pickles)."""
    if raw.startswith(_ZIP_MAGIC) or src.suffix.lower() == ".npz":
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as err:  # noqa: BLE001 - BadZipFile, ValueError, OSError, ... for corrupt files
            raise _Invalid(f"not a readable .npz ({type(err).__name__}: {err})") from None
        kind = ".npz"
    elif raw[:128].startswith(b"MATLAB 7.3") or raw[512:520] == _HDF5_MAGIC:
        raise _Invalid("is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it with save(..., '-v7')")
    elif raw.startswith(_MAT5_MAGIC) or src.suffix.lower() == ".mat":
        import scipy.io
        try:
            arrays = {k: v for k, v in scipy.io.loadmat(io.BytesIO(raw)).items() if not k.startswith("__")}
        except Exception as err:  # noqa: BLE001 - scipy raises several types for corrupt files
            raise _Invalid(f"not a readable MATLAB .mat file ({type(err).__name__}: {err})") from None
        kind = ".mat"
    else:
        raise _Invalid("is neither an .npz archive nor a MATLAB .mat file")

    def pick(keys: tuple[str, ...]) -> np.ndarray:
        for k in keys:
            if k in arrays:
                return arrays[k]
        found = ", ".join(sorted(arrays)) or "none"
        raise _Invalid(f"{kind} has no {' / '.join(keys)} (arrays found: {found})")

    mu, cov = pick(_NIQE_MU_KEYS), pick(_NIQE_COV_KEYS)
    try:
        mu = np.asarray(mu, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Invalid("mu / cov are not numeric arrays") from None
    n = NIQE_FEATURES
    if mu.size != n or sum(d > 1 for d in mu.shape) > 1:
        raise _Invalid(f"mu has shape {mu.shape}, NIQE expects {n} values")
    if cov.shape != (n, n):
        raise _Invalid(f"cov has shape {cov.shape}, NIQE expects {n}x{n}")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise _Invalid("mu / cov hold NaN or infinite values")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
        raise _Invalid("cov is not symmetric (a covariance matrix must be)")
    return {"mu": mu.ravel(), "cov": cov}


def _niqe_dump(arrays: Arrays) -> bytes:
    """The MATLAB v5 file pyiqa's NIQE reads (``mu_prisparam`` 1x36, ``cov_prisparam``), byte-stable."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"mu_prisparam": arrays["mu"].reshape(1, -1), "cov_prisparam": arrays["cov"]},
                     format="5", do_compression=False)
    return _MAT_DESCRIPTION + buf.getvalue()[len(_MAT_DESCRIPTION):]   # drop savemat's timestamp


def _brisque_from_libsvm(src: Path, raw: bytes) -> Arrays:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Invalid("is neither text (a libsvm model) nor a torch .pth file") from None
    lines = text.splitlines()
    try:
        sv_at = next(i for i, line in enumerate(lines) if line.strip() == "SV")
    except StopIteration:
        raise _Invalid("has no 'SV' line: not a libsvm model file") from None

    header: dict[str, str] = {}
    for lineno, line in enumerate(lines[:sv_at], start=1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) != 2:
            raise _Invalid(f"header line {lineno} {line.strip()[:40]!r} is not 'key value'")
        header[parts[0]] = parts[1].strip()
    if header.get("kernel_type", "rbf") != "rbf":
        raise _Invalid(f"kernel_type is {header['kernel_type']}, pyiqa's BRISQUE needs an rbf model")
    for key, want in (("gamma", BRISQUE_GAMMA), ("rho", BRISQUE_RHO)):
        if key not in header:
            raise _Invalid(f"header has no {key} (pyiqa's BRISQUE uses {key} {want})")
        try:
            got = float(header[key].split()[0])
        except ValueError:
            raise _Invalid(f"header {key} {header[key]!r} is not a number") from None
        if not math.isclose(got, want, rel_tol=1e-9):
            raise _Invalid(f"{key} is {got} but pyiqa's BRISQUE is fixed to {key} {want} (the LIVE model)")

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
                    raise _Invalid(f"line {lineno} has feature index {idx}; BRISQUE expects {BRISQUE_FEATURES} features")
                row[idx - 1] = value
                last = idx
        except ValueError:
            raise _Invalid(f"line {lineno} {line.strip()[:40]!r} does not parse as "
                       "'coefficient index:value ...' (libsvm)") from None
        if not (math.isfinite(coef) and np.isfinite(row).all()):
            raise _Invalid(f"line {lineno} holds NaN or infinite values")
        max_index = max(max_index, last)
        coefs.append(coef)
        rows.append(row)
    if not rows:
        raise _Invalid("has no support vectors after the 'SV' line")
    if max_index != BRISQUE_FEATURES:
        raise _Invalid(f"support vectors have {max_index} features; BRISQUE expects {BRISQUE_FEATURES}")
    if "total_sv" in header:
        try:
            total = int(header["total_sv"].split()[0])
        except ValueError:
            raise _Invalid(f"header total_sv {header['total_sv']!r} is not a number") from None
        if total != len(rows):
            raise _Invalid(f"header says total_sv {total} but the file holds {len(rows)} support vectors "
                       "(truncated or corrupt)")
    return {"sv_coef": np.asarray(coefs, dtype=np.float64), "sv": np.stack(rows)}


def _brisque_from_pth(src: Path, raw: bytes) -> Arrays:
    """``{"sv_coef": (N,), "sv": (N, 36)}`` float64 from a ``(sv_coef, sv)`` .pth, loaded with
    ``weights_only=True`` (tensors and containers only: a pickle that would run code is refused)."""
    import torch

    if raw.startswith(_ZIP_MAGIC):
        try:
            members = zipfile.ZipFile(io.BytesIO(raw)).namelist()
        except zipfile.BadZipFile:
            raise _Invalid("is a damaged zip archive, not a readable torch .pth file") from None
        if members and all(m.endswith(".npy") for m in members):
            raise _Invalid("is a numpy .npz archive, not a torch .pth file")
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises several types for corrupt files
        raise _Invalid(f"not a readable torch .pth of plain tensors ({type(err).__name__}: corrupt, truncated, "
                       "or holding objects that torch.load(weights_only=True) refuses)") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(torch.is_tensor(t) for t in obj)):
        raise _Invalid(f"holds a {type(obj).__name__}, not the (sv_coef, sv) tuple of tensors pyiqa loads")
    coef = obj[0].detach().to(torch.float64).numpy()
    sv = obj[1].detach().to(torch.float64).numpy()
    if coef.ndim == 2 and 1 in coef.shape:
        coef = coef.ravel()
    if coef.ndim != 1 or coef.size == 0:
        raise _Invalid(f"sv_coef has shape {tuple(obj[0].shape)}, expected (N,)")
    if sv.shape != (coef.size, BRISQUE_FEATURES):
        raise _Invalid(f"sv has shape {tuple(obj[1].shape)}, expected ({coef.size}, {BRISQUE_FEATURES}): "
                   f"BRISQUE expects {BRISQUE_FEATURES} features")
    if not (np.isfinite(coef).all() and np.isfinite(sv).all()):
        raise _Invalid("sv_coef / sv hold NaN or infinite values")
    return {"sv_coef": coef, "sv": sv}


def _brisque_parse(src: Path, raw: bytes) -> Arrays:
    if raw.startswith(_ZIP_MAGIC) or src.suffix.lower() in (".pth", ".pt"):
        return _brisque_from_pth(src, raw)
    return _brisque_from_libsvm(src, raw)


def _brisque_dump(arrays: Arrays) -> bytes:
    """The ``(sv_coef, sv)`` tuple of float64 tensors pyiqa's BRISQUE reads."""
    import torch

    buf = io.BytesIO()
    torch.save((torch.from_numpy(arrays["sv_coef"].copy()), torch.from_numpy(arrays["sv"].copy())), buf)
    return buf.getvalue()


def _state_dict_parse(src: Path, raw: bytes) -> Arrays:
    """The ``{name: tensor}`` state dict of a torch file read with ``weights_only=True`` (a pickle
    that would run code is refused before anything runs); ``{"state_dict": ...}`` / ``{"model": ...}``
    checkpoints are unwrapped.  Tensors come back detached, on the CPU, in the file's order."""
    import torch

    from methods.torch_inference import unwrap_state_dict

    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt zip, truncated file, forbidden pickle global, ...
        raise _Invalid(f"not a torch file readable with weights_only=True ({type(err).__name__}: corrupt, "
                       "truncated, or holding objects that would run code)") from None
    state = unwrap_state_dict(obj, torch)
    if state is None:
        raise _Invalid(f"holds a {type(obj).__name__}, not a state dict (a dict of parameter names to tensors)")
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _state_dict_dump(arrays: Arrays) -> bytes:
    """A plain state dict file (``torch.save`` of ``{name: tensor}``)."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(arrays), buf)
    return buf.getvalue()


def _same(a, b) -> bool:
    if type(a).__module__.startswith("torch"):
        import torch
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return np.array_equal(a, b)


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
        parse=_niqe_arrays,
        dump=_niqe_dump,
        load=_niqe_arrays,
        shipped="niqe_pris_params.npz",
        shipped_sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    ),
    "brisque": WeightSpec(
        name="brisque",
        filename="brisque_svm_weights.pth",
        description="BRISQUE SVR on LIVE (official allmodel: RBF gamma 0.05, rho -153.591, 36 features)",
        used_by=("brisque",),
        sources=("libsvm text model (allmodel, e.g. brisque_allmodel_live.txt)",
                 "pyiqa brisque_svm_weights.pth ((sv_coef, sv) tuple of tensors)"),
        parse=_brisque_parse,
        dump=_brisque_dump,
        load=_brisque_from_pth,
        shipped="brisque_allmodel_live.txt",
        shipped_sha256="f95f47571d61a4c6cfcbdad92b37651c029880091b2b9fe6d7d523b1cfbb4dbe",
    ),
}


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a weight (e.g. a method's) to :data:`WEIGHTS`; re-registering the same name replaces it."""
    WEIGHTS[spec.name] = spec
    return spec


_STATE_DICT_SOURCE = "torch state dict (.pt / .pth read with weights_only=True: {name: tensor} or {'state_dict': ...})"


def _method_spec(name: str, description: str, used_by: tuple[str, ...], folder_converter: str | None = None) -> WeightSpec:
    sources: tuple[str, ...] = (_STATE_DICT_SOURCE,)
    if folder_converter:
        sources += (_folder_source_format(folder_converter),)
    return WeightSpec(
        name=name, filename=f"{name}.pt", description=description, used_by=used_by,
        sources=sources, parse=_state_dict_parse, dump=_state_dict_dump, load=_state_dict_parse,
        max_bytes=MAX_METHOD_WEIGHT_BYTES, kind="method", folder_converter=folder_converter)


def _load_converter(target: str) -> Callable:
    """The function named by a ``"module:function"`` folder-converter target (imported when used)."""
    import importlib

    module, _, attr = target.partition(":")
    try:
        func = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise UserError(f"weights folder converter {target!r} cannot be imported ({type(err).__name__}: {err})") from None
    if not callable(func):
        raise UserError(f"weights folder converter {target!r} is not a function")
    return func


def _folder_source_format(target: str) -> str:
    """What the converter ``target`` accepts, in words (its ``source_format`` attribute or module global)."""
    try:
        func = _load_converter(target)
        import sys
        words = getattr(func, "source_format", None) or getattr(sys.modules.get(func.__module__), "source_format", None)
    except Exception:  # noqa: BLE001 - a broken converter must not hide the catalog; import reports it
        words = None
    return str(words) if words else f"a folder converted by {target}"


@dataclass(frozen=True)
class _FolderSource:
    """A converted source folder: its state dict, the sha256 of each file it read (relative name ->
    digest) and the folder's digest over them."""
    state_dict: dict
    files: dict[str, str]
    sha256: str


def _convert_folder(spec: WeightSpec, folder: Path) -> _FolderSource:
    """Run ``spec``'s folder converter on ``folder`` (data only: the converter parses, never executes);
    its one-line :class:`UserError` becomes a :class:`WeightsSourceError` of this weight."""
    import torch

    func = _load_converter(spec.folder_converter)
    try:
        out = func(folder)
    except UserError as err:
        raise WeightsSourceError(str(err)) from None
    state, files, sha = getattr(out, "state_dict", None), getattr(out, "files", None), getattr(out, "sha256", None)
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())
            and isinstance(files, dict) and isinstance(sha, str)):
        raise RuntimeError(f"bench.weights: converter {spec.folder_converter} returned {type(out).__name__}, "
                           "not an object with state_dict (name -> tensor), files (name -> sha256) and sha256")
    return _FolderSource({k: v.detach().cpu().contiguous() for k, v in state.items()}, dict(files), sha)


def weights_digest(name: str, path: str | os.PathLike) -> str:
    """The sha256 that identifies the user's weights ``path`` of weight ``name``: of the file's bytes,
    or, for a folder accepted by the weight's folder converter, the converter's digest over the files
    it reads (e.g. karaali2022: ``"<relative name>\0<sha256>\n"`` over the .mat files, sorted)."""
    spec = _spec(name)
    path = Path(path).expanduser()
    if path.is_dir() and spec.accepts_folder:
        return _convert_folder(spec, path).sha256
    return _sha256_bytes(_read_weight(spec, path, "--weights"))


def method_weights() -> dict[str, WeightSpec]:
    """Specs of the weights that registered methods declare (``Method.WEIGHTS``), by weight name.

    Imports each registered method class (lazily: only when this is called); a method that cannot
    be imported is skipped here (``bench list methods`` reports it).  A name that is also a metric
    weight of :data:`WEIGHTS` stays the metric weight."""
    from methods import get_method, list_methods

    found: dict[str, tuple[str, list[str]]] = {}
    converters: dict[str, str] = {}
    for method in list_methods():
        try:
            cls = get_method(method)
            declared = dict(getattr(cls, "WEIGHTS", None) or {})
            folder = dict(getattr(cls, "WEIGHT_CONVERTERS", None) or {})
        except Exception:  # noqa: BLE001, S112 - a broken plug-in must not hide the other weights
            continue
        for name, description in declared.items():
            if name not in WEIGHTS:
                found.setdefault(str(name), (str(description), []))[1].append(method)
                if isinstance(folder.get(name), str):
                    converters.setdefault(str(name), folder[name])
    return {name: _method_spec(name, desc, tuple(users), converters.get(name))
            for name, (desc, users) in sorted(found.items())}


def catalog() -> dict[str, WeightSpec]:
    """Every known weight: the metric weights of :data:`WEIGHTS` and the methods' (:func:`method_weights`)."""
    return {**method_weights(), **WEIGHTS}


def _spec(name: str) -> WeightSpec:
    if name in WEIGHTS:
        return WEIGHTS[name]
    methods = method_weights()
    if name not in methods:
        raise UnknownWeightError(unknown_name("weight", name, {**methods, **WEIGHTS}))
    return methods[name]


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


def _read_sidecar(path: Path) -> dict | None:
    """The sidecar of the stored file ``path`` as a dict, or ``None`` when absent or unreadable."""
    try:
        data = json.loads(read_regular_file(_sidecar(path), limit=MAX_SIDECAR_BYTES))
    except (UnreadableFile, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _trusted_sha256(spec: WeightSpec, path: Path) -> tuple[str | None, str]:
    """``(digest, why)``: the sha256 the stored file ``path`` of ``spec`` must have, or ``None`` and why not.

    The one place that decides which digest makes a stored file usable: today the ``sha256`` of the
    sidecar :func:`import_weights` wrote.  (The metric files shipped inside the package are checked
    against ``WeightSpec.shipped_sha256`` in :func:`_verified_bytes`.)
    """
    side = _read_sidecar(path)
    sha = side.get("sha256") if side else None
    if isinstance(sha, str):
        return sha, ""
    if not _sidecar(path).exists():
        return None, f"has no sidecar {_sidecar(path).name} (only files stored by bench weights import are used)"
    return None, f"has an unreadable sidecar {_sidecar(path).name}"


def _verified_bytes(spec: WeightSpec) -> tuple[Path, bytes, bool]:
    """``(path, bytes, shipped)`` of the file of ``spec`` in use, read once and checked against its
    trusted sha256: the imported file when there is one, else the file shipped in the package (metric
    weights; checked against ``spec.shipped_sha256``; ``shipped`` is True).  The shipped file is in a
    *source* format, so :func:`load_weights` parses it with ``spec.parse`` (the imported one with
    ``spec.load``)."""
    path = weights_dir() / spec.filename
    redo = f"re-import it: {spec.import_hint}"
    shipped = _shipped_metric_file(spec)
    if not path.exists() and shipped is not None:
        raw = _read_weight(spec, shipped, "shipped file")
        if _sha256_bytes(raw) != spec.shipped_sha256:
            raise WeightsUnusable(f"weights not verified: the shipped file {shipped} does not match its pinned sha256 "
                                  f"(the installation is damaged; reinstall the package or run: {spec.import_hint})")
        return shipped, raw, True
    try:
        raw = read_regular_file(path, limit=spec.max_bytes, what="weight files (MAX_WEIGHT_BYTES)")
    except UnreadableFile as err:
        if not path.exists():
            raise WeightsMissing(f"weights missing: {path}; run: {spec.import_hint}") from None
        raise WeightsUnusable(f"weights unusable: {path} {err}; {redo}") from None
    want, why = _trusted_sha256(spec, path)
    if want is not None and _sha256_bytes(raw) != want:
        why = f"does not match the sha256 in its sidecar {_sidecar(path).name} (changed after import)"
    if why:
        raise WeightsUnusable(f"weights not verified: {path} {why}; {redo}")
    return path, raw, False


def verify_weights(name: str) -> Path:
    """The path of weight ``name`` when its stored file matches its trusted sha256 (cheap: hashes
    well under 1 MB, imports neither torch nor scipy); raises :class:`WeightsMissing` /
    :class:`WeightsUnusable` (one line, saying to re-import) otherwise."""
    return _verified_bytes(_spec(name))[0]


def load_weights(name: str) -> Arrays:
    """The arrays of weight ``name`` (see :data:`WEIGHTS`), from its verified stored file.

    The file is read once; those bytes are checked against the trusted sha256 and parsed by the
    spec's ``load``, which runs no code from the file.  Raises :class:`WeightsMissing` or
    :class:`WeightsUnusable` (one line, saying to re-import).
    """
    spec = _spec(name)
    path, raw, shipped = _verified_bytes(spec)
    try:
        return (spec.parse if shipped else spec.load)(path, raw)
    except _Invalid as err:
        raise WeightsUnusable(f"weights unusable: {path}: {err}; re-import it: {spec.import_hint}") from None


def stored_identity(name: str) -> tuple:
    """``(size, mtime_ns, inode)`` of weight ``name``'s stored file and of its sidecar (``None`` where
    absent): a key for caches of :func:`load_weights` that changes when either file is replaced."""
    path = weight_path(name)

    def ident(p: Path):
        try:
            st = p.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    return (str(path), ident(path), ident(_sidecar(path)))


def _shipped_metric_file(spec: WeightSpec) -> Path | None:
    """The source file of metric weight ``spec`` shipped in ``bench/metrics/iqa_models/``, or ``None``."""
    if spec.kind != "metric" or not spec.shipped:
        return None
    from importlib import resources
    try:
        path = Path(str(resources.files("bench.metrics") / METRIC_MODELS_DIR / spec.shipped))
    except (ModuleNotFoundError, OSError, TypeError):  # pragma: no cover - a package without files
        return None
    return path if path.is_file() else None


def shipped_file(name: str) -> Path | None:
    """The file of weight ``name`` shipped in the package, or ``None`` when it is not there: a
    method's ``methods/weights/NAME.pt``, a metric's source file in ``bench/metrics/iqa_models/``
    (see its ``README.md`` for source and terms)."""
    spec = _spec(name)
    if spec.kind != "method":
        return _shipped_metric_file(spec)
    folder = _shipped_dir()
    path = folder / spec.filename if folder else None
    return path if path is not None and path.is_file() else None


def _shipped_dir() -> Path | None:
    from importlib import resources

    from methods.torch_inference import WEIGHTS_DIR, WEIGHTS_PACKAGE
    try:
        return Path(str(resources.files(WEIGHTS_PACKAGE) / WEIGHTS_DIR))
    except (ModuleNotFoundError, OSError, TypeError):  # pragma: no cover - a package without files
        return None


def model_card(name: str) -> dict | None:
    """The model card (``methods/weights/NAME.json``) of method weight ``name``, or ``None`` when
    there is none or it is not a JSON object."""
    spec = _spec(name)
    folder = _shipped_dir() if spec.kind == "method" else None
    if folder is None:
        return None
    try:
        card = json.loads(read_regular_file(folder / f"{spec.name}.json", limit=MAX_CARD_BYTES))
    except (UnreadableFile, ValueError):
        return None
    return card if isinstance(card, dict) else None


def card_for(resolved: ResolvedWeights) -> dict | None:
    """The model card that describes exactly the file ``resolved`` (its ``weights.sha256`` equals the
    file's), or ``None``: the shipped card for shipped weights; for a user's file, the
    ``model_card.json`` that ``bench train`` wrote beside it."""
    spec = _spec(resolved.name)
    if spec.kind != "method":
        return None
    if resolved.origin == "shipped":
        card = model_card(resolved.name)
    elif resolved.origin == "user":
        try:
            card = json.loads(read_regular_file(resolved.path.parent / "model_card.json", limit=MAX_CARD_BYTES))
        except (UnreadableFile, ValueError):
            return None
    else:
        return None
    if not isinstance(card, dict) or _card_summary(card).get("sha256") != resolved.sha256:
        return None
    return card


def _card_summary(card: dict | None) -> dict:
    """Key figures of a model card: profile, epochs, best val accuracy (or SSIM), test accuracy (or
    SSIM), weights sha256."""
    if not card:
        return {}

    def get(*path):
        cur = card
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return cur

    out = {"profile": get("profile"), "epochs": get("epochs_run"), "val_acc": get("val", "best", "acc"),
           "test_acc": get("test", "acc"), "sha256": get("weights", "sha256")}
    if get("val", "best", "ssim") is not None:       # a restoration model: SSIM (the metric it is selected by)
        out |= {"val_ssim": get("val", "best", "ssim"), "test_ssim": get("test", "ssim")}
    return out


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights file a method uses: ``origin`` ``"user"`` (``--weights``), ``"imported"`` or
    ``"shipped"``, its absolute ``path`` and the ``sha256`` of its bytes."""
    name: str
    origin: str
    path: Path
    sha256: str
    source_files: dict[str, str] | None = None   # a source folder: sha256 of each file read (relative name)

    def record(self) -> dict:
        """``{"origin", "path", "sha256"}`` (``run.json``), plus ``source_files`` for a folder."""
        rec = {"origin": self.origin, "path": str(self.path), "sha256": self.sha256}
        if self.source_files is not None:
            rec["source_files"] = dict(self.source_files)
        return rec


def _read_weight(spec: WeightSpec, path: Path, what: str) -> bytes:
    try:
        return read_regular_file(path, limit=spec.max_bytes, what="weight files")
    except UnreadableFile as err:
        raise WeightsUnusable(f"{spec.name} weights: {what} {path} {err}") from None


def resolve_weights(name: str, user_path: str | os.PathLike | None = None) -> ResolvedWeights:
    """The file weight ``name`` is used from: ``user_path`` when given > the imported file (verified
    against its sidecar) > the file shipped in the package.  Raises (one line)
    :class:`WeightsMissing` when there is none, :class:`WeightsUnusable` when the chosen one cannot
    be read or an imported file fails its sidecar check (never a silent fall-back to another file)."""
    spec = _spec(name)
    if user_path is not None:
        path = Path(user_path).expanduser().absolute()
        if not path.exists():
            raise WeightsMissing(f"{name} weights: --weights {path} does not exist")
        if path.is_dir() and spec.accepts_folder:      # e.g. the authors' release, converted when used
            src = _convert_folder(spec, path)
            return ResolvedWeights(name, "user", path, src.sha256, src.files)
        return ResolvedWeights(name, "user", path, _sha256_bytes(_read_weight(spec, path, "--weights")))
    stored = weights_dir() / spec.filename
    if stored.exists() or _shipped_metric_file(spec) is not None:   # imported > a metric's shipped file
        path, raw, from_package = _verified_bytes(spec)
        return ResolvedWeights(name, "shipped" if from_package else "imported", path.absolute(), _sha256_bytes(raw))
    shipped = shipped_file(name)     # a method's file shipped in the package
    if shipped is not None:
        return ResolvedWeights(name, "shipped", shipped.absolute(), _sha256_bytes(_read_weight(spec, shipped, "shipped file")))
    where = " and none is shipped in the package" if spec.kind == "method" else ""
    raise WeightsMissing(f"weights missing: {name} is not imported ({stored}){where}; run: {spec.import_hint}"
                         + (" or pass --weights PATH" if spec.kind == "method" else ""))


def resolve_method_weights(method: str, user: dict[str, str | os.PathLike] | None = None) -> dict[str, ResolvedWeights]:
    """:func:`resolve_weights` of every weight method ``method`` declares (``{}`` for none); ``user``
    maps a weight name to the user's file.  A method gets one ``weights=`` path, so a method that
    declares several weights is a :class:`UserError`."""
    from methods import get_method

    declared = list(get_method(method).WEIGHTS or {})
    if len(declared) > 1:
        raise UserError(f"{method} declares {len(declared)} weights ({', '.join(declared)}); "
                        "bench passes one weights path to a method")
    user = user or {}
    return {w: resolve_weights(w, user.get(w)) for w in declared}


def weight_status(name: str) -> dict:
    """``name, kind ("metric" / "method"), path, present, sha256 (None when absent), origin,
    source_sha256, imported_at, used_by, description`` plus ``filename``, ``sources``,
    ``source_file``, ``verified`` (the stored file's sha256 matches its sidecar, i.e. it may be used;
    ``None`` when there is no sidecar, e.g. a file copied by hand, which is never used) and
    ``state``: ``"verified"`` (usable), ``"unverified"`` (present but not usable: re-import it) or
    ``"missing"``.  ``origin`` is ``"imported"`` or ``"shipped"`` (the file :func:`resolve_weights`
    uses without ``--weights``) or ``None``.  Method weights add ``shipped_path``, ``card`` (the
    model card or ``None``), ``card_summary`` and ``card_matches`` (the card's weights sha256 equals
    the shipped file's; ``None`` without a card sha256).  Never raises for a known name."""
    spec = _spec(name)
    path = weights_dir() / spec.filename
    present = path.is_file()
    try:
        sha = _sha256_bytes(read_regular_file(path, limit=spec.max_bytes, what="weight files (MAX_WEIGHT_BYTES)")) if present else None
    except UnreadableFile:
        sha = None
    side = _read_sidecar(path) if present else None
    verified = (sha is not None and side.get("sha256") == sha) if side else None
    row = {
        "name": spec.name,
        "kind": spec.kind,
        "path": str(path),
        "present": present,
        "state": "verified" if verified else "unverified" if present else "missing",
        "origin": "imported" if present else None,
        "sha256": sha,
        "source_sha256": side.get("source_sha256") if side else None,
        "source_file": side.get("source_file") if side else None,
        "imported_at": side.get("imported_at") if side else None,
        "verified": verified,
        "used_by": list(spec.used_by),
        "description": spec.description,
        "filename": spec.filename,
        "sources": list(spec.sources),
    }
    if spec.kind == "metric":
        shipped = _shipped_metric_file(spec)
        row["shipped_path"] = str(shipped) if shipped else None
        if not present and shipped is not None:
            try:
                sha = _sha256_bytes(_verified_bytes(spec)[1])
                row.update(path=str(shipped), present=True, state="verified", origin="shipped", sha256=sha,
                           verified=True, source_file=spec.shipped)
            except WeightsUnusable:
                row.update(path=str(shipped), present=True, state="unverified", origin=None, verified=False)
    if spec.kind == "method":
        shipped = shipped_file(name)
        card = model_card(name)
        summary = _card_summary(card)
        shipped_sha = None
        if shipped is not None:
            try:
                shipped_sha = _sha256_bytes(read_regular_file(shipped, limit=spec.max_bytes, what="weight files"))
            except UnreadableFile:
                shipped = None
        if not present and shipped is not None:
            row.update(path=str(shipped), present=True, state="verified", origin="shipped", sha256=shipped_sha)
        card_sha = summary.get("sha256")
        row.update(shipped_path=str(shipped) if shipped else None, card=card, card_summary=summary,
                   card_matches=None if not (card_sha and shipped_sha) else card_sha == shipped_sha)
    return row


def list_weights() -> list[dict]:
    """:func:`weight_status` of every weight of the :func:`catalog` (metrics and methods), sorted by name."""
    return [weight_status(name) for name in sorted(catalog())]


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------

def _atomic_write_pair(path: Path, data: bytes, sidecar: bytes) -> None:
    """Replace ``path`` and its sidecar; on any failure no temporary file is left behind.

    Both temporaries are complete and fsynced before the first rename; the data file is renamed
    first, so a crash between the two renames leaves a sidecar whose ``sha256`` does not match
    (``weight_status(...)["verified"] is False``; the file is not used; re-importing repairs it).
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


def _convert(spec: WeightSpec, src: Path, raw: bytes) -> bytes:
    """Source bytes -> bytes of the stored file, checked to load back (as users load it) to the same arrays."""
    try:
        arrays = spec.parse(src, raw)
    except _Invalid as err:
        raise WeightsSourceError(f"{spec.name} weights: {src.name}: {err}; give {' or '.join(spec.sources)}") from None
    data = spec.dump(arrays)
    back = spec.load(Path(spec.filename), data)
    if back.keys() != arrays.keys() or not all(_same(back[k], arrays[k]) for k in arrays):
        raise RuntimeError(f"bench.weights: {spec.name}: the stored file does not load back to the imported arrays")
    return data


def import_weights(name: str, source_path: str | os.PathLike) -> Path:
    """Check ``source_path``, convert it to weight ``name``'s file and store it; returns its path.

    Raises :class:`WeightsSourceError` (one line: the file, what is wrong, what to give instead)
    for a missing / unreadable / not regular (FIFO, device) / too large (:data:`MAX_WEIGHT_BYTES`) /
    wrong-format / corrupt source, :class:`UnknownWeightError` for an unknown name and
    :class:`~datagen.errors.OutputError` when the folder cannot be written.
    Importing the source the stored file came from (same sha256, same converter) changes nothing.
    """
    spec = _spec(name)
    src = Path(source_path).expanduser()
    expected = " or ".join(spec.sources)
    if spec.accepts_folder and src.is_dir():
        return _import_folder(spec, src)
    try:
        raw = read_regular_file(src, limit=spec.max_bytes, what="weight files (MAX_WEIGHT_BYTES)")
    except UnreadableFile as err:
        raise WeightsSourceError(f"{name} weights: source {src} {err}; give the path to {expected}") from None
    if not raw:
        raise WeightsSourceError(f"{name} weights: {src.name} is empty; give {expected}")
    source_sha = _sha256_bytes(raw)

    dest = weights_dir() / spec.filename
    side = _read_sidecar(dest) if dest.is_file() else None
    if side and side.get("source_sha256") == source_sha and side.get("converter_version") == spec.converter_version:
        try:
            return verify_weights(name)
        except WeightsUnusable:
            pass                                   # damaged since: convert and store again

    data = _convert(spec, src, raw)
    folder = writable_dir(dest.parent, hint=f"set {ENV_VAR} to a writable folder")
    dest = folder / spec.filename
    record = _sidecar_record(spec, data, src, source_sha, converter=f"bench.weights:{spec.parse.__name__}")
    _atomic_write_pair(dest, data, (json.dumps(record, indent=2) + "\n").encode())
    return dest


def _sidecar_record(spec: WeightSpec, data: bytes, src: Path, source_sha: str, *, converter: str, **extra) -> dict:
    """The sidecar record of an imported weight file ``data`` converted from ``src``."""
    return {
        "name": spec.name,
        "file": spec.filename,
        "sha256": _sha256_bytes(data),
        "size": len(data),
        "source_file": src.name,
        "source_sha256": source_sha,
        **extra,
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "converter": converter,
        "converter_version": spec.converter_version,
    }


def _import_folder(spec: WeightSpec, src: Path) -> Path:
    """:func:`import_weights` of a source *folder* through ``spec.folder_converter``: the state dict it
    returns is stored as ``spec.filename`` (a plain torch state dict, byte-stable across imports of the
    same folder) with the usual sidecar, whose ``source_sha256`` is the converter's digest of the folder
    and ``source_files`` the sha256 of each file it read."""
    converted = _convert_folder(spec, src)
    dest = weights_dir() / spec.filename
    side = _read_sidecar(dest) if dest.is_file() else None
    if (side and side.get("source_sha256") == converted.sha256 and side.get("converter_version") == spec.converter_version
            and side.get("converter") == spec.folder_converter):
        try:
            return verify_weights(spec.name)
        except WeightsUnusable:
            pass                                   # damaged since: store again
    data = spec.dump(converted.state_dict)
    back = spec.load(Path(spec.filename), data)
    if back.keys() != converted.state_dict.keys() or not all(_same(back[k], converted.state_dict[k]) for k in back):
        raise RuntimeError(f"bench.weights: {spec.name}: the stored file does not load back to the converted tensors")
    folder = writable_dir(dest.parent, hint=f"set {ENV_VAR} to a writable folder")
    dest = folder / spec.filename
    record = _sidecar_record(spec, data, src, converted.sha256, converter=spec.folder_converter, source_kind="folder",
                             source_files=converted.files)
    _atomic_write_pair(dest, data, (json.dumps(record, indent=2) + "\n").encode())
    return dest
