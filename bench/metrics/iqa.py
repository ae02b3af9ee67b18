"""No-reference IQA through pyiqa: NIQE, BRISQUE, PIQE (lower = better for all three).

pyiqa is imported lazily, inside the functions that score (``import pyiqa`` takes 5-7 s), and each
pyiqa metric is created once per process and device (:func:`_pyiqa_metric`), on CPU by default.

Offline and safe by construction: left alone, pyiqa looks for its model files in
``torch.hub.get_dir()/pyiqa`` and downloads a missing one from huggingface.co, which it does only
when a metric is created without ``pretrained_model_path``; and it reads BRISQUE's file with
``torch.load(weights_only=False)``, which runs any code a pickle names.  So pyiqa never sees a
path: NIQE and BRISQUE get their arrays from :func:`bench.weights.load_weights` (the stored
file only when its sha256 matches the sidecar ``bench weights import`` wrote, parsed with
``weights_only=True`` / scipy), and :func:`_model_file` hands pyiqa's constructor an in-memory
file that we serialize from those arrays.  PIQE needs no file.  A missing or unverified file
makes the metric ``unavailable`` (:meth:`Metric.unavailable`, one line saying to import or
re-import it) and :func:`score_image` raise :class:`~bench.weights.WeightsUnusable`; nothing
ever reaches for the network.

Input: the prediction (``enhanced_image`` / ``restored_image``), ``float32 (H, W, 3)`` RGB in
[0, 1] (:mod:`methods.base`), clipped to [0, 1] and given to pyiqa unresized as a
``(1, 3, H, W)`` float32 tensor, exactly as pyiqa's ``imread2tensor`` would give an 8-bit file.

BRISQUE: pyiqa's ``brisque`` evaluates the SVR in float32, where the sum of 774 terms of up to
+-1024 leaves about +-0.005 of rounding that changes with the torch thread count.  We compute
pyiqa's features with pyiqa's own functions and evaluate the same SVR (same model, gamma, rho,
feature scaling) in float64: the result no longer depends on threads and reproduces pyiqa's
published calibration values (94.645 / -0.108 / 1.077 / 5.142 / 66.839).
"""
from __future__ import annotations

import importlib.util
import io
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.weights import (
    WEIGHTS,
    WeightsMissing,
    WeightsUnusable,
    load_weights,
    stored_identity,
    verify_weights,
    weight_path,
)
from datagen.errors import UserError, unknown_name

from .base import Metric, MetricResult, MetricSpec, PredInfo, mean_result

__all__ = [
    "BRISQUE",
    "IQA_METRICS",
    "NIQE",
    "PIQE",
    "ImageTooSmall",
    "WeightsMissing",
    "WeightsUnusable",
    "missing_reason",
    "score_image",
]

def _installed_pyiqa() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pyiqa")
    except PackageNotFoundError:
        return "missing"


#: The installed pyiqa release is part of the metric version, so results of another release are
#: "not comparable" in ``bench compare`` rather than silently compared (read without importing pyiqa).
PYIQA_VERSION = _installed_pyiqa()
VERSION = f"pyiqa-{PYIQA_VERSION}/1"

#: our name -> (pyiqa metric name, weight name in bench.weights or None, smallest side in pixels)
IQA_METRICS: dict[str, tuple[str, str | None, int]] = {
    "niqe": ("niqe", "niqe", 96),        # pyiqa's NIQE works on 96x96 blocks; smaller images fail
    "brisque": ("brisque", "brisque", 16),
    "piqe": ("piqe", None, 16),          # PIQE's 16x16 blocks
}


class ImageTooSmall(UserError):
    """The image is smaller than the metric's blocks."""


def missing_reason(name: str) -> str | None:
    """``None`` when metric ``name`` can run here, else the one-line ``unavailable (...)`` reason."""
    if importlib.util.find_spec("pyiqa") is None:
        return "unavailable (pyiqa not installed; run: pip install pyiqa)"
    weight = _entry(name)[1]
    if weight is not None:
        try:
            verify_weights(weight)        # sha256 against the sidecar; imports neither torch nor pyiqa
        except WeightsUnusable as err:
            return f"unavailable ({err})"
    return None


def _entry(name: str) -> tuple[str, str | None, int]:
    if name not in IQA_METRICS:
        raise KeyError(unknown_name("IQA metric", name, IQA_METRICS))
    return IQA_METRICS[name]


# --------------------------------------------------------------------------------------------
# pyiqa, created once per process
# --------------------------------------------------------------------------------------------

