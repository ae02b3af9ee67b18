"""The authors' released B-NET / E-NET weights -> a :class:`~methods.nets.karaali_nets.Karaali2022Net`
state dict (``METHODS.md`` §6.1).

The release (alikaraali/depth-edge-aware-dfe-tip2022, ``models_tf1x/``) holds one MATLAB v5 file
per TensorFlow variable, each with one array ``weights`` (float32)::

    models_tf1x/blur/0..21.mat   B-NET: 0-3 br41, 4-7 br27 (7 = the 1x1), 8-11 br15,
                                 12-15 b-NET convs (15 = the 1x1), 16/17, 18/19, 20/21 FC W/b
    models_tf1x/edge/0..25.mat   E-NET: 0-3 br41, 4-7 f2, 8-11 br27, 12-15 br15,
                                 16-19 e-NET convs, 20/21, 22/23, 24/25 FC W/b

Conversion: TF conv kernels are HWIO -> torch OIHW (``permute(3, 2, 0, 1)``); FC weights are
``(in, out)`` -> torch ``(out, in)`` (transposed); FC biases ``(1, out)`` -> ``(out,)``.  E-NET's f1
arrays (edge 0-3, 8-15) must be bit-identical to B-NET's (blur 0-11): the shared f1 is stored once
in the model (``enet.f1 is bnet.f1``), so a release where they differ is refused.

Files are read as data only: each is a regular file of at most :data:`MAX_MAT_BYTES` read with
:func:`datagen.safe_read.read_regular_file` and parsed by ``scipy.io.loadmat`` (no code runs).  A
missing, unreadable or malformed file, or an array of the wrong shape, is a one-line
:class:`WeightsFolderError` (a :class:`~datagen.errors.UserError`) naming the file and what is
expected.

Provenance: :func:`convert_folder` returns the sha256 of each file (relative name -> digest) and
:func:`folder_digest` combines them into one digest of the release (independent of where the
folder lies and of whether its parent or ``models_tf1x`` itself was given).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datagen.errors import UserError
from datagen.safe_read import UnreadableFile, read_regular_file

__all__ = [
    "BLUR_FILES",
    "EDGE_FILES",
    "MAX_MAT_BYTES",
    "ConvertedFolder",
    "WeightsFolderError",
    "convert_folder",
    "find_release",
    "folder_digest",
    "source_format",
]

#: Largest .mat file read (the largest real one, 256x64 3x3 kernels, is ~0.6 MB).
MAX_MAT_BYTES = 8 * 2**20
BLUR_FILES = 22
EDGE_FILES = 26
_RELEASE = "models_tf1x"

#: What :mod:`bench.weights` says this converter accepts (``bench weights list``, error messages).
source_format = ("the authors' released folder models_tf1x/ (blur/0..21.mat, edge/0..25.mat; "
                 "or the folder holding models_tf1x)")


class WeightsFolderError(UserError):
    """The authors' weights folder is missing a file, holds a malformed one, or is inconsistent."""


def _conv(name: str, k: int, cin: int) -> tuple[str, tuple[int, ...], str]:
    return name, (k, k, cin, 64), "conv"


def _trunk41(prefix: str) -> list:
    return [_conv(f"{prefix}.conv1", 3, 3), _conv(f"{prefix}.conv2", 3, 64),
            _conv(f"{prefix}.conv3", 3, 64), _conv(f"{prefix}.conv4", 3, 64)]


def _trunk27(prefix: str) -> list:
    return [_conv(f"{prefix}.conv1", 3, 3), _conv(f"{prefix}.conv2", 3, 64),
            _conv(f"{prefix}.conv3", 3, 64), _conv(f"{prefix}.conv4", 1, 64)]


def _head(prefix: str, cin: int, classes: int) -> list:
    return [_conv(f"{prefix}.conv1", 3, cin), _conv(f"{prefix}.conv2", 3, 64),
            _conv(f"{prefix}.conv3", 3, 64), _conv(f"{prefix}.conv4", 1, 64),
            (f"{prefix}.fc1", (64, 300), "fc_w"), (f"{prefix}.fc1", (1, 300), "fc_b"),
            (f"{prefix}.fc2", (300, 150), "fc_w"), (f"{prefix}.fc2", (1, 150), "fc_b"),
            (f"{prefix}.fc3", (150, classes), "fc_w"), (f"{prefix}.fc3", (1, classes), "fc_b")]


#: File index -> (torch module path, TF array shape, kind), in file order.
_BLUR_MAP = (_trunk41("bnet.f1.br41") + _trunk27("bnet.f1.br27") + _trunk41("bnet.f1.br15")
             + _head("bnet.head", 192, 23))
_EDGE_MAP = (_trunk41("enet.f1.br41") + _trunk41("enet.f2") + _trunk27("enet.f1.br27")
             + _trunk41("enet.f1.br15") + _head("enet.head", 256, 2))
assert len(_BLUR_MAP) == BLUR_FILES and len(_EDGE_MAP) == EDGE_FILES
# Trunk15 has the same layer names and shapes as Trunk41 (conv1..conv4, 3x3)

#: The f1 arrays of the edge release and their twins in the blur release.
_SHARED = {e: b for e, b in zip([*range(4), *range(8, 16)], range(12))}


@dataclass(frozen=True)
class ConvertedFolder:
    """``state_dict`` (torch tensors, keys of ``Karaali2022Net``), ``files`` (``"blur/0.mat" ->
    sha256``, sorted), ``root`` (the ``models_tf1x`` folder) and ``sha256`` (:func:`folder_digest`)."""
    state_dict: dict[str, Any]
    files: dict[str, str]
    root: Path
    sha256: str


