"""Guided filter, WGIF (Li et al. 2015) and Galetto & Deng's refinement (methods/guided.py).

The reference below is written from the formulas (He et al. TPAMI 2013 eqs. 5-8; Li et al. TIP 2015
eqs. 5-8; METHODS.md §2.6), in float64, with an explicit sum over every pixel's window of the
half-sample-symmetric ("reflect") padded image: no box filter, no running sums, no centring.
"""
from __future__ import annotations

import numpy as np
import pytest

from methods.guided import galetto_refine, guided_filter, weighted_guided_filter


def _window_mean(x: np.ndarray, r: int) -> np.ndarray:
    xp = np.pad(np.asarray(x, np.float64), r, mode="symmetric")
    h, w = x.shape
    out = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = xp[i:i + 2 * r + 1, j:j + 2 * r + 1].sum() / (2 * r + 1) ** 2
    return out


def _reference(p, g, r, eps, *, weighted, eps_weight=None):
    p = np.asarray(p, np.float64)
    g = np.asarray(g, np.float64)
    mg, mp = _window_mean(g, r), _window_mean(p, r)
    var = _window_mean(g * g, r) - mg * mg
    cov = _window_mean(g * p, r) - mg * mp
    if weighted:
        if eps_weight is None:
            eps_weight = (0.001 * (g.max() - g.min())) ** 2
        v3 = _window_mean(g * g, 1) - _window_mean(g, 1) ** 2
        gamma = np.empty(g.shape)
        for k in np.ndindex(g.shape):   # Gamma(k) = (1/N) sum_i (v3(k) + eps') / (v3(i) + eps')
            gamma[k] = np.sum((v3[k] + eps_weight) / (v3 + eps_weight)) / v3.size
        a = cov / (var + eps / gamma)
    else:
        a = cov / (var + eps)
    b = mp - a * mg
    return _window_mean(a, r) * g + _window_mean(b, r)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(9)
    h, w = 20, 23
    yy, xx = np.mgrid[0:h, 0:w]
    g = 0.2 + 0.5 * (xx > 11) + 0.05 * rng.standard_normal((h, w))   # step edge + texture
    g[:, :4] = 0.3                                                   # a flat band (Gamma small)
    p = np.sin(yy / 3.0) + 0.3 * rng.standard_normal((h, w))
    return p, g


def test_guided_filter_matches_direct_reference(small):
    p, g = small
    for r, eps in [(3, 0.01), (1, 1e-3), (15, 0.005)]:      # r=15: window wider than the image
        out = guided_filter(p, g.astype(np.float32), radius=r, eps=eps)
        ref = _reference(p, g.astype(np.float32), r, eps, weighted=False)
        assert out.dtype == np.float32 and out.shape == p.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.ptp(p))


def test_wgif_matches_direct_reference(small):
    p, g = small
    g32 = g.astype(np.float32)
    for r, eps, ew in [(3, 0.005, None), (2, 0.05, None), (3, 0.005, 1e-4)]:
        out = weighted_guided_filter(p, g32, radius=r, eps=eps, eps_weight=ew)
        ref = _reference(p, g32, r, eps, weighted=True, eps_weight=ew)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.ptp(p))
    # the weight matters: WGIF differs from the GIF with the same eps
    gif = _reference(p, g32, 3, 0.005, weighted=False)
    assert np.abs(weighted_guided_filter(p, g32, radius=3, eps=0.005) - gif).max() > 1e-2


def test_galetto_refine_matches_composed_reference():
    rng = np.random.default_rng(1)
    g = np.clip(0.5 + 0.3 * np.sign(np.arange(17) - 8)[None, :] + 0.05 * rng.standard_normal((15, 17)), 0, 1)
    m = rng.uniform(0, 19, g.shape)
    ref_g = g.astype(np.float32).astype(np.float64)
    for _ in range(2):
        ref_g = _reference(ref_g, ref_g, 2, 0.005, weighted=True)
    ref = m
    for _ in range(3):
        ref = _reference(ref, ref_g, 2, 0.005, weighted=True)
    out = galetto_refine(m, g.astype(np.float32), radius=2, eps=0.005, iterations=3, guide_iterations=2)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5 * 19)
    assert np.array_equal(galetto_refine(m, g, iterations=0), m.astype(np.float32))