#: key -> (pyiqa metric, its lock): pyiqa modules keep state (PIQE's ``self.results``), so one
#: thread at a time runs a given metric (threaded Dask workers share the process cache)
_CACHE: dict[tuple, tuple[Any, threading.Lock]] = {}
_LOCK = threading.Lock()


def _pyiqa_metric(name: str, device: str):
    """The pyiqa metric for ``name`` on ``device``, created once per process."""
    return _cached(name, device)[0]


def _cached(name: str, device: str) -> tuple[Any, threading.Lock]:
    """(metric, lock), created on first use; keyed by the weight file's identity, so a re-import is picked up."""
    pyiqa_name, weight, _ = _entry(name)
    key: tuple = (name, str(device))
    if weight is not None:
        key += stored_identity(weight)
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            kwargs = {} if weight is None else {"pretrained_model_path": _model_file(weight)}
            import pyiqa

            metric = pyiqa.create_metric(pyiqa_name, device=device, **kwargs)
            metric.eval()
            for old in [k for k in _CACHE if k[:2] == key[:2]]:   # drop a stale file's model
                del _CACHE[old]
            entry = _CACHE[key] = (metric, threading.Lock())
    return entry


def _model_file(weight: str) -> io.BytesIO:
    """The in-memory model file pyiqa's constructor reads, serialized by us from the verified arrays.

    pyiqa reads it as it would its own file (``scipy.io.loadmat`` for NIQE, ``torch.load`` with
    ``weights_only=False`` for BRISQUE), but the bytes are ``WEIGHTS[weight].dump`` of arrays that
    :func:`load_weights` checked and parsed without running code: nothing of the file on disk but
    its numbers reaches pyiqa, and with a file object pyiqa never looks for (downloads) its own.
    Raises :class:`WeightsMissing` / :class:`WeightsUnusable` (one line).
    """
    return io.BytesIO(WEIGHTS[weight].dump(load_weights(weight)))


def _check(image: np.ndarray, name: str) -> np.ndarray:
    """Validate a prediction and return it as float32 clipped to [0, 1]."""
    from methods.base import check_image

    if not np.issubdtype(np.asarray(image).dtype, np.floating):
        raise ValueError(f"{name}: expected a float image in [0, 1], got dtype {np.asarray(image).dtype}")
    image = check_image(image)
    h, w = image.shape[:2]
    min_side = _entry(name)[2]
    if min(h, w) < min_side:
        raise ImageTooSmall(f"{name} needs images of at least {min_side}x{min_side} pixels, got {h}x{w}")
    if image.size and (float(image.max()) > 2.0 or float(image.min()) < -1.0):
        raise ValueError(f"{name}: image values span {image.min():.3g}..{image.max():.3g}; expected [0, 1] "
                         "(a 0..255 image?)")
    return np.clip(image, 0.0, 1.0)


def _is_flat(image: np.ndarray) -> bool:
    """True when the 8-bit luma pyiqa works on is constant: NIQE / BRISQUE are undefined there."""
    from methods.base import LUMA_BT601

    luma = np.rint((image @ LUMA_BT601) * 255.0)
    return float(luma.max() - luma.min()) == 0.0


def _brisque_float64_svm(net, x) -> float:
    """pyiqa's BRISQUE ("original" version) with the SVR evaluated in float64 (see module doc)."""
    import torch
    from pyiqa.archs.brisque_arch import (
        natural_scene_statistics,
        rbf_kernel,
        scale_features,
    )
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    x = to_y_channel(x, 255.0)
    features = []
    for _ in range(2):
        features.append(natural_scene_statistics(x, net.kernel_size, net.kernel_sigma))
        x = imresize(x, scale=0.5, antialiasing=True)
    feats = scale_features(torch.cat(features, dim=-1).to(torch.float64)).to(torch.float64)
    sv = net.sv.to(device=feats.device, dtype=torch.float64)      # pyiqa stores sv / scale (scale 1)
    coef = net.sv_coef.to(device=feats.device, dtype=torch.float64)
    score = rbf_kernel(feats, sv.t(), gamma=net.gamma) @ coef - net.rho
    return float(score.reshape(-1)[0])