def find_release(path: str | os.PathLike) -> Path:
    """The ``models_tf1x`` folder: ``path`` itself (it has ``blur/`` and ``edge/``) or
    ``path/models_tf1x``; one-line :class:`WeightsFolderError` otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsFolderError(f"karaali2022 weights folder {p} does not exist; give {source_format}")
    if not p.is_dir():
        raise WeightsFolderError(f"karaali2022 weights: {p} is not a folder; give {source_format}")
    for cand in (p, p / _RELEASE):
        if (cand / "blur").is_dir() and (cand / "edge").is_dir():
            return cand
    raise WeightsFolderError(f"karaali2022 weights: {p} has no blur/ and edge/ subfolders "
                             f"(nor {_RELEASE}/blur, {_RELEASE}/edge); give {source_format}")


def folder_digest(files: dict[str, str]) -> str:
    """sha256 of the release: over ``"<relative name>\\0<sha256 of the file>\\n"`` for every file,
    in sorted name order (``blur/0.mat`` before ``blur/1.mat`` before ``blur/10.mat`` ...)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{files[name]}\n".encode())
    return h.hexdigest()


def _load_array(path: Path, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, str]:
    expect = f"expected the authors' {what}: a MATLAB v5 .mat holding 'weights', float32 {'x'.join(map(str, shape))}"
    try:
        raw = read_regular_file(path, limit=MAX_MAT_BYTES, what="karaali2022 .mat files")
    except UnreadableFile as err:
        if not path.exists() and not path.is_symlink():
            raise WeightsFolderError(f"karaali2022 weights: {path} is missing; {expect}") from None
        raise WeightsFolderError(f"karaali2022 weights: {path} {err}; {expect}") from None
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(raw))
    except Exception as err:  # noqa: BLE001 - scipy raises many types for corrupt / non-MAT input
        first = " ".join(str(err).split())[:100] or type(err).__name__
        raise WeightsFolderError(f"karaali2022 weights: {path} is not a readable MATLAB .mat file "
                                 f"({type(err).__name__}: {first}); {expect}") from None
    if "weights" not in mat:
        found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise WeightsFolderError(f"karaali2022 weights: {path} has no array 'weights' (found: {found}); {expect}")
    arr = mat["weights"]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise WeightsFolderError(f"karaali2022 weights: {path} 'weights' is not a float array "
                                 f"({getattr(arr, 'dtype', type(arr).__name__)}); {expect}")
    if tuple(arr.shape) != shape:
        raise WeightsFolderError(f"karaali2022 weights: {path} 'weights' has shape "
                                 f"{'x'.join(map(str, arr.shape))}; {expect}")
    if not np.isfinite(arr).all():
        raise WeightsFolderError(f"karaali2022 weights: {path} 'weights' holds NaN or infinite values; {expect}")
    return np.ascontiguousarray(arr, dtype=np.float32), hashlib.sha256(raw).hexdigest()


def _read_release(root: Path, net: str, table: list) -> tuple[list[np.ndarray], dict[str, str]]:
    arrays, files = [], {}
    label = {"blur": "B-NET", "edge": "E-NET"}[net]
    for i, (name, shape, _kind) in enumerate(table):
        rel = f"{net}/{i}.mat"
        arr, sha = _load_array(root / net / f"{i}.mat", shape, f"{label} array {i} ({name})")
        arrays.append(arr)
        files[rel] = sha
    return arrays, files


def convert_folder(path: str | os.PathLike) -> ConvertedFolder:
    """Read the authors' folder (``models_tf1x`` or its parent) and return the ``Karaali2022Net``
    state dict with the sha256 of every file (:class:`ConvertedFolder`).  One-line
    :class:`WeightsFolderError` for a missing / malformed / wrong-shape file or an E-NET f1 that
    differs from B-NET's."""
    import torch

    root = find_release(path)
    blur, files = _read_release(root, "blur", _BLUR_MAP)
    edge, edge_files = _read_release(root, "edge", _EDGE_MAP)
    files.update(edge_files)
    for e, b in _SHARED.items():
        if not np.array_equal(edge[e], blur[b]):
            raise WeightsFolderError(
                f"karaali2022 weights: {root / 'edge' / f'{e}.mat'} differs from {root / 'blur' / f'{b}.mat'}; "
                "expected E-NET's f1 arrays to be bit-identical to B-NET's (the authors froze f1 when training E-NET)")
    state: dict[str, Any] = {}
    for table, arrays in ((_BLUR_MAP, blur), (_EDGE_MAP, edge)):
        for (name, _shape, kind), arr in zip(table, arrays):
            t = torch.from_numpy(arr.copy())
            if kind == "conv":
                state[f"{name}.weight"] = t.permute(3, 2, 0, 1).contiguous()
            elif kind == "fc_w":
                state[f"{name}.weight"] = t.t().contiguous()
            else:
                state[f"{name}.bias"] = t.reshape(-1).contiguous()
    # the shared f1: one tensor object under both prefixes (stored once by torch.save)
    for key in list(state):
        if key.startswith("enet.f1."):
            state[key] = state["bnet." + key[len("enet."):]]
    order = _state_order()
    state = {k: state[k] for k in order}
    files = dict(sorted(files.items(), key=lambda kv: (kv[0].split("/")[0], int(kv[0].split("/")[1][:-4]))))
    return ConvertedFolder(state, files, root, folder_digest(files))


def _state_order() -> list[str]:
    """The keys of ``Karaali2022Net().state_dict()`` in its order (the stored file keeps it)."""
    from .nets.karaali_nets import Karaali2022Net

    return list(Karaali2022Net().state_dict())
