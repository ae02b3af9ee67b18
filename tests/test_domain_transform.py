"""datagen.domain_transform against a direct, pixel-by-pixel reference of Gastal & Oliveira's
recursive filter with Karaali et al.'s depth-edge penalty, plus the behaviour propagation relies on."""
from __future__ import annotations

import math

import numpy as np
import pytest

from datagen.domain_transform import (
    dt_propagate,
    recursive_filter,
    transform_derivatives,
)


def reference_rf(image, guide, *, sigma_s, sigma_r, iterations, depth_edges=None, psi=0.0):
    """The filter written out literally: scalar loops over every pixel and channel (slow)."""
    f = np.array(image, dtype=np.float64)
    if f.ndim == 2:
        f = f[..., None]
    j = np.array(guide, dtype=np.float64)
    if j.ndim == 2:
        j = j[..., None]
    h, w, c = f.shape
    dh = np.ones((h, w))
    dv = np.ones((h, w))
    for y in range(h):
        for x in range(w):
            if x > 0:
                dh[y, x] += sigma_s / sigma_r * sum(abs(j[y, x, k] - j[y, x - 1, k]) for k in range(j.shape[2]))
            if y > 0:
                dv[y, x] += sigma_s / sigma_r * sum(abs(j[y, x, k] - j[y - 1, x, k]) for k in range(j.shape[2]))
            if depth_edges is not None and depth_edges[y, x]:
                dh[y, x] += psi
                dv[y, x] += psi
    n = iterations
    for i in range(1, n + 1):
        sig = sigma_s * math.sqrt(3) * 2 ** (n - i) / math.sqrt(4 ** n - 1)
        a = math.exp(-math.sqrt(2) / sig)
        for y in range(h):                      # horizontal: left to right, then right to left
            for x in range(1, w):
                for k in range(c):
                    f[y, x, k] += a ** dh[y, x] * (f[y, x - 1, k] - f[y, x, k])
            for x in range(w - 2, -1, -1):
                for k in range(c):
                    f[y, x, k] += a ** dh[y, x + 1] * (f[y, x + 1, k] - f[y, x, k])
        for x in range(w):                      # vertical: top to bottom, then bottom to top
            for y in range(1, h):
                for k in range(c):
                    f[y, x, k] += a ** dv[y, x] * (f[y - 1, x, k] - f[y, x, k])
            for y in range(h - 2, -1, -1):
                for k in range(c):
                    f[y, x, k] += a ** dv[y + 1, x] * (f[y + 1, x, k] - f[y, x, k])
    return f if np.ndim(image) == 3 else f[..., 0]


@pytest.mark.parametrize(("psi", "iterations", "channels"), [(0.0, 1, 1), (0.0, 3, 3), (20.0, 5, 2), (1e4, 3, 3)])
def test_matches_the_direct_reference(psi, iterations, channels):
    rng = np.random.default_rng(int(psi) + iterations)
    h, w = 9, 13
    guide = rng.random((h, w, 3))
    image = rng.random((h, w, channels)) * 5 if channels > 1 else rng.random((h, w)) * 5
    edges = rng.random((h, w)) < 0.15
    kw = {"sigma_s": 4.0, "sigma_r": 0.7, "iterations": iterations, "depth_edges": edges, "psi": psi}
    got = recursive_filter(image, guide, **kw)
    want = reference_rf(image, guide, **kw)
    assert got.shape == np.shape(image) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_psi_zero_is_the_plain_filter_and_the_map_is_ignored():
    rng = np.random.default_rng(1)
    guide, image = rng.random((12, 10)), rng.random((12, 10))
    plain = recursive_filter(image, guide, sigma_s=5, sigma_r=0.5)
    with_map = recursive_filter(image, guide, sigma_s=5, sigma_r=0.5, depth_edges=np.ones((12, 10), bool), psi=0.0)
    np.testing.assert_array_equal(plain, with_map)
    np.testing.assert_allclose(plain, reference_rf(image, guide, sigma_s=5, sigma_r=0.5, iterations=3), rtol=1e-12)


def test_constants_are_kept_and_a_flat_guide_smooths_everything():
    guide = np.full((20, 24, 3), 0.5)
    np.testing.assert_allclose(recursive_filter(np.full((20, 24), 3.25), guide, sigma_s=6, sigma_r=0.3), 3.25,
                               rtol=0, atol=1e-12)
    spike = np.zeros((20, 24))
    spike[10, 12] = 1.0
    out = recursive_filter(spike, guide, sigma_s=6, sigma_r=0.3)
    assert out[10, 12] < 0.2 and out[10, 16] > 0 and out[14, 12] > 0      # spread around in both directions


