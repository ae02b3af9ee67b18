"""Enhancement operators: GUM (Deng 2011), CAS (AMD FidelityFX), and Galetto & Deng's map-driven
adaptive UM / defocus magnification (methods.enhance_map)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from datagen import psf
from methods import create_method
from methods.classical.cas import cas_peak, contrast_adaptive_sharpen
from methods.classical.gum import generalized_unsharp_mask, lr_add, lr_mul, lr_sub
from methods.enhance_map import (
    adaptive_um_gain,
    adaptive_unsharp_mask,
    defocus_magnification,
    defocus_weight,
    defocus_weight_params,
)


def _soft_edge(height: int = 24, width: int = 32, lo: float = 0.25, hi: float = 0.75, sigma: float = 2.0):
    """Vertical step from ``lo`` to ``hi`` at the centre, Gaussian-blurred: an RGB soft edge."""
    step = np.where(np.arange(width) < width // 2, lo, hi).astype(np.float32)
    img = np.repeat(np.repeat(step[None, :, None], height, axis=0), 3, axis=2)
    img[..., 1] *= 0.9
    return psf.gaussian_blur(img, sigma)


def _textured(height: int = 24, width: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.clip(0.5 + 0.2 * rng.standard_normal((height, width, 3)), 0, 1).astype(np.float32)


def _max_step(img: np.ndarray) -> float:
    """Largest horizontal difference (steepness of the edge), over rows and channels."""
    return float(np.abs(np.diff(img, axis=1)).max())


def _check_out(out: np.ndarray, shape) -> None:
    assert out.shape == shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


# ------------------------------------------------------------------------------------------------
# GUM
# ------------------------------------------------------------------------------------------------

def test_log_ratio_operations_closed_forms():
    x1, x2 = np.array([0.3, -0.7, 0.95]), np.array([0.5, 0.2, 0.9])
    np.testing.assert_allclose(lr_add(x1, x2), (x1 + x2) / (1 + x1 * x2), rtol=1e-12)
    np.testing.assert_allclose(lr_sub(x1, x2), (x1 - x2) / (1 - x1 * x2), rtol=1e-12)
    a = 2.5
    np.testing.assert_allclose(lr_mul(a, x1), ((1 + x1) ** a - (1 - x1) ** a) / ((1 + x1) ** a + (1 - x1) ** a),
                               rtol=1e-12)
    # closed under the operations: never leaves (-1, 1), even with a large gain
    assert np.all(np.abs(lr_add(np.array([0.99, -0.99]), lr_mul(5.0, np.array([0.9, -0.9])))) < 1)
    extreme = lr_add(np.array([1.0, -1.0]), lr_mul(1e3, np.array([1.0, -1.0])))
    assert np.isfinite(extreme).all() and np.all(np.abs(extreme) <= 1)
    for system in ("log_ratio", "tangent"):
        np.testing.assert_allclose(lr_sub(lr_add(x1, x2, system=system), x2, system=system), x1, atol=1e-9)


def test_gum_constant_image_without_contrast_step_is_identity():
    img = np.full((16, 20, 3), 0.4, np.float32)
    img[..., 2] = 0.2
    out = generalized_unsharp_mask(img, contrast=None)
    _check_out(out, img.shape)
    np.testing.assert_allclose(out, img, atol=1e-6)


def _soft_lines(height: int = 24, width: int = 32) -> np.ndarray:
    """Thin bright lines every 6 px on gray, Gaussian-blurred (sigma 1): soft detail, green = 0.9 red."""
    img = np.full((height, width, 3), 0.3, np.float32)
    img[:, 3::6] = 0.7
    img[..., 1] *= 0.9
    return psf.gaussian_blur(img, 1.0)


def test_gum_raises_the_contrast_of_soft_detail_in_range_and_keeps_hue():
    img = _soft_lines()
    out = create_method("gum_deng2011").predict(img)
    _check_out(out, img.shape)
    rows = slice(4, -4)     # away from the replicate border of the median
    assert _max_step(out[rows]) > 1.2 * _max_step(img[rows])
    assert np.ptp(out[rows, 4:-4, 0]) > 1.2 * np.ptp(img[rows, 4:-4, 0])
    # hue / saturation kept: the channel ratios are unchanged (green = 0.9 red everywhere)
    np.testing.assert_allclose(out[..., 1], 0.9 * out[..., 0], atol=1e-5)
    # higher gain -> more contrast
    weak = generalized_unsharp_mask(img, gain=2.0, contrast=None)
    strong = generalized_unsharp_mask(img, gain=7.0, contrast=None)
    assert _max_step(strong) > _max_step(weak) > _max_step(img)


def test_gum_passes_a_monotone_edge_through():
    """A monotone soft edge is a root of the median filter: no detail, so no gain and no halo."""
    img = _soft_edge()
    np.testing.assert_allclose(generalized_unsharp_mask(img, contrast=None), img, atol=1e-5)


def test_gum_extreme_gain_stays_in_range_and_is_deterministic():
    img = _textured()
    img[:4] = 1.0
    img[-4:] = 0.0
    out = generalized_unsharp_mask(img, gain=50.0)
    _check_out(out, img.shape)
    np.testing.assert_array_equal(out, generalized_unsharp_mask(img, gain=50.0))


def test_gum_rejects_bad_arguments():
    with pytest.raises(ValueError):
        generalized_unsharp_mask(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError):
        generalized_unsharp_mask(np.zeros((8, 8, 3), np.float32), system="nope")
    with pytest.raises(ValueError):
        create_method("gum_deng2011", {"gain": 0.5})


# ------------------------------------------------------------------------------------------------
# CAS
# ------------------------------------------------------------------------------------------------

def test_cas_peak_matches_the_papers_lambda():
    assert cas_peak(0.0) == -0.125          # Galetto's lambda = -0.125 is sharpness 0
    assert cas_peak(1.0) == pytest.approx(-0.2)
    assert create_method("cas_amd").params.sharpness == 0.0
    with pytest.raises(ValueError):
        cas_peak(1.5)


@pytest.mark.parametrize("better_diagonals", [True, False])
def test_cas_flat_image_unchanged(better_diagonals):
    img = np.empty((9, 11, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 0.0, 0.37, 1.0
    out = contrast_adaptive_sharpen(img, sharpness=1.0, better_diagonals=better_diagonals)
    _check_out(out, img.shape)
    np.testing.assert_allclose(out, img, atol=1e-6)


@pytest.mark.parametrize("sharpness", [0.0, 1.0])
def test_cas_sharpens_an_edge_without_leaving_range(sharpness):
    img = _soft_edge(lo=0.02, hi=0.98, sigma=1.5)
    out = contrast_adaptive_sharpen(img, sharpness=sharpness)
    _check_out(out, img.shape)
    assert _max_step(out) > _max_step(img)
    # far from the edge the image is flat and stays as it was
    np.testing.assert_allclose(out[:, :3], img[:, :3], atol=1e-5)
    np.testing.assert_allclose(out[:, -3:], img[:, -3:], atol=1e-5)


def test_cas_by_hand_on_one_pixel():
    """Centre of a 3x3 patch with the better-diagonals soft min/max, worked out by hand."""
    patch = np.array([[0.2, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.2]], np.float32)
    out = contrast_adaptive_sharpen(patch, sharpness=0.0)
    mn, mx = 0.2 + 0.2, 0.6 + 0.6
    amp = math.sqrt(min(mn, 2 - mx) / mx)          # sqrt(0.4 / 1.2)
    w = -0.125 * amp
    assert out[1, 1] == pytest.approx((0.6 + 4 * w * 0.2) / (1 + 4 * w), abs=1e-6)
    assert out[1, 1] > 0.6


def test_cas_is_deterministic_and_per_channel():
    img = _textured()
    out = create_method("cas_amd").predict(img)
    np.testing.assert_array_equal(out, create_method("cas_amd").predict(img.copy()))
    np.testing.assert_array_equal(out[..., 1], contrast_adaptive_sharpen(img[..., 1]))
    # FidelityFX's fast path: the green weight for every channel; green itself is unchanged
    fast = contrast_adaptive_sharpen(img, green_weight=True)
    _check_out(fast, img.shape)
    np.testing.assert_array_equal(fast[..., 1], out[..., 1])
    assert not np.array_equal(fast[..., 0], out[..., 0])


# ------------------------------------------------------------------------------------------------
# Galetto & Deng: adaptive UM (eqs. 8-11) and defocus magnification (eqs. 12-13)
# ------------------------------------------------------------------------------------------------

def test_adaptive_um_gain_curve_values():
    # M = sigma / 19.  Hand-computed with lambda_max = 2:
    #  M = 0:    lambda1 = 1 / (1 + e^4.6) = 1 / 100.4843 = 0.0099518, lambda2 = 1 - 1/(1 + e^49.41) ~ 1
    #  M = 0.1:  lambda1 = 0.5 (at beta1), lambda2 ~ 1 (e^-31.1 ~ 3e-14)
    #  M = 0.27: lambda2 = 0.5 (at beta2), lambda1 = 1 / (1 + e^-7.82) = 0.999599
    #  M = 0.5:  lambda2 = 1 - 1/(1 + e^-42.09) ~ 5e-19
    sig = np.array([0.0, 1.9, 0.27 * 19, 9.5, 19.0, 25.0])
    expected = [0.0199036, 1.0, 0.999599, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(adaptive_um_gain(sig), expected, atol=2e-6)
    # the peak lies between beta1 and beta2 and stays below lambda_max
    curve = adaptive_um_gain(np.linspace(0, 19, 400))
    assert 1.9 < curve.max() <= 2.0


def test_adaptive_um_follows_the_map():
    img = _textured()
    sharp_map = np.zeros(img.shape[:2], np.float32)               # in focus: gain ~ 0.02
    mid_map = np.full(img.shape[:2], 3.6, np.float32)              # M = 0.19: gain ~ 1.97
    heavy_map = np.full(img.shape[:2], 15.0, np.float32)           # heavily blurred: gain 0
    out_mid = adaptive_unsharp_mask(img, mid_map)
    _check_out(out_mid, img.shape)
    np.testing.assert_allclose(adaptive_unsharp_mask(img, heavy_map), img, atol=1e-6)
    lam = float(adaptive_um_gain(np.array([3.6]))[0])
    ref = np.clip(img + lam * (img - psf.gaussian_blur(img, 2.0)), 0, 1)
    np.testing.assert_allclose(out_mid, ref, atol=1e-6)
    assert np.std(out_mid) > np.std(adaptive_unsharp_mask(img, sharp_map)) > np.std(img) * 0.999
    # constant image: identity whatever the map
    flat = np.full((10, 12, 3), 0.3, np.float32)
    np.testing.assert_allclose(adaptive_unsharp_mask(flat, np.full((10, 12), 3.6)), flat, atol=1e-6)


@pytest.mark.parametrize("c0, c1, w0, w1", [(1.0, 7.0, 0.999, 0.001), (2.0, 5.0, 0.99, 0.05), (0.5, 9.0, 0.9, 0.1)])
def test_defocus_weight_hits_its_anchor_points(c0, c1, w0, w1):
    w = defocus_weight(np.array([c0, c1]), c0=c0, c1=c1, w0=w0, w1=w1)
    np.testing.assert_allclose(w, [w0, w1], atol=1e-6)
    # monotone non-increasing in M, 0 from M = 10 on (clamped)
    curve = defocus_weight(np.linspace(0, 19, 200), c0=c0, c1=c1, w0=w0, w1=w1)
    assert np.all(np.diff(curve) <= 1e-7)
    assert np.all(defocus_weight(np.array([10.0, 13.0, 19.0]), c0=c0, c1=c1, w0=w0, w1=w1) == 0)


def test_defocus_weight_params_bad_input():
    sigma, gamma = defocus_weight_params()
    assert sigma > 0 and gamma > 0
    for bad in ({"c0": 7.0, "c1": 1.0}, {"c1": 12.0}, {"w0": 0.001, "w1": 0.999}, {"w0": 1.0}):
        with pytest.raises(ValueError):
            defocus_weight_params(**bad)


def test_defocus_magnification_blurs_background_keeps_foreground():
    rng = np.random.default_rng(5)      # fine texture of variance 1e-3, below eps = 128/255^2 ~ 2e-3
    img = np.clip(0.5 + 0.03 * rng.standard_normal((24, 32, 3)), 0, 1).astype(np.float32)
    m = np.zeros(img.shape[:2], np.float32)
    m[:, 16:] = 12.0                                              # right half out of focus
    out = defocus_magnification(img, m, blur_radius=4, blur_iterations=2)
    _check_out(out, img.shape)
    # left (W ~ 1): the fixed-gain UM with lambda 0.25; right (W = 0): smoothed
    s = np.clip(img + 0.25 * (img - psf.gaussian_blur(img, 2.0)), 0, 1)
    np.testing.assert_allclose(out[:, :8], s[:, :8], atol=2e-3)
    assert np.std(out[:, 20:]) < 0.5 * np.std(img[:, 20:])
    np.testing.assert_array_equal(out, defocus_magnification(img, m, blur_radius=4, blur_iterations=2))
    # constant image: identity (guided filter and UM both keep constants)
    flat = np.full((12, 14, 3), 0.6, np.float32)
    np.testing.assert_allclose(defocus_magnification(flat, np.full((12, 14), 5.0)), flat, atol=1e-5)


def test_map_functions_reject_mismatched_inputs():
    img = np.zeros((8, 9, 3), np.float32)
    for fn in (adaptive_unsharp_mask, defocus_magnification):
        with pytest.raises(ValueError):
            fn(img, np.zeros((9, 8), np.float32))
        with pytest.raises(ValueError):
            fn(img[..., 0], np.zeros((8, 9), np.float32))
        with pytest.raises(ValueError):
            fn(img, np.full((8, 9), np.nan, np.float32))
