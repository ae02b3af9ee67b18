"""Matting-Laplacian propagation (``datagen.propagate``): the multifrontal direct solver, the banded
Laplacian, the ``constraint="values"`` option and bad input.  Numerics shared with Zhuo & Sim (brute-force
Laplacian, CG vs direct) are in ``test_methods_classical.py``."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from datagen.propagate import (
    GridStencil,
    matting_laplacian,
    matting_stencil,
    nested_dissection_order,
    propagate_sparse,
    solve_propagation,
)

from .conftest import shared_data


def _scene(shape=(40, 50), seed=0, density=0.1):
    """A smooth random RGB image with some texture, a blur-map-like value field (0..6) and a sparse mask."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape + (3,)), (1.5, 1.5, 0)) + 0.02 * rng.random(shape + (3,))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    values = 6.0 * (0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0))
    mask = rng.random(shape) < density
    return img, values, mask


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------------
# the direct solver against SuperLU (the previous direct solver)
# ------------------------------------------------------------------------------------------------

def test_direct_solver_matches_superlu_on_a_small_image():
    img, values, mask = _scene()
    lap = matting_laplacian(img)
    old = solve_propagation(lap, values, mask, solver="splu")
    assert np.ptp(old) > 1.0                                    # a non-trivial solution
    np.testing.assert_allclose(propagate_sparse(values, mask, img, solver="direct"), old, rtol=0, atol=1e-6)
    np.testing.assert_allclose(solve_propagation(lap, values, mask, solver="direct"), old, rtol=0, atol=1e-6)
    np.testing.assert_allclose(propagate_sparse(values, mask, img), old, rtol=0, atol=1e-6)   # "auto"


@pytest.mark.parametrize("shape, radius", [((3, 3), 1), ((3, 40), 1), ((61, 4), 1), ((23, 37), 1),
                                           ((70, 9), 1), ((18, 21), 2)])
def test_direct_solver_on_odd_shapes_and_radius_2(shape, radius):
    img, values, mask = _scene(shape, seed=sum(shape), density=0.2)
    mask.flat[0] = True
    lap = matting_laplacian(img, radius=radius)
    ref = solve_propagation(lap, values, mask, solver="splu")
    np.testing.assert_allclose(propagate_sparse(values, mask, img, radius=radius, solver="direct"), ref,
                               rtol=0, atol=1e-6)


def test_direct_solver_fits_the_constraints_and_keeps_constants():
    img, values, mask = _scene((30, 36), seed=3)
    pinned = propagate_sparse(values, mask, img, lam=1e4, solver="direct")
    np.testing.assert_allclose(pinned[mask], values[mask], atol=1e-3)
    np.testing.assert_allclose(propagate_sparse(np.full((30, 36), 2.5), mask, img, solver="direct"), 2.5, atol=1e-6)


def test_non_symmetric_or_non_grid_matrices_fall_back_to_superlu():
    img, values, mask = _scene((12, 14), seed=4)
    lap = matting_laplacian(img).tolil()
    lap[0, 1] += 0.01                                           # no longer symmetric
    lap = lap.tocsr()
    assert GridStencil.from_sparse(lap, 12, 14) is None
    np.testing.assert_allclose(solve_propagation(lap, values, mask, solver="direct"),
                               solve_propagation(lap, values, mask, solver="splu"), atol=1e-9)
    far = sp.identity(12 * 14, format="csr") + sp.csr_matrix(([1e-3, 1e-3], ([0, 150], [150, 0])), shape=(168, 168))
    assert GridStencil.from_sparse(far, 12, 14) is None         # couples pixels 10 rows apart


# ------------------------------------------------------------------------------------------------
# the banded Laplacian
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("radius, scale_epsilon", [(1, True), (1, False), (2, True)])
def test_stencil_and_csr_forms_agree(radius, scale_epsilon):
    img = np.random.default_rng(5).random((9, 11, 3))
    st = matting_stencil(img, radius=radius, scale_epsilon=scale_epsilon)
    lap = matting_laplacian(img, radius=radius, scale_epsilon=scale_epsilon)
    assert st.reach == 2 * radius and st.bands.shape == (len(st.offsets), 9, 11)
    assert abs(st.tocsr() - lap).max() == 0 and lap.has_sorted_indices
    back = GridStencil.from_sparse(lap, 9, 11)
    np.testing.assert_array_equal(back.diag, st.diag)
    np.testing.assert_array_equal(back.bands, st.bands)
    # the upper half of the matrix: bands[o][y, x] = L[(y, x), (y, x) + offsets[o]]
    dense = lap.toarray()
    dy, dx = st.offsets[3]
    assert st.bands[3, 4, 5] == dense[4 * 11 + 5, (4 + dy) * 11 + 5 + dx]


def test_gray_and_two_channel_images():
    rng = np.random.default_rng(6)
    for img in (rng.random((8, 9)), rng.random((8, 9, 2)), rng.random((8, 9, 4))):
        lap = matting_laplacian(img).toarray()
        chans = img[..., None] if img.ndim == 2 else img
        ref = np.zeros_like(lap)                                # brute force, Levin et al. eq. 12
        for y in range(1, 7):
            for x in range(1, 8):
                idx = [(y + a) * 9 + x + b for a in (-1, 0, 1) for b in (-1, 0, 1)]
                win = chans[y - 1:y + 2, x - 1:x + 2].reshape(9, -1)
                xc = win - win.mean(axis=0)
                cov = xc.T @ xc / 9 + 1e-7 / 9 * np.eye(win.shape[1])
                ref[np.ix_(idx, idx)] += np.eye(9) - (1 + xc @ np.linalg.inv(cov) @ xc.T) / 9
        np.testing.assert_allclose(lap, ref, atol=1e-8 * np.abs(ref).max())


