"""Blur detection against binary masks (CUHK): accuracy protocols and the HiFST PR curve.

Conventions
-----------
* **Masks**: 2-D, True (or any value > 0) = blurred, as :mod:`bench.datasets.base` stores
  ``blur_mask``.  The HiFST script binarises its GT with the same rule (``> 0``).
* **Maps**: 2-D, finite, any units (sigma, radius, relative, score).  ``higher`` (a method's
  ``HIGHER``, :class:`~bench.metrics.base.PredInfo`) says which way the map points:
  ``"blurred"`` (higher = more blur) or ``"sharp"`` (a sharpness map; it is turned around
  here so that every rule below reads "higher = more blurred").
* **Size**: a map whose size differs from its mask is resized to the mask size with
  :func:`resize_map` (bicubic, Keys a = -0.5, antialiased when shrinking: the kernel of MATLAB
  ``imresize``, which HiFST used; the boundary handling and float32 arithmetic of Pillow differ
  slightly from MATLAB's).  For the PR protocol the map is normalised *before* resizing, as in
  HiFST; resized values may overshoot 0..255 and are not clipped (as in MATLAB).

Protocols
---------
``pr_hifst`` (HiFST ``Evaluation/PRDataComputation.m``, the de-facto CUHK PR protocol):
    per image, min-max normalise to 0..255 (:func:`normalize_map`, no rounding), invert
    sharpness maps (255 - value); for each threshold t = 0..255 the pixels with value >= t are
    predicted blurred; precision = TP / predicted and recall = TP / blurred are *added* to the
    curve only when TP > 0; the sums are divided by the number of images (so images with
    TP = 0 at a threshold pull that point down).  Headline: the average precision
    (:func:`average_precision`) of the averaged curve.
``accuracy_alpha`` (Karaali / Park / DMENet):
    per image ``tau = alpha * vmax + (1 - alpha) * vmin`` on the (polarity-adjusted) map,
    blurred where value >= tau; ONE alpha per method from the grid 0, 0.01, ..., 1 maximising
    the mean accuracy over images (ties: the smallest alpha).
``accuracy_oracle`` (Galetto's per-image threshold; an upper bound):
    per image, the best accuracy of any rule "blurred where value >= thr" (every distinct map
    value as thr, plus a threshold above the maximum = nothing blurred).

Accuracy is the fraction of correctly classified pixels of an image, averaged over images.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from .base import Metric, MetricResult, MetricSpec, PredInfo

__all__ = [
    "ALPHAS", "THRESHOLDS", "AccuracyGlobalAlpha", "AccuracyOracle", "PRHiFST", "accuracy_curve_alpha",
    "average_precision", "best_f", "normalize_map", "oracle_accuracy", "pr_curve", "pr_image", "resize_map",
]

#: The alpha grid of the global-alpha accuracy protocol: 0, 0.01, ..., 1 (101 values).
ALPHAS = np.round(np.linspace(0.0, 1.0, 101), 2)
#: The thresholds of the HiFST PR protocol: 0, 1, ..., 255 on the normalised map.
THRESHOLDS = np.arange(256)

_POLARITIES = ("blurred", "sharp")


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _check_higher(higher: str) -> None:
    if higher not in _POLARITIES:
        raise ValueError(f"higher must be 'blurred' or 'sharp', got {higher!r}")


def _check_map(map_: Any) -> np.ndarray:
    arr = np.asarray(map_)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a blur map must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("blur map has NaN or infinite values; fix the method output")
    return arr


def _check_mask(mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a blur mask must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    return arr > 0


def resize_map(map_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``shape`` = (H, W) (no-op when it already has that size).

    Parameters
    ----------
    map_ : ndarray (h, w)
        Values in any units.
    shape : (int, int)
        Target (H, W), the mask size.

    Returns
    -------
    ndarray (H, W), float64
        Pillow ``BICUBIC`` on a float32 image: Keys cubic kernel with a = -0.5 and, when
        shrinking, a support widened by the scale factor (antialiasing), as MATLAB ``imresize``
        does by default.  Values are not clipped (cubic overshoot is kept).
    """
    arr = np.asarray(map_, dtype=np.float64)
    h, w = int(shape[0]), int(shape[1])
    if arr.shape == (h, w):
        return arr
    img = Image.fromarray(arr.astype(np.float32))
    return np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)