def score_image(name: str, image: np.ndarray, *, device: str = "cpu") -> float:
    """Score one ``(H, W, 3)`` RGB image in [0, 1] with NIQE / BRISQUE / PIQE (lower = better).

    Returns NaN for an image whose 8-bit luma is constant (the statistics are undefined there).
    Raises :class:`WeightsMissing` when the metric's weight file is not imported,
    :class:`WeightsUnusable` when it is not verified against its sidecar or does not load,
    :class:`ImageTooSmall` below the metric's smallest size, ``ValueError`` for a malformed array
    (not float, not ``(H, W, 3)``, NaN, or values far outside [0, 1]); small overshoot is clipped.
    """
    import torch

    metric, lock = _cached(name, device)
    image = _check(image, name)
    if _is_flat(image):
        return float("nan")
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    with lock, torch.inference_mode():
        net = metric.net
        try:
            if name == "brisque" and getattr(net, "version", "original") == "original":
                return _brisque_float64_svm(net, x)
            return float(metric(x).reshape(-1)[0])
        except torch.linalg.LinAlgError:      # NIQE: every block flat -> no covariance
            return float("nan")


# --------------------------------------------------------------------------------------------
# Metric classes
# --------------------------------------------------------------------------------------------

_INPUT = "enhanced/restored image, RGB float32 in [0,1] (clipped), unresized, 1x3xHxW float32 tensor"


class _PyIQAMetric(Metric):
    """Options: ``device`` (default ``"cpu"``)."""

    def unavailable(self) -> str | None:
        return missing_reason(self.spec.name)

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        value = score_image(self.spec.name, pred, device=self.options.get("device") or "cpu")
        return {"value": float(value) if math.isfinite(value) else float("nan")}

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        return mean_result(states)


def _weights_file(name: str) -> str:
    return WEIGHTS[name].filename


class NIQE(_PyIQAMetric):
    spec = MetricSpec(
        name="niqe",
        task="nr_iqa",
        needs=(),
        accepts=("enhanced_image", "restored_image"),
        higher_is_better=False,                 # pyiqa: lower_better True
        unit="score",
        version=VERSION,
        threshold=0.05,
        conventions={
            "implementation": "pyiqa.create_metric('niqe') given the verified model as an in-memory file",
            "input": _INPUT,
            "channel": "Y of YIQ scaled to 0..255 and rounded (pyiqa test_y_channel=True, color_space='yiq')",
            "block_size": 96,
            "crop_border": 0,
            "min_size": 96,
            "model": f"{_weights_file('niqe')} (pristine MVG of the MATLAB NIQE release; bench weights 'niqe')",
            "range": "~0..~100, lower = more natural",
        },
        description="NIQE (Mittal et al. 2012): distance of the image's NSS statistics to a pristine model",
        weights=("niqe",),
    )


class BRISQUE(_PyIQAMetric):
    spec = MetricSpec(
        name="brisque",
        task="nr_iqa",
        needs=(),
        accepts=("enhanced_image", "restored_image"),
        higher_is_better=False,                 # pyiqa: lower_better True
        unit="score",
        version=VERSION,
        threshold=0.5,
        conventions={
            "implementation": "pyiqa BRISQUE version 'original' (features), SVR evaluated in float64",
            "input": _INPUT,
            "channel": "Y of YIQ scaled to 0..255 and rounded (pyiqa test_y_channel=True)",
            "kernel": "Gaussian 7x7, sigma 7/6; 2 scales (imresize 0.5, antialiased)",
            "svr": "RBF gamma 0.05, rho -153.591, LIVE feature ranges (pyiqa built-ins)",
            "min_size": 16,
            "model": f"{_weights_file('brisque')} (official LIVE allmodel, 774 SVs; bench weights 'brisque')",
            "range": "~0..~150, lower = better",
        },
        description="BRISQUE (Mittal et al. 2012): SVR on spatial NSS features, trained on LIVE",
        weights=("brisque",),
    )


class PIQE(_PyIQAMetric):
    spec = MetricSpec(
        name="piqe",
        task="nr_iqa",
        needs=(),
        accepts=("enhanced_image", "restored_image"),
        higher_is_better=False,                 # pyiqa: lower_better True
        unit="score",
        version=VERSION,
        threshold=0.5,
        conventions={
            "implementation": "pyiqa.create_metric('piqe') (no model file)",
            "input": _INPUT,
            "block_size": 16,
            "min_size": 16,
            "range": "0..100, lower = better",
        },
        description="PIQE (Venkatanath et al. 2015): block-wise distortion estimate, no training",
    )


def weight_files() -> dict[str, Path]:
    """Metric name -> the weight file it reads (for reports)."""
    return {n: weight_path(w) for n, (_, w, _) in IQA_METRICS.items() if w is not None}