# ------------------------------------------------------------------------------------------------
# constraint="values": D = diag(s)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["direct", "splu"])
def test_values_constraint_matches_its_definition(solver):
    img, values, mask = _scene(seed=7)
    values[::7] = 0.0                                           # masked zeros: weight 0, free pixels
    lam = 1e-3
    s = np.where(mask, values, 0.0).ravel()
    a = matting_laplacian(img).toarray() + lam * np.diag(s)
    ref = np.linalg.solve(a, lam * s * s).reshape(values.shape)
    out = propagate_sparse(values, mask, img, lam=lam, solver=solver, constraint="values")
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    binary = propagate_sparse(values, mask, img, lam=lam, solver=solver)
    assert np.abs(binary - out).max() > 1e-3                    # the option changes the answer


def test_values_constraint_with_no_positive_value_gives_zeros_or_raises():
    img, values, mask = _scene((10, 12), seed=8)
    zero = np.zeros_like(values)
    assert np.array_equal(propagate_sparse(zero, mask, img, constraint="values"), np.zeros((10, 12)))
    with pytest.raises(ValueError) as exc:
        propagate_sparse(zero, mask, img, constraint="values", if_unconstrained="raise")
    assert "no constrained pixel" in _one_line(exc)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input_gives_one_line_value_errors():
    img, values, mask = _scene((10, 12), seed=9)
    lap = matting_laplacian(img)
    cases = [
        (lambda: propagate_sparse(values, mask[:, :11], img), "differ in size"),
        (lambda: solve_propagation(lap, values, mask[:9]), "same shape"),
        (lambda: solve_propagation(matting_stencil(img[:9]), values, mask), "stencil"),
        (lambda: solve_propagation(lap, values[:, :11], mask[:, :11]), "expected"),
        (lambda: propagate_sparse(values, np.zeros_like(mask), img, if_unconstrained="raise"), "no constrained pixel"),
        (lambda: solve_propagation(lap, values, np.zeros_like(mask), if_unconstrained="raise"), "no constrained pixel"),
        (lambda: propagate_sparse(-values, mask, img, constraint="values"), ">= 0"),
        (lambda: propagate_sparse(values, mask, img, constraint="weights"), "constraint"),
        (lambda: propagate_sparse(values, mask, img, solver="cholmod"), "solver"),
        (lambda: propagate_sparse(values, mask, img, if_unconstrained="nan"), "if_unconstrained"),
        (lambda: propagate_sparse(np.where(mask, np.nan, values), mask, img), "NaN"),
        # L = 0 (no window fits): pixels outside the mask are unconstrained, the system is singular
        (lambda: solve_propagation(sp.csr_matrix((120, 120)), values, mask), "singular"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError) as exc:
            call()
        assert words in _one_line(exc), words


def test_empty_mask_gives_zeros_by_default():
    img, values, _ = _scene((10, 12), seed=10)
    assert np.array_equal(propagate_sparse(values, np.zeros((10, 12), bool), img), np.zeros((10, 12)))


def test_nested_dissection_order_is_a_permutation_with_strips_last():
    perm = nested_dissection_order(20, 30)
    assert np.array_equal(np.sort(perm), np.arange(600))
    assert set(perm[-40:] % 30) == {14, 15}                     # the first cut (columns 14-15) comes last


# ------------------------------------------------------------------------------------------------
# real photo
# ------------------------------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.slow
def test_direct_solver_on_a_kodak_crop_with_canny_edges():
    from PIL import Image

    from datagen.edges import canny_edges

    path = shared_data("kodak24", "kodim19.png")
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)[100:196, 150:270] / 255.0
    mask = canny_edges(img, channel="gray", sigma=1.0)
    assert 0.02 < mask.mean() < 0.4
    values = np.tile(0.75 + 5.25 * np.arange(120) / 119.0, (96, 1))
    ref = solve_propagation(matting_laplacian(img), values, mask, solver="splu")
    for constraint in ("binary", "values"):
        out = propagate_sparse(values, mask, img, solver="direct", constraint=constraint)
        if constraint == "binary":
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
        assert np.isfinite(out).all() and out.min() > -1.0 and out.max() < 7.0


def test_grid_stencil_checks_its_shapes():
    with pytest.raises(ValueError) as exc:
        GridStencil(np.zeros((4, 5)), np.zeros((12, 4, 4)), 2)
    assert "bands must have shape (12, 4, 5)" in _one_line(exc)
    with pytest.raises(ValueError) as exc:
        GridStencil(np.zeros((4, 5)), np.zeros((0, 4, 5)), 0)
    assert "reach >= 1" in _one_line(exc)


def test_every_solver_accepts_the_stencil_form():
    img, values, mask = _scene((24, 28), seed=11)
    st = matting_stencil(img)
    ref = solve_propagation(st, values, mask, solver="direct")
    np.testing.assert_allclose(solve_propagation(st, values, mask, solver="splu"), ref, atol=1e-9)
    cg = solve_propagation(st, values, mask, solver="cg", tol=1e-10, maxiter=20000)
    np.testing.assert_allclose(cg, ref, atol=1e-4)