def _oriented(map_: Any, mask: Any, higher: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (map with higher = more blurred, bool mask), the map resized to the mask size."""
    _check_higher(higher)
    arr, m = _check_map(map_), _check_mask(mask)
    arr = resize_map(arr, m.shape)
    return (-arr if higher == "sharp" else arr), m


# ----------------------------------------------------------------------------------------------
# HiFST precision / recall
# ----------------------------------------------------------------------------------------------
def normalize_map(map_: Any, *, higher: str = "blurred") -> np.ndarray:
    """Per-image min-max normalisation to 0..255, HiFST style (``mat2gray(map) * 255``).

    Parameters
    ----------
    map_ : array_like (H, W)
        Finite values, any units.
    higher : {"blurred", "sharp"}, keyword-only
        Polarity of ``map_``.  ``"sharp"`` maps are inverted (``255 - value``) so that the
        result is always higher = more blurred.

    Returns
    -------
    ndarray (H, W), float64
        Values in [0, 255], *not* rounded (as in HiFST: ``255 - double(mat2gray(M) .* 255)``),
        computed in MATLAB's order ``(map * d + (-vmin * d)) * 255`` with ``d = 1 / (vmax - vmin)``.
        A constant map carries no information and gives all zeros for either polarity
        (every pixel is predicted blurred at t = 0 only).

    Raises
    ------
    ValueError
        When the map is not 2-D or holds NaN / inf, or ``higher`` is neither polarity.
    """
    _check_higher(higher)
    arr = _check_map(map_)
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmax == vmin:
        return np.zeros(arr.shape, dtype=np.float64)
    d = 1.0 / (vmax - vmin)
    unit = np.clip(arr * d + (-vmin * d), 0.0, 1.0)
    scaled = unit * 255.0
    return 255.0 - scaled if higher == "sharp" else scaled


def pr_image(map_: Any, mask: Any, *, higher: str = "blurred") -> dict[str, np.ndarray | int]:
    """One image's precision / recall at the 256 HiFST thresholds.

    Parameters
    ----------
    map_ : array_like (h, w)
        Blur or sharpness map, any units; normalised with :func:`normalize_map`, then resized to
        the mask size with :func:`resize_map` when the sizes differ.
    mask : array_like (H, W)
        Ground truth, > 0 (or True) = blurred.
    higher : {"blurred", "sharp"}, keyword-only
        Polarity of ``map_``.

    Returns
    -------
    dict
        ``"precision"``, ``"recall"``: float64 (256,), index t = threshold; pixels with
        normalised value >= t are predicted blurred; precision = TP / predicted,
        recall = TP / blurred, both 0 where TP == 0.
        ``"valid"``: bool (256,), TP > 0 (the protocol adds a point only then).
        ``"tp"``, ``"detected"``: int64 (256,) counts; ``"n_blurred"``: int.

    Notes
    -----
    Vectorised with a cumulative histogram: for integer t, ``v >= t`` iff ``floor(v) >= t``.
    """
    norm = normalize_map(map_, higher=higher)
    m = _check_mask(mask)
    norm = resize_map(norm, m.shape)
    bins = (np.floor(np.clip(norm, -1.0, 255.0)).astype(np.int64) + 1).ravel()   # 0 = below t = 0
    hist_all = np.bincount(bins, minlength=257)
    hist_pos = np.bincount(bins[m.ravel()], minlength=257)
    detected = np.cumsum(hist_all[::-1])[::-1][1:]      # detected[t] = #(v >= t), t = 0..255
    tp = np.cumsum(hist_pos[::-1])[::-1][1:]
    n_blurred = int(m.sum())
    valid = tp > 0
    precision = np.zeros(256)
    recall = np.zeros(256)
    precision[valid] = tp[valid] / detected[valid]
    recall[valid] = tp[valid] / n_blurred if n_blurred else 0.0
    return {"precision": precision, "recall": recall, "valid": valid, "tp": tp, "detected": detected,
            "n_blurred": n_blurred}


def pr_curve(per_image_results: Iterable[Mapping[str, Any]], n_images: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The HiFST dataset curve: per-image points added when TP > 0, divided by the image count.

    Parameters
    ----------
    per_image_results : iterable of dict
        Outputs of :func:`pr_image` (only ``"precision"``, ``"recall"``, ``"valid"`` are read;
        arrays or lists of 256 values).
    n_images : int, optional
        The divisor (HiFST: 1000, the number of images); default = the number of results.
        Must be >= the number of results.

    Returns
    -------
    precision, recall : ndarray (256,), float64
        Index t = threshold 0..255.  Recall is non-increasing in t; precision need not be
        monotone (and drops at high t when images stop contributing).
    """
    precision, recall, count = np.zeros(256), np.zeros(256), 0
    for res in per_image_results:
        valid = np.asarray(res["valid"], dtype=bool)
        p, r = np.asarray(res["precision"], dtype=np.float64), np.asarray(res["recall"], dtype=np.float64)
        if valid.shape != (256,) or p.shape != (256,) or r.shape != (256,):
            raise ValueError("each per-image result needs 256 precision / recall / valid values")
        precision[valid] += p[valid]
        recall[valid] += r[valid]
        count += 1
    n = count if n_images is None else int(n_images)
    if n < count or n <= 0:
        raise ValueError(f"n_images must be >= the number of per-image results ({count}) and > 0, got {n}")
    return precision / n, recall / n


def average_precision(precision: Any, recall: Any) -> float:
    """Non-interpolated (step) average precision, as ``sklearn.metrics.average_precision_score``.

    ``AP = sum_k (R_k - R_{k+1}) * P_k`` over the points ordered by *decreasing* recall
    (a stable sort, so curves indexed by increasing threshold, like :func:`pr_curve`'s, keep
    their order), with ``R_K = 0`` appended: each recall gain is weighted by the precision of
    the point that reaches it (within a run of equal recall, the last point, i.e. the highest
    threshold), and the precision of the lowest-recall point is extended down to recall 0.
    No interpolation of precision (no running maximum), no trapezoids.

    Parameters
    ----------
    precision, recall : array_like (K,)
        Finite, in [0, 1].

    Returns
    -------
    float
        In [0, 1]; 1 for a perfect detector whose curve reaches recall 1 at precision 1;
        0 for an empty curve.
    """
    p = np.asarray(precision, dtype=np.float64).ravel()
    r = np.asarray(recall, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise ValueError(f"precision and recall differ in length ({p.size} vs {r.size})")
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("precision / recall have NaN or infinite values")
    if p.size == 0:
        return 0.0
    order = np.argsort(-r, kind="stable")
    p, r = p[order], r[order]
    gains = r - np.append(r[1:], 0.0)
    return float(np.sum(gains * p))


def best_f(precision: Any, recall: Any, *, beta2: float = 1.0) -> tuple[float, int]:
    """The best F-measure over the points of a PR curve.

    ``F = (1 + beta2) * P * R / (beta2 * P + R)`` per point (0 where P = R = 0), computed on the
    given (e.g. dataset-averaged) P and R, not an average of per-image F values.

    Parameters
    ----------
    precision, recall : array_like (K,)
    beta2 : float, keyword-only
        beta squared; 1 = F1 (default), 0.3 = the saliency literature's F-beta.

    Returns
    -------
    (float, int)
        The best F and its index (= the threshold for :func:`pr_curve` curves; ties: the
        smallest index).
    """
    p = np.asarray(precision, dtype=np.float64).ravel()
    r = np.asarray(recall, dtype=np.float64).ravel()
    if p.shape != r.shape or p.size == 0:
        raise ValueError("precision and recall must be non-empty and of equal length")
    if beta2 <= 0:
        raise ValueError(f"beta2 must be > 0, got {beta2}")
    den = beta2 * p + r
    f = np.zeros_like(p)
    ok = den > 0
    f[ok] = (1.0 + beta2) * p[ok] * r[ok] / den[ok]
    i = int(np.argmax(f))
    return float(f[i]), i


# ----------------------------------------------------------------------------------------------
# accuracy protocols
# ----------------------------------------------------------------------------------------------
def accuracy_curve_alpha(map_: Any, mask: Any, *, higher: str = "blurred", alphas: Any = ALPHAS) -> np.ndarray:
    """Per-image accuracy for each alpha of the global-alpha protocol (METHODS 2.8).

    Parameters
    ----------
    map_ : array_like (h, w)
        Blur or sharpness map, any units; resized to the mask size (:func:`resize_map`) if needed.
    mask : array_like (H, W)
        > 0 (or True) = blurred.
    higher : {"blurred", "sharp"}, keyword-only
        Polarity; sharpness maps are negated first (exact), so higher = more blurred.
    alphas : array_like (A,), keyword-only
        Default :data:`ALPHAS` (0, 0.01, ..., 1).

    Returns
    -------
    ndarray (A,), float64
        Fraction of correctly classified pixels with ``tau = alpha * vmax + (1 - alpha) * vmin``
        (vmin, vmax of the polarity-adjusted map) and blurred where value >= tau.  alpha = 0
        predicts every pixel blurred; a constant map predicts every pixel blurred for all alpha.
    """
    v, m = _oriented(map_, mask, higher)
    a = np.asarray(alphas, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise ValueError("alphas have NaN or infinite values")
    vmin, vmax = float(v.min()), float(v.max())
    taus = a * vmax + (1.0 - a) * vmin
    blurred = np.sort(v[m])
    sharp = np.sort(v[~m])
    correct = (blurred.size - np.searchsorted(blurred, taus, side="left")) + np.searchsorted(sharp, taus, side="left")
    return correct / v.size


def oracle_accuracy(map_: Any, mask: Any, *, higher: str = "blurred") -> float:
    """Best accuracy of one image over all thresholds (the per-image oracle, an upper bound).

    Candidates: "blurred where value >= thr" for every distinct value of the (polarity-adjusted,
    resized if needed) map, plus a threshold above the maximum (nothing blurred).  This is the
    exact optimum over all single-threshold rules, so it is >= the accuracy at any alpha of
    :func:`accuracy_curve_alpha` and at any of the 256 normalised levels.

    Parameters
    ----------
    map_ : array_like (h, w)
    mask : array_like (H, W)
    higher : {"blurred", "sharp"}, keyword-only

    Returns
    -------
    float
        Fraction of correctly classified pixels, in [0, 1].
    """
    v, m = _oriented(map_, mask, higher)
    values, inverse = np.unique(v.ravel(), return_inverse=True)
    flat = m.ravel()
    hb = np.bincount(inverse[flat], minlength=values.size)
    hs = np.bincount(inverse[~flat], minlength=values.size)
    below_b = np.concatenate(([0], np.cumsum(hb)))   # blurred pixels below candidate k (k = size: above max)
    below_s = np.concatenate(([0], np.cumsum(hs)))
    correct = (hb.sum() - below_b) + below_s
    return float(correct.max() / v.size)


# ----------------------------------------------------------------------------------------------
# Metric classes
# ----------------------------------------------------------------------------------------------
class _DetectionMetric(Metric):
    """Shared plumbing: mask lookup, polarity from :class:`PredInfo`, n/a for unknown polarity."""

    def applicable(self, pred: PredInfo) -> str | None:
        why = super().applicable(pred)
        if why is None and pred.higher not in _POLARITIES:
            why = f"{self.spec.name} needs a map polarity (higher = blurred or sharp), got {pred.higher!r}"
        return why

    @staticmethod
    def _mask(sample) -> np.ndarray:
        try:
            return sample.targets["blur_mask"]
        except KeyError:
            raise ValueError(f"sample {sample.key!r} has no 'blur_mask' target") from None


_COMMON = {
    "mask": "True (> 0) = blurred",
    "polarity": "PredInfo.higher; 'sharp' maps are turned around so that higher = more blurred",
    "resize": "map resized to the mask size when needed: bicubic a=-0.5, antialiased (Pillow; MATLAB imresize kernel)",
    "accuracy": "fraction of correctly classified pixels per image, mean over images",
}


class AccuracyGlobalAlpha(_DetectionMetric):
    """Accuracy with one alpha per method (Karaali / Park / DMENet protocol).

    ``per_sample`` -> ``{"acc": float64 (101,)}``, the image's accuracy at each alpha of
    :data:`ALPHAS`.  ``reduce`` picks the alpha with the highest mean accuracy (ties: the
    smallest alpha); value = that mean, per_sample = each image's accuracy at that alpha,
    extras ``{"alpha": ...}``, curves ``{"accuracy_alpha": {"alpha", "accuracy"}}``.
    """

    spec = MetricSpec(
        name="accuracy_alpha", task="detection", needs=("blur_mask",), accepts=("blur_map",),
        higher_is_better=True, unit="fraction", version="1", threshold=0.005,
        conventions={**_COMMON, "threshold": "tau = alpha*vmax + (1-alpha)*vmin per image, blurred if value >= tau",
                     "alpha_grid": "0..1 step 0.01 (101 values)",
                     "alpha_choice": "one alpha per method maximising mean accuracy; ties -> smallest alpha"},
        description="pixel accuracy at one global alpha per method (tau = alpha*vmax + (1-alpha)*vmin)",
    )

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        return {"acc": accuracy_curve_alpha(pred, self._mask(sample), higher=info.higher)}

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        if not states:
            return MetricResult(value=float("nan"), per_sample={})
        keys = list(states)
        acc = np.stack([np.asarray(states[k]["acc"], dtype=np.float64) for k in keys])
        if acc.shape[1] != ALPHAS.size:
            raise ValueError(f"accuracy_alpha states hold {acc.shape[1]} alphas, expected {ALPHAS.size}")
        mean = acc.mean(axis=0)
        best = int(np.argmax(mean))
        return MetricResult(
            value=float(mean[best]),
            per_sample={k: float(acc[i, best]) for i, k in enumerate(keys)},
            extras={"alpha": float(ALPHAS[best])},
            curves={"accuracy_alpha": {"alpha": [float(a) for a in ALPHAS], "accuracy": [float(x) for x in mean]}},
        )


class AccuracyOracle(_DetectionMetric):
    """Per-image oracle threshold accuracy (Galetto); an upper bound, value = mean over images.

    ``per_sample`` -> ``{"value": float}`` from :func:`oracle_accuracy`.
    """

    spec = MetricSpec(
        name="accuracy_oracle", task="detection", needs=("blur_mask",), accepts=("blur_map",),
        higher_is_better=True, unit="fraction", version="1", threshold=0.005,
        conventions={**_COMMON, "threshold": "best of 'blurred if value >= thr' per image over every distinct "
                                             "map value and 'nothing blurred' (upper bound)"},
        description="pixel accuracy at each image's best threshold (oracle upper bound)",
    )

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        return {"value": oracle_accuracy(pred, self._mask(sample), higher=info.higher)}

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        per = {k: float(s["value"]) for k, s in states.items()}
        value = float(np.mean(list(per.values()))) if per else float("nan")
        return MetricResult(value=value, per_sample=per)


class PRHiFST(_DetectionMetric):
    """Precision / recall of the blurred class, HiFST protocol; value = AP of the averaged curve.

    ``per_sample`` -> ``{"precision", "recall": float64 (256,), "valid": bool (256,)}`` from
    :func:`pr_image`.  ``reduce``: the curve of :func:`pr_curve` (divided by the number of
    states), value = :func:`average_precision` of it, extras ``best_f`` (F1 of the averaged
    P and R, :func:`best_f`) and ``best_f_threshold`` (its threshold 0..255), curves ``pr``
    (256 points).  per_sample = each image's own AP (:func:`average_precision` of its P/R;
    0 for an image where no threshold gives TP > 0, e.g. a mask without blurred pixels).
    """

    spec = MetricSpec(
        name="pr_hifst", task="detection", needs=("blur_mask",), accepts=("blur_map",),
        higher_is_better=True, unit="fraction", version="1", threshold=0.005,
        conventions={**_COMMON,
                     "protocol": "HiFST Evaluation/PRDataComputation.m",
                     "normalisation": "per-image min-max to 0..255 (not rounded), sharp maps -> 255 - value, "
                                      "then resize to the mask",
                     "thresholds": "t = 0..255, predicted blurred = normalised >= t",
                     "averaging": "per-image P and R added only when TP > 0, divided by the number of images",
                     "value": "AP = sum_k (R_k - R_k+1) * P_k, non-interpolated step (sklearn-style)",
                     "best_f": "max over t of F1 on the averaged P and R (beta^2 = 1)",
                     "per_sample": "per-image AP of the image's own P/R"},
        description="average precision of the HiFST-protocol PR curve (256 thresholds, per-image averaging)",
    )

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        res = pr_image(pred, self._mask(sample), higher=info.higher)
        return {"precision": res["precision"], "recall": res["recall"], "valid": res["valid"]}

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        if not states:
            return MetricResult(value=float("nan"), per_sample={})
        precision, recall = pr_curve(states.values(), len(states))
        f, t = best_f(precision, recall)
        return MetricResult(
            value=average_precision(precision, recall),
            per_sample={k: average_precision(s["precision"], s["recall"]) for k, s in states.items()},
            extras={"best_f": f, "best_f_threshold": float(t)},
            curves={"pr": {"threshold": [int(x) for x in THRESHOLDS], "precision": [float(x) for x in precision],
                           "recall": [float(x) for x in recall]}},
        )
