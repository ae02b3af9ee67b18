"""Guided filter (He et al.), weighted guided filter (WGIF, Li et al. 2015) and Galetto & Deng's refinement.

Pure functions on 2-D arrays; no state, no I/O.  ``METHODS.md`` §2.6 (filters) and §5.4 (refinement).

Conventions (all functions)
---------------------------
* ``p`` (the filtered input) and ``guide`` are 2-D ``(H, W)`` real arrays of the same shape; the
  guide is a gray image, normally in ``[0, 1]``.  Any size, down to ``1 x 1``.
* Box means over the ``(2 * radius + 1)^2`` square window centred on each pixel, normalised,
  computed with ``cv2.boxFilter`` and the border ``"reflect"`` (half-sample symmetric,
  ``d c b a | a b c d``; OpenCV ``BORDER_REFLECT``, MATLAB ``"symmetric"``, NumPy ``np.pad(...,
  mode="symmetric")``; the project's convention, see :mod:`datagen.psf`).  Every window holds
  ``(2r+1)^2`` samples, also where the window is larger than the image (the reflection repeats), so
  the box mean of a constant is that constant and the filters keep constants exactly.
* Variances and covariances are population moments over the window, ``E[xy] - E[x]E[y]``
  (variances clipped at 0).
* Computation in ``float32`` (OpenCV accumulates the box sums in float64); the output is ``float32``.
  Both arrays are shifted by their global mean before the moments are formed, which leaves the
  result unchanged in exact arithmetic (the filters are shift-equivariant in ``p`` and
  shift-invariant in the guide) and keeps the float32 cancellation in ``E[xy] - E[x]E[y]`` small.
  One pass agrees with a float64 reference to about ``1e-7`` of the range of ``p``; the full
  :func:`galetto_refine` (14 passes) on a 1000x700 photo to ``7e-4`` sigma units at worst
  (mean ``1e-5``) on a 0..19 map.
* Units of ``p`` are preserved: the output is linear in ``p`` (``f(alpha p + beta) =
  alpha f(p) + beta``), so a blur map may be filtered in whatever units it has (e.g. Gaussian sigma
  0..19).  ``eps`` is in squared units of the guide (``0.005`` for a guide in ``[0, 1]``).
* Non-finite values are not checked (the result is then unspecified).
* Threads: the two independent box filters of each step run on two threads when
  ``cv2.getNumThreads() > 1`` (OpenCV's box filter itself is single-threaded); pin OpenCV to one
  thread (``cv2.setNumThreads(1)``) for strictly serial execution.  Results are identical.

Formulas
--------
Guided filter (He, Sun, Tang, ECCV 2010 / TPAMI 2013), with ``mean`` the box mean of radius ``r``::

    a = cov(G, p) / (var(G) + eps),   b = mean(p) - a * mean(G),   q = mean(a) * G + mean(b)

Weighted guided filter (Li, Zheng, Zhu, Yao, Wu, IEEE TIP 24(1):120-129, 2015, eqs. 5-8): the
regulariser becomes ``eps / Gamma_G(k)`` with the edge-aware weight::

    Gamma_G(k) = (1/N) sum_i (var3(G)(k) + eps') / (var3(G)(i) + eps')
               = (var3(G)(k) + eps') * mean_over_image(1 / (var3(G) + eps'))

where ``var3`` is the variance over the 3x3 window (radius 1, same reflect border), ``N`` the number
of pixels and ``eps' = (0.001 L)^2`` with ``L`` the dynamic range of the guide, measured as
``max(G) - min(G)``.  For a constant guide (``L = 0``) the weight is 1 everywhere (the WGIF reduces
to the guided filter, which then returns the double box mean of ``p``).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["galetto_refine", "guided_filter", "weighted_guided_filter"]

_BORDER = cv2.BORDER_REFLECT


def _box(x: np.ndarray, radius: int, dst: np.ndarray | None = None) -> np.ndarray:
    k = 2 * radius + 1
    return cv2.boxFilter(x, -1, (k, k), dst=dst, normalize=True, borderType=_BORDER)


_POOL: list = []


def _box2(x: np.ndarray, y: np.ndarray, radius: int, dx: np.ndarray | None = None,
          dy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Box means of two arrays; on a second thread when OpenCV may use more than one.

    ``cv2.boxFilter`` runs on one core; the two filters of a pair are independent, so they run
    concurrently (OpenCV releases the GIL) when ``cv2.getNumThreads() > 1``.  A caller that pins
    OpenCV to one thread (``cv2.setNumThreads(1)``, as the bench harness does per worker) gets
    serial execution.  The results are identical either way.
    """
    if cv2.getNumThreads() > 1 and x.size >= 65536:
        if not _POOL:
            from concurrent.futures import ThreadPoolExecutor
            _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="guided-box"))
        fut = _POOL[0].submit(_box, y, radius, dy)
        bx = _box(x, radius, dx)
        return bx, fut.result()
    return _box(x, radius, dx), _box(y, radius, dy)