@pytest.mark.parametrize("fn", [guided_filter, weighted_guided_filter])
def test_constant_input_and_linearity(fn, small):
    p, g = small
    g32 = g.astype(np.float32)
    np.testing.assert_allclose(fn(np.full(p.shape, 7.25), g32, radius=3, eps=0.005), 7.25, atol=1e-5)
    # a constant guide as well (eps' = 0 -> Gamma = 1)
    np.testing.assert_allclose(fn(np.full(p.shape, 3.0), np.full(p.shape, 0.4, np.float32), radius=3, eps=0.005),
                               3.0, atol=1e-6)
    f1 = fn(p, g32, radius=3, eps=0.005)
    f2 = fn(2 * p + 1, g32, radius=3, eps=0.005)
    np.testing.assert_allclose(f2, 2 * f1 + 1, atol=1e-5)


def test_galetto_refine_constant_and_linear(small):
    p, g = small
    g32 = np.clip(g, 0, 1).astype(np.float32)
    np.testing.assert_allclose(galetto_refine(np.full(p.shape, 4.0), g32, radius=3), 4.0, atol=1e-5)
    m = np.abs(p) * 5
    np.testing.assert_allclose(galetto_refine(2 * m + 1, g32, radius=3), 2 * galetto_refine(m, g32, radius=3) + 1,
                               atol=1e-4)


def test_edge_preservation_beats_box_blur():
    """A step in the guide keeps a step in the filtered map; a box blur of the same radius smears it."""
    rng = np.random.default_rng(3)
    h, w, r = 40, 60, 6
    step = (np.arange(w) >= 30).astype(np.float64)[None, :].repeat(h, 0)
    guide = (0.2 + 0.6 * step + 0.01 * rng.standard_normal((h, w))).astype(np.float32)
    noisy_map = 10 * step + 2 * rng.standard_normal((h, w))

    def edge_jump(m):   # mean difference across the edge, columns 29 -> 30
        return float(np.mean(m[:, 30] - m[:, 29]))

    box = _window_mean(noisy_map, r)
    wg = weighted_guided_filter(noisy_map, guide, radius=r, eps=0.005)
    gf = guided_filter(noisy_map, guide, radius=r, eps=0.005)
    assert edge_jump(box) < 2.0
    assert edge_jump(wg) > 8.0 and edge_jump(wg) >= edge_jump(gf) - 1e-6
    # and the noise away from the edge is smoothed
    assert wg[:, :20].std() < 0.5 * noisy_map[:, :20].std()
    ref = galetto_refine(noisy_map, guide, radius=r)
    assert edge_jump(ref) > 8.0 and ref[:, :20].std() < 0.3 * noisy_map[:, :20].std()


def test_bad_arguments_raise_one_value_error():
    g = np.zeros((8, 9), np.float32)
    with pytest.raises(ValueError, match="p must be a real array of the guide's shape"):
        guided_filter(np.zeros((8, 8)), g, radius=2, eps=0.01)
    with pytest.raises(ValueError, match="guide must be a non-empty 2-D"):
        weighted_guided_filter(np.zeros((8, 9, 3)), np.zeros((8, 9, 3)), radius=2, eps=0.01)
    with pytest.raises(ValueError, match="radius must be an integer >= 1"):
        guided_filter(g, g, radius=0, eps=0.01)
    with pytest.raises(ValueError, match="radius must be an integer >= 1"):
        weighted_guided_filter(g, g, radius=2.5, eps=0.01)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        weighted_guided_filter(g, g, radius=2, eps=0)
    with pytest.raises(ValueError, match="eps_weight must be None or"):
        weighted_guided_filter(g, g, radius=2, eps=0.1, eps_weight=-1)
    with pytest.raises(ValueError, match=r"radius must .*; eps_weight must"):
        weighted_guided_filter(g, g, radius=0, eps=0.1, eps_weight="x")
    # several problems in one message
    with pytest.raises(ValueError, match=r"radius must .*; eps must .*; iterations must"):
        galetto_refine(g, g, radius=-1, eps=float("nan"), iterations=-2)
    with pytest.raises(TypeError):
        guided_filter(g, g, 2, 0.01)  # keyword-only


def test_tiny_images_and_threaded_path_identical():
    """Any size down to 1x1 (window wider than the image); the two-thread box pairs change nothing."""
    import cv2
    for shape in [(1, 1), (1, 5), (32, 32)]:
        g = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
        np.testing.assert_allclose(galetto_refine(np.full(shape, 5.0), g), 5.0, atol=1e-5)
    rng = np.random.default_rng(2)
    g = rng.uniform(0, 1, (300, 250)).astype(np.float32)      # >= 65536 px: pairs go to a thread
    m = rng.uniform(0, 19, g.shape)
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        serial = galetto_refine(m, g, radius=4, iterations=2, guide_iterations=2)
        cv2.setNumThreads(2)
        threaded = galetto_refine(m, g, radius=4, iterations=2, guide_iterations=2)
    finally:
        cv2.setNumThreads(before)
    assert np.array_equal(serial, threaded)
