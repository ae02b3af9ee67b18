"""Closed-form matting Laplacian and sparse-to-dense propagation (numpy/scipy only).

Matting Laplacian (Levin, Lischinski & Weiss, "A closed-form solution to natural image
matting", TPAMI 30(2), 2008, eq. 12)::

    L_ij = sum_{k | i, j in w_k} ( delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + eps' E_3)^{-1} (I_j - mu_k)) / |w_k| )

over all ``(2r+1) x (2r+1)`` windows ``w_k`` lying *entirely inside* the image (no padding: border
pixels belong to fewer windows, as in Levin's and Zhuo & Sim's ``getLaplacian.m``); ``mu_k`` and
``Sigma_k`` are the window's colour mean and (biased, ``1/|w|``) covariance.  The regulariser is
``eps' = epsilon / |w_k|`` (Levin's paper and code, pymatting) or, with ``scale_epsilon=False``,
``eps' = epsilon`` (Zhuo & Sim's ``getLaplacian.m`` adds ``eps * eye(3)`` directly).  ``L`` is
symmetric positive semi-definite with zero row sums; its ``(4r+1)^2`` neighbour offsets are the
only non-zeros (25 per row for ``r = 1``).

Construction is vectorised: the ``|w|^2`` (pixel-in-window, pixel-in-window) pairs are visited once
each (by symmetry ``|w|(|w|+1)/2`` of them), every visit being one array operation over all windows,
and the affinities are accumulated into ``(4r+1)^2`` offset planes (a banded layout) rather than a
``|w|^2``-per-window COO list, so memory stays ``O((4r+1)^2 N)``.  Time and memory are linear in the
number of pixels ``N``; about 0.3-0.5 s for 360x360 and 1 s for 640x480 on the 2-core reference
machine (numpy, single-threaded), peak memory ~ 0.4 GB at 640x480.

Propagation (Levin et al. colourisation-style; Zhuo & Sim 2011 eq. 13) solves::

    (L + lam * D) x = lam * D * s,       D = diag(mask)   (binary, as in Zhuo & Sim)

``A = L + lam D`` is symmetric positive definite as soon as one pixel is constrained (the ``eps``
regulariser leaves only the constants in the null space of ``L``).  Solvers:

* ``"direct"``: sparse LU (SuperLU, :func:`scipy.sparse.linalg.splu`, no pivoting - ``A`` is SPD) in a
  geometric nested-dissection order (:func:`nested_dissection_order`; ~20-30 % less fill and 1.5-2.5x
  faster than SuperLU's minimum-degree ordering here).  Fill ``O(N log N)``, time ``~O(N^1.5)``.
* ``"cg"``: conjugate gradients (``tol`` = relative residual) from a normalised-convolution start,
  preconditioned by a two-grid V-cycle (4x4 aggregates, exact coarse LU, damped Jacobi smoothing;
  default) or plain Jacobi.  ``O(N)`` memory; the system is badly conditioned (``lam = 1e-3``), so
  Jacobi-CG needs ~6000 iterations at 360x360 and the two-grid preconditioner ~900.
* ``"auto"``: direct up to ``direct_max_pixels`` (600k pixels, ~3 GB for the factor), CG above.

Measured for Zhuo & Sim maps (2-core reference machine; wall time and peak RSS of the whole
``methods.classical.zhuo_sim`` pipeline, of which the solve is 70-80 %)::

    image        direct             cg (two-grid)      cg (Jacobi)
    360x360      ~2 s,   0.7 GB     ~7 s,   0.3 GB     ~13-16 s
    640x480      ~6 s,   1.6 GB     ~20 s,  0.6 GB     ~50 s
    1200x1000    ~42 s,  6.4 GB     ~76 s,  2.2 GB     -

CG and direct solutions agree to ~1e-6 (sigma px) at ``tol = 1e-6``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import ndimage

__all__ = ["matting_laplacian", "nested_dissection_order", "propagate_sparse", "solve_propagation"]

#: Above this many pixels ``solver="auto"`` switches from sparse LU to preconditioned CG.
DIRECT_MAX_PIXELS = 600_000


def _as_channels(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {np.shape(image)}")
    if not np.isfinite(img).all():
        raise ValueError("image has NaN or infinite values")
    return img


def matting_laplacian(image: np.ndarray, *, epsilon: float = 1e-7, radius: int = 1,
                      scale_epsilon: bool = True) -> sp.csr_matrix:
    """Closed-form matting Laplacian of an image (Levin et al. 2008), ``N x N`` CSR, ``N = H * W``.

    Parameters
    ----------
    image : ndarray, (H, W, C) or (H, W)
        Guide image, typically RGB in [0, 1] (float; converted to float64).
    epsilon : float, keyword-only
        Regulariser of the window covariance (``1e-7`` = Levin's / Zhuo's / pymatting's default).
    radius : int, keyword-only
        Window half-width ``r`` (windows are ``(2r+1)^2``).
    scale_epsilon : bool, keyword-only
        ``True``: ``Sigma + epsilon/|w| * I`` (Levin's paper and code); ``False``: ``Sigma + epsilon * I``
        (Zhuo & Sim's ``getLaplacian.m``).

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (H*W, H*W)
        Pixel ``(y, x)`` has index ``y * W + x`` (row-major, ``values.ravel()`` order).
    """
    img = _as_channels(image)
    h, w, c = img.shape
    r = int(radius)
    if r < 1:
        raise ValueError(f"radius must be >= 1, got {radius!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    n = h * w
    side = 2 * r + 1
    area = side * side
    hc, wc = h - 2 * r, w - 2 * r
    if hc <= 0 or wc <= 0:            # no window fits: L = 0
        return sp.csr_matrix((n, n))
    offs = [(dy, dx) for dy in range(side) for dx in range(side)]

    def win(dy: int, dx: int) -> np.ndarray:       # (hc, wc, c): pixel at offset (dy, dx) of every window
        return img[dy:dy + hc, dx:dx + wc]

    mean = sum(win(dy, dx) for dy, dx in offs) / area
    second = sum(win(dy, dx)[..., :, None] * win(dy, dx)[..., None, :] for dy, dx in offs) / area
    cov = second - mean[..., :, None] * mean[..., None, :]
    reg = epsilon / area if scale_epsilon else epsilon
    cov += reg * np.eye(c)
    inv = np.linalg.inv(cov)                       # (hc, wc, c, c), batched 3x3 inverses
    del second, cov

    xs = [win(dy, dx) - mean for dy, dx in offs]                  # centred colours
    ys = [np.einsum("hwij,hwj->hwi", inv, x) for x in xs]         # (Sigma + eps' E)^-1 (I_a - mu)
    band = 4 * r + 1
    planes = np.zeros((band, band, h, w))          # planes[dy+2r, dx+2r][y, x] = A[(y,x), (y+dy, x+dx)]
    for a, (ay, ax) in enumerate(offs):
        for b in range(a, len(offs)):
            by, bx = offs[b]
            v = (1.0 + np.einsum("hwi,hwi->hw", ys[a], xs[b])) / area
            planes[by - ay + 2 * r, bx - ax + 2 * r, ay:ay + hc, ax:ax + wc] += v
            if b != a:
                planes[ay - by + 2 * r, ax - bx + 2 * r, by:by + hc, bx:bx + wc] += v
    del xs, ys

    rows, cols, vals = [], [], []
    idx = np.arange(n, dtype=np.int64).reshape(h, w)
    diag = np.zeros((h, w))
    for dy in range(-2 * r, 2 * r + 1):
        for dx in range(-2 * r, 2 * r + 1):
            plane = planes[dy + 2 * r, dx + 2 * r]
            y0, y1 = max(0, -dy), min(h, h - dy)
            x0, x1 = max(0, -dx), min(w, w - dx)
            if y1 <= y0 or x1 <= x0:
                continue
            p = plane[y0:y1, x0:x1]
            if dy == 0 and dx == 0:
                continue
            diag[y0:y1, x0:x1] += p
            keep = p != 0
            rows.append(idx[y0:y1, x0:x1][keep])
            cols.append(idx[y0 + dy:y1 + dy, x0 + dx:x1 + dx][keep])
            vals.append(-p[keep])
    del planes
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    mat = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return mat.tocsr()


def _normalized_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cheap dense initial guess: Gaussian normalised convolution of the sparse values, widened until it covers."""
    m = mask.astype(np.float64)
    if not m.any():
        return np.zeros_like(values, dtype=np.float64)
    num, den = values * m, m
    sigma = 2.0
    fill = np.full(values.shape, float(np.sum(values * m) / m.sum()))
    while True:
        dn = ndimage.gaussian_filter(den, sigma, mode="nearest")
        nu = ndimage.gaussian_filter(num, sigma, mode="nearest")
        ok = dn > 1e-8
        out = np.where(ok, nu / np.maximum(dn, 1e-300), fill)
        if ok.all() or sigma > max(values.shape):
            return out
        fill = out
        sigma *= 2.0


def _stencil_reach(mat: sp.spmatrix, width: int) -> int:
    """Largest ``max(|dy|, |dx|)`` between coupled pixels of a row-major ``(., width)`` grid."""
    coo = mat.tocoo()
    if coo.nnz == 0:
        return 0
    dy = np.abs(coo.row // width - coo.col // width)
    dx = np.abs(coo.row % width - coo.col % width)
    return int(max(dy.max(), dx.max()))


def nested_dissection_order(height: int, width: int, *, separator: int = 2, leaf: int = 64) -> np.ndarray:
    """Geometric nested-dissection ordering of a row-major ``height x width`` grid.

    The longer side of each block is cut by a ``separator``-wide strip (``>=`` the stencil reach, so
    the two halves are uncoupled), the halves are ordered first (recursively) and the strip last;
    blocks of at most ``leaf`` pixels keep their natural order.  For the 25-point matting Laplacian
    this cuts the LU fill by ~25-30 % against SuperLU's minimum degree ordering (and the time by ~1.5x).
    """
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    parts: list[np.ndarray] = []
    stack: list[tuple[np.ndarray, bool]] = [(index, False)]
    # iterative post-order: (block, expanded) -> children first, separator after them
    while stack:
        block, expanded = stack.pop()
        if expanded:
            parts.append(block.ravel())
            continue
        bh, bw = block.shape
        if bh * bw <= leaf or max(bh, bw) <= separator + 2:
            parts.append(block.ravel())
            continue
        if bh >= bw:
            m = bh // 2 - separator // 2
            first, sep, second = block[:m], block[m:m + separator], block[m + separator:]
        else:
            m = bw // 2 - separator // 2
            first, sep, second = block[:, :m], block[:, m:m + separator], block[:, m + separator:]
        stack.append((sep, True))
        stack.append((second, False))
        stack.append((first, False))
    return np.concatenate(parts)


def _lu_nd(mat: sp.spmatrix, height: int, width: int):
    """Sparse LU of an SPD grid matrix in nested-dissection order; returns ``solve(b)``."""
    mat = mat.tocsr()
    reach = max(1, _stencil_reach(mat, width))
    perm = nested_dissection_order(height, width, separator=reach)
    lu = spla.splu(mat[perm][:, perm].tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})

    def solve(b: np.ndarray) -> np.ndarray:
        x = np.empty(b.shape[0])
        x[perm] = lu.solve(b[perm])
        return x
    return solve


def _two_grid_preconditioner(a: sp.csr_matrix, height: int, width: int, *, block: int = 4,
                             omega: float = 0.6) -> spla.LinearOperator:
    """Symmetric two-grid V-cycle used as CG preconditioner.

    Coarse space: piecewise-constant aggregates of ``block x block`` pixels (``P``), Galerkin coarse
    matrix ``P^T A P`` factorised exactly (:func:`_lu_nd`); smoother: one damped-Jacobi step
    (``omega``) before and one after the coarse correction.  Cuts the iteration count of Jacobi-PCG by
    ~7x on Zhuo-type problems (e.g. 6200 -> 900 at 360x360), ~3x in time.
    """
    n = a.shape[0]
    hc, wc = -(-height // block), -(-width // block)
    yy, xx = np.mgrid[0:height, 0:width]
    agg = ((yy // block) * wc + (xx // block)).ravel()
    p = sp.csr_matrix((np.ones(n), (np.arange(n), agg)), shape=(n, hc * wc))
    coarse = _lu_nd((p.T @ a @ p), hc, wc)
    pt = p.T.tocsr()
    dinv = omega / a.diagonal()

    def apply(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r).ravel()
        x = dinv * r
        x = x + p @ coarse(pt @ (r - a @ x))
        return x + dinv * (r - a @ x)
    return spla.LinearOperator((n, n), matvec=apply, dtype=np.float64)


def solve_propagation(laplacian: sp.spmatrix, values: np.ndarray, mask: np.ndarray, *, lam: float = 1e-3,
                      solver: str = "auto", tol: float = 1e-6, maxiter: int | None = None,
                      preconditioner: str = "twogrid", direct_max_pixels: int = DIRECT_MAX_PIXELS) -> np.ndarray:
    """Solve ``(L + lam*D) x = lam*D*s`` for a given Laplacian; ``values``/``mask`` are (H, W); returns (H, W) float64.

    ``solver``: ``"direct"`` (sparse LU in nested-dissection order, :func:`nested_dissection_order`),
    ``"cg"`` (preconditioned CG from a normalised-convolution start; ``preconditioner`` ``"twogrid"``
    (:func:`_two_grid_preconditioner`) or ``"jacobi"``; ``tol`` = relative residual ``||b - Ax|| / ||b||``,
    ``maxiter`` default ``max(2000, 40*sqrt(N))``; a CG that has not converged by then returns its last
    iterate) or ``"auto"`` (direct up to ``direct_max_pixels``, CG above).
    """
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if values.shape != mask.shape or values.ndim != 2:
        raise ValueError(f"values and mask must be (H, W) arrays of the same shape, got {values.shape} and {mask.shape}")
    h, w = values.shape
    n = values.size
    if laplacian.shape != (n, n):
        raise ValueError(f"laplacian is {laplacian.shape}, expected {(n, n)} for a {values.shape} map")
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam!r}")
    if not mask.any():
        return np.zeros(values.shape)
    s = np.where(mask, values, 0.0).ravel()
    if not np.isfinite(s).all():
        raise ValueError("values has NaN or infinite entries inside the mask")
    d = mask.ravel().astype(np.float64)
    a = (laplacian + sp.diags(lam * d)).tocsr()
    b = lam * d * s
    if solver == "auto":
        solver = "direct" if n <= direct_max_pixels else "cg"
    if solver == "direct":
        x = _lu_nd(a, h, w)(b)
    elif solver == "cg":
        if preconditioner == "twogrid":
            precond = _two_grid_preconditioner(a, h, w)
        elif preconditioner == "jacobi":
            diag = a.diagonal()
            precond = spla.LinearOperator((n, n), matvec=lambda v: v / diag, dtype=np.float64)
        else:
            raise ValueError(f"preconditioner must be 'twogrid' or 'jacobi', got {preconditioner!r}")
        x0 = _normalized_fill(values, mask).ravel()
        iters = maxiter if maxiter is not None else max(2000, int(40 * math.sqrt(n)))
        x, _ = spla.cg(a, b, x0=x0, rtol=tol, atol=0.0, maxiter=iters, M=precond)
    else:
        raise ValueError(f"solver must be 'auto', 'direct' or 'cg', got {solver!r}")
    return x.reshape(values.shape)


def propagate_sparse(values: np.ndarray, confidence_mask: np.ndarray, image: np.ndarray, *,
                     lam: float = 1e-3, epsilon: float = 1e-7, radius: int = 1, scale_epsilon: bool = True,
                     solver: str = "auto", tol: float = 1e-6, maxiter: int | None = None,
                     preconditioner: str = "twogrid", direct_max_pixels: int = DIRECT_MAX_PIXELS) -> np.ndarray:
    """Propagate sparse ``values`` (trusted where ``confidence_mask``) to every pixel, guided by ``image``.

    Minimises ``x^T L x + lam * sum_{i in mask} (x_i - s_i)^2`` (Levin et al. 2008 / Zhuo & Sim 2011),
    i.e. solves ``(L + lam*D) x = lam*D*s`` with ``D = diag(mask)`` (binary) and ``L`` the matting
    Laplacian of ``image`` (:func:`matting_laplacian`).  Returns an ``(H, W)`` float64 map; all zeros
    when the mask is empty.  See the module docstring for the solvers, their cost and timings.
    """
    img = _as_channels(image)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != img.shape[:2]:
        raise ValueError(f"values {values.shape} and image {img.shape[:2]} differ in size")
    if min(img.shape[:2]) < 2 * radius + 1 and np.asarray(confidence_mask).any():
        raise ValueError(f"image {img.shape[:2]} is too small for the matting Laplacian "
                         f"(needs at least {2 * radius + 1} pixels per side)")
    lap = matting_laplacian(img, epsilon=epsilon, radius=radius, scale_epsilon=scale_epsilon)
    return solve_propagation(lap, values, confidence_mask, lam=lam, solver=solver, tol=tol, maxiter=maxiter,
                             preconditioner=preconditioner, direct_max_pixels=direct_max_pixels)