def _check(p: np.ndarray | None, guide: np.ndarray, radius, eps) -> tuple[np.ndarray | None, np.ndarray]:
    g = np.asarray(guide)
    problems = []
    if g.ndim != 2 or g.size == 0 or not np.issubdtype(g.dtype, np.number) or np.iscomplexobj(g):
        problems.append(f"guide must be a non-empty 2-D real array (H, W), got shape {g.shape} dtype {g.dtype}")
    if p is not None:
        p = np.asarray(p)
        if p.shape != g.shape or not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
            problems.append(f"p must be a real array of the guide's shape {g.shape}, got shape {p.shape} "
                            f"dtype {p.dtype}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 1:
        problems.append(f"radius must be an integer >= 1 (window 2*radius+1), got {radius!r}")
    try:
        bad_eps = not (float(eps) > 0 and np.isfinite(float(eps)))
    except (TypeError, ValueError):
        bad_eps = True
    if bad_eps:
        problems.append(f"eps must be a finite number > 0 (squared guide units), got {eps!r}")
    if problems:
        raise ValueError("; ".join(problems))
    g32 = np.ascontiguousarray(g, dtype=np.float32)
    p32 = None if p is None else np.ascontiguousarray(p, dtype=np.float32)
    return p32, g32


def _centred(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``x - mean(x)`` as a new float32 array, and the mean (``cv2.mean`` accumulates in float64)."""
    m = float(cv2.mean(x)[0])
    return np.subtract(x, np.float32(m), dtype=np.float32), m


def _clip0(x: np.ndarray) -> None:
    """``x = max(x, 0)`` in place (``cv2.threshold``: several times faster than ``np.maximum``)."""
    cv2.threshold(x, 0.0, 0.0, cv2.THRESH_TOZERO, dst=x)


class _GuideStats:
    """Everything of a WGIF / GIF that depends on the guide only, computed once per guide.

    ``gc`` is the centred guide, ``mu`` its box mean, ``var`` its box variance and ``inv`` the
    per-pixel ``1 / (var + eps / Gamma)`` (``Gamma = 1`` for the plain guided filter).
    """

    __slots__ = ("gc", "inv", "mu", "radius", "var")

    def __init__(self, guide32: np.ndarray, radius: int, eps: float, *, weighted: bool,
                 eps_weight: float | None = None):
        gc, _ = _centred(guide32)
        self.gc, self.radius = gc, radius
        g2 = np.multiply(gc, gc)
        mu, var = _box2(gc, g2, radius)
        var -= mu * mu
        _clip0(var)
        self.mu, self.var = mu, var
        if weighted:
            reg = _wgif_regulariser(gc, g2, eps, eps_weight, guide32)
            inv = np.add(var, reg, out=reg)
        else:
            inv = var + np.float32(eps)
        np.divide(np.float32(1.0), inv, out=inv)
        self.inv = inv


def _wgif_regulariser(gc: np.ndarray, g2: np.ndarray, eps: float, eps_weight: float | None,
                      guide32: np.ndarray) -> np.ndarray:
    """``eps / Gamma_G`` per pixel (a new float32 array); ``gc`` centred guide, ``g2 = gc**2``."""
    if eps_weight is None:
        lo, hi, _, _ = cv2.minMaxLoc(guide32)
        eps_weight = (0.001 * (hi - lo)) ** 2
    if not eps_weight > 0:  # constant guide: Gamma = 1
        return np.full(gc.shape, np.float32(eps), dtype=np.float32)
    m3, w = _box2(gc, g2, 1)
    w -= m3 * m3
    _clip0(w)
    w += np.float32(eps_weight)              # w = var3 + eps'
    inv_w = np.divide(np.float32(1.0), w, out=m3)
    mean_inv = float(cv2.mean(inv_w)[0])     # float64 accumulation
    # eps / Gamma = eps / (w * mean_inv)
    np.divide(np.float32(eps / mean_inv), w, out=w)
    return w


def _apply(stats: _GuideStats, p32: np.ndarray) -> np.ndarray:
    """One guided-filter pass of ``p32`` with precomputed guide statistics (float32 out)."""
    r, gc, mu_g = stats.radius, stats.gc, stats.mu
    pc, pm = _centred(p32)
    gp = np.multiply(gc, pc)
    mu_p, cov = _box2(pc, gp, r)
    np.multiply(mu_g, mu_p, out=gp)
    cov -= gp
    a = np.multiply(cov, stats.inv, out=cov)
    b = np.multiply(a, mu_g, out=gp)
    np.subtract(mu_p, b, out=b)              # b = mu_p - a mu_g
    q, mean_b = _box2(a, b, r, mu_p, pc)
    q *= gc
    q += mean_b
    q += np.float32(pm)
    return q


def _self_guided_wgif(g32: np.ndarray, radius: int, eps: float, eps_weight: float | None) -> np.ndarray:
    """WGIF of ``g32`` guided by itself (``cov = var``), float32 out."""
    gc, m = _centred(g32)
    g2 = np.multiply(gc, gc)
    mu, var = _box2(gc, g2, radius)
    var -= mu * mu
    _clip0(var)
    reg = _wgif_regulariser(gc, g2, eps, eps_weight, g32)
    reg += var
    a = np.divide(var, reg, out=var)         # var / (var + eps / Gamma)
    b = np.multiply(a, mu, out=reg)
    np.subtract(mu, b, out=b)                # b = mu (1 - a)
    q, mean_b = _box2(a, b, radius, mu, g2)
    q *= gc
    q += mean_b
    q += np.float32(m)
    return q


def guided_filter(p: np.ndarray, guide: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Guided filter of He et al.: ``q = mean(a) * guide + mean(b)``.

    Parameters
    ----------
    p : (H, W) array
        Image to filter, any real units (preserved).
    guide : (H, W) array
        Gray guide image, normally in ``[0, 1]``.
    radius : int, keyword-only
        Window radius ``r >= 1`` (window ``2r+1`` pixels wide); box means with the ``"reflect"``
        border (OpenCV ``BORDER_REFLECT``).
    eps : float, keyword-only
        Regulariser ``> 0`` in squared guide units.

    Returns
    -------
    (H, W) float32

    Raises
    ------
    ValueError
        One message listing every bad argument (shapes, radius, eps).

    Notes
    -----
    ``a = cov(G, p) / (var(G) + eps)``, ``b = mean(p) - a mean(G)``; see the module docstring.

    References
    ----------
    K. He, J. Sun, X. Tang, "Guided image filtering", IEEE TPAMI 35(6):1397-1409, 2013.
    """
    p32, g32 = _check(p, guide, radius, eps)
    return _apply(_GuideStats(g32, int(radius), float(eps), weighted=False), p32)


def weighted_guided_filter(p: np.ndarray, guide: np.ndarray, *, radius: int, eps: float,
                           eps_weight: float | None = None) -> np.ndarray:
    """Weighted guided image filter (WGIF) of Li et al. 2015.

    Parameters
    ----------
    p : (H, W) array
        Image to filter, any real units (preserved: the output is linear in ``p``).
    guide : (H, W) array
        Gray guide image, normally in ``[0, 1]``.
    radius : int, keyword-only
        Window radius ``r >= 1`` of the box means (window ``2r+1``; ``"reflect"`` border).
    eps : float, keyword-only
        Regulariser ``lambda > 0`` in squared guide units (the paper's ``lambda``; Galetto: 0.005).
    eps_weight : float, optional, keyword-only
        ``eps'`` of the edge-aware weight, in squared guide units.  Default ``(0.001 L)^2`` with
        ``L = max(guide) - min(guide)``.

    Returns
    -------
    (H, W) float32

    Raises
    ------
    ValueError
        One message listing every bad argument (shapes, radius, eps, eps_weight).

    Notes
    -----
    ``Gamma(k) = (var3(k) + eps') * mean_i 1 / (var3(i) + eps')`` with ``var3`` the 3x3 variance of
    the guide; ``a = cov(G, p) / (var(G) + eps / Gamma)``, ``b = mean(p) - a mean(G)``,
    ``q = mean(a) G + mean(b)``.  ``METHODS.md`` §2.6: the faithful WGIF (3x3 variance), not the
    r-window variance of Galetto's ``weightedGF.m`` MODE 3.

    References
    ----------
    Z. Li, J. Zheng, Z. Zhu, W. Yao, S. Wu, "Weighted guided image filtering", IEEE TIP
    24(1):120-129, 2015.
    """
    try:
        eps_weight = _check_eps_weight(eps_weight)
        ew_err = None
    except ValueError as exc:
        ew_err = str(exc)
    try:
        p32, g32 = _check(p, guide, radius, eps)
    except ValueError as exc:
        raise ValueError("; ".join([str(exc)] + ([ew_err] if ew_err else []))) from None
    if ew_err:
        raise ValueError(ew_err)
    return _apply(_GuideStats(g32, int(radius), float(eps), weighted=True, eps_weight=eps_weight), p32)


def _check_eps_weight(eps_weight):
    if eps_weight is None:
        return None
    try:
        ok = float(eps_weight) > 0 and np.isfinite(float(eps_weight))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"eps_weight must be None or a finite number > 0 (squared guide units), got {eps_weight!r}")
    return float(eps_weight)


def galetto_refine(blur_map: np.ndarray, image_gray: np.ndarray, *, radius: int = 16, eps: float = 0.005,
                   iterations: int = 7, guide_iterations: int = 7) -> np.ndarray:
    """Galetto & Deng's map refinement: iterated WGIF guided by a WGIF-smoothed image.

    1. ``guide = image_gray``, then ``guide_iterations`` times ``guide = WGIF(guide, guide)``
       (self-guided: removes texture, keeps silhouettes).
    2. ``map = blur_map``, then ``iterations`` times ``map = WGIF(map, guide)``.

    Both steps use the same ``radius`` and ``eps`` (the paper gives r = 16, eps = 0.005, 7
    iterations for step 2 only; ``METHODS.md`` §5.4 chose the same values for step 1).  The guide's
    statistics (box means, variances, edge-aware weight) are computed once for all the iterations
    of step 2.

    Parameters
    ----------
    blur_map : (H, W) array
        Blur map in any units (e.g. Gaussian sigma 0..19); the units are preserved (the filter is
        linear in the map).
    image_gray : (H, W) array
        Gray image in ``[0, 1]`` (BT.601 luma, :func:`methods.base.to_gray`).
    radius, eps : keyword-only
        WGIF window radius (``>= 1``, ``"reflect"`` border) and regulariser (squared guide units).
    iterations, guide_iterations : int >= 0, keyword-only
        Passes of step 2 and step 1; ``iterations = 0`` returns the map as float32.

    Returns
    -------
    (H, W) float32 refined map, in the units of ``blur_map``.

    Raises
    ------
    ValueError
        One message listing every bad argument.

    References
    ----------
    F. J. Galetto, G. Deng, "Single image defocus map estimation through patch blurriness
    classification and its applications", The Visual Computer, 2022, §3.3 (Fig. 6 settings).
    """
    try:
        p32, g32 = _check(blur_map, image_gray, radius, eps)
        its_err = None
    except ValueError as exc:
        p32 = g32 = None
        its_err = str(exc)
    bad = [f"{name} must be an integer >= 0, got {v!r}" for name, v in
           (("iterations", iterations), ("guide_iterations", guide_iterations))
           if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0]
    if its_err or bad:
        raise ValueError("; ".join(([its_err] if its_err else []) + bad))
    radius, eps = int(radius), float(eps)
    q = p32.copy() if p32 is blur_map else p32
    if iterations == 0:
        return q
    guide = g32
    for _ in range(guide_iterations):
        guide = _self_guided_wgif(guide, radius, eps, None)
    stats = _GuideStats(guide, radius, eps, weighted=True)
    for _ in range(iterations):
        q = _apply(stats, q)
    return q