def test_derivatives_add_psi_at_the_depth_edges():
    guide = np.zeros((4, 5))
    guide[:, 3:] = 1.0
    edges = np.zeros((4, 5), bool)
    edges[1, 1] = True
    dh, dv = transform_derivatives(guide, sigma_s=10, sigma_r=2, depth_edges=edges, psi=7)
    assert dh[0, 3] == 1 + 5 * 1.0 and dh[0, 0] == 1 and dh[0, 4] == 1
    assert dh[1, 1] == 1 + 7 and dv[1, 1] == 1 + 7 and (dv[:, 3] == 1).all()


def test_large_psi_keeps_values_on_their_side_of_a_depth_edge():
    """Two flat regions of one colour, split by a depth edge: with a large psi each side keeps its own
    sparse value; with psi = 0 the sides mix (the guide alone sees no edge)."""
    h, w = 40, 60
    guide = np.full((h, w, 3), 0.4)
    values, mask = np.zeros((h, w)), np.zeros((h, w), bool)
    mask[::5, 2:28:5] = True
    values[:, :30] = 1.0
    mask[::5, 33::5] = True
    values[:, 30:] = 5.0
    edges = np.zeros((h, w), bool)
    edges[:, 30] = True
    kw = {"sigma_s": 20.0, "sigma_r": 0.5, "iterations": 5}
    split = dt_propagate(values, mask, guide, depth_edges=edges, psi=1e3, **kw)
    mixed = dt_propagate(values, mask, guide, **kw)
    assert np.abs(split[:, :30] - 1.0).max() < 1e-6 and np.abs(split[:, 31:] - 5.0).max() < 1e-6
    assert abs(mixed[20, 28] - 1.0) > 0.5 and abs(mixed[20, 32] - 5.0) > 0.5


def test_propagation_keeps_units_and_reproduces_dense_input():
    rng = np.random.default_rng(3)
    guide = rng.random((16, 18, 3))
    values = rng.uniform(0.5, 6.0, (16, 18))
    dense = dt_propagate(values, np.ones((16, 18)), guide, sigma_s=8, sigma_r=0.5, iterations=3)
    assert dense.min() >= values.min() - 1e-9 and dense.max() <= values.max() + 1e-9
    # (a guide of gentle contrast: behind strong guide edges RF(M) is tiny and eps shows)
    soft = 0.4 + 0.05 * guide
    const = dt_propagate(np.full((16, 18), 2.5), rng.random((16, 18)) < 0.1, soft, sigma_s=8, sigma_r=0.5)
    np.testing.assert_allclose(const, 2.5, rtol=1e-9)
    # the filter of S*M and of M are one pass: the same as two separate calls
    m = rng.random((16, 18)) < 0.2
    kw = {"sigma_s": 8.0, "sigma_r": 0.5, "iterations": 4}
    two = recursive_filter(values * m, guide, **kw) / (recursive_filter(m.astype(float), guide, **kw) + 1e-12)
    np.testing.assert_allclose(dt_propagate(values, m, guide, **kw), two, rtol=1e-12)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: recursive_filter(np.zeros((4, 5)), np.zeros((4, 6)), sigma_s=1, sigma_r=1), "differ in size"),
    (lambda: recursive_filter(np.zeros((4, 5)), np.zeros((4, 5)), sigma_s=0, sigma_r=1), "sigma_s"),
    (lambda: recursive_filter(np.zeros((4, 5)), np.zeros((4, 5)), sigma_s=1, sigma_r=1, iterations=0), "iterations"),
    (lambda: recursive_filter(np.zeros((4, 5)), np.zeros((4, 5)), sigma_s=1, sigma_r=1, psi=-1), "psi"),
    (lambda: recursive_filter(np.full((4, 5), np.nan), np.zeros((4, 5)), sigma_s=1, sigma_r=1), "NaN"),
    (lambda: recursive_filter(np.zeros((4, 5)), np.zeros((4, 5)), sigma_s=1, sigma_r=1,
                              depth_edges=np.zeros((3, 5)), psi=1), "depth_edges"),
    (lambda: dt_propagate(np.zeros((4, 5)), np.zeros((4, 4)), np.zeros((4, 5)), sigma_s=1, sigma_r=1), "one shape"),
])
def test_bad_input_is_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
