"""kf_layered: Krishnan-Fergus hyper-Laplacian deconvolution per disk level, layered by a radius map."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bench.metrics.fidelity import psnr
from datagen import psf
from datagen.errors import UserError
from methods.classical.kf_deconv import (
    KF_LEVELS,
    KFLayered,
    kf_deconvolve,
    kf_layered,
    solve_w,
    w_threshold,
)
from methods.map_units import MapUnitsError, convert_map

LAM = KFLayered.Params().lam


def _photo(size: int = 64) -> np.ndarray:
    """A 64x64 RGB crop of scikit-image's astronaut (face and helmet edges), float32 in [0, 1]."""
    from skimage import data
    from skimage.transform import resize
    img = data.astronaut()[30:286, 120:376].astype(np.float64) / 255.0
    return resize(img, (size, size), anti_aliasing=True).astype(np.float32)


def _u8(img: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(img, 0, 1) * 255.0) / 255.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# w-step
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [2.0 / 3.0, 0.5, 0.8, 1.0, 1.5])
@pytest.mark.parametrize("beta", [1.0, 8.0, 181.0])
def test_w_step_matches_brute_force(alpha, beta):
    """argmin_w |w|^alpha + beta/2 (w - v)^2 against a 1e-5 grid search on [-2, 2]."""
    v = np.concatenate([np.linspace(-1.6, 1.6, 33), np.random.default_rng(1).uniform(-1.6, 1.6, 16)])
    grid = np.linspace(-2.0, 2.0, 400001)
    f = np.abs(grid)[None, :] ** alpha + beta / 2 * (grid[None, :] - v[:, None]) ** 2
    brute = grid[np.argmin(f, axis=1)]
    obj = lambda w: np.abs(w) ** alpha + beta / 2 * (w - v) ** 2
    tau, _ = w_threshold(beta, alpha)
    clear = np.abs(np.abs(v) - tau) > 1e-3                 # away from the tie at the threshold
    for method in ("exact", "lut"):
        w = solve_w(v, beta, alpha, method=method)
        assert w.shape == v.shape
        assert np.all(obj(w) <= f.min(axis=1) + 1e-9), method          # never worse than the grid optimum
        assert np.abs(w - brute)[clear].max() < 2e-5, method


def test_w_step_threshold_and_table_agree_with_closed_form():
    beta = 22.6
    tau, w_t = w_threshold(beta, 2.0 / 3.0)
    assert w_t == pytest.approx((2 * (1 / 3) / beta) ** 0.75)
    v = np.array([0.0, 0.5 * tau, tau * (1 - 1e-9), tau * (1 + 1e-9), -tau * (1 + 1e-9), 0.3, -1.2])
    exact = solve_w(v, beta)
    assert list(exact[:3]) == [0.0, 0.0, 0.0]
    assert exact[3] == pytest.approx(w_t, rel=1e-6) and exact[4] == pytest.approx(-w_t, rel=1e-6)
    v32 = np.random.default_rng(0).normal(0, 0.2, 10000).astype(np.float32)
    for alpha in (2.0 / 3.0, 0.5):
        lut = solve_w(v32, beta, alpha, method="lut")
        assert lut.dtype == np.float32
        assert np.abs(lut - solve_w(v32.astype(np.float64), beta, alpha)).max() < 1e-6


# ------------------------------------------------------------------------------------------------
# kf_deconvolve
# ------------------------------------------------------------------------------------------------

def test_x_step_inverts_a_circular_blur_with_the_convolution_convention():
    """Asymmetric kernel, circular blur, prior almost off (huge lam): the input comes back, so the OTF is
    centred at size // 2 and the model is convolution (not correlation)."""
    kernel = np.array([[0.0, 0.0, 0.0], [0.0, 0.7, 0.2], [0.0, 0.1, 0.0]])
    sharp = _photo(32)
    blurred = np.stack([ndimage.convolve(sharp[..., c], kernel, mode="wrap") for c in range(3)], axis=-1)
    out = kf_deconvolve(blurred, kernel, lam=1e9, boundary="circular")
    assert np.abs(out - sharp).max() < 2e-3
    flipped = kf_deconvolve(blurred, kernel[::-1, ::-1], lam=1e9, boundary="circular")
    assert np.abs(flipped - sharp).max() > 0.05             # the correlation reading does not invert it


@pytest.mark.parametrize("radius", [2.0, 4.0])
def test_deconvolution_improves_psnr_over_the_blurry_input(radius):
    """Uniform disk blur (reflect border), uint8-rounded, 64x64 RGB.  Measured gains at the default
    lam 2000: +4.8 dB (r 2) / +5.1 dB (r 4); at lam 8000 +6.6 / +6.5.  Asserted: +4 dB."""
    sharp = _photo()
    blurred = _u8(psf.disk_blur(sharp, radius))
    out = np.clip(kf_deconvolve(blurred, psf.disk_kernel(radius), lam=LAM), 0, 1)
    assert psnr(sharp, out) - psnr(sharp, blurred) > 4.0


def test_gray_is_the_per_channel_result_and_solvers_agree():
    sharp = _photo()
    blurred = _u8(psf.disk_blur(sharp, 3.0))
    k = psf.disk_kernel(3.0)
    rgb = kf_deconvolve(blurred, k, lam=LAM)
    assert rgb.dtype == np.float32 and rgb.shape == blurred.shape
    np.testing.assert_allclose(kf_deconvolve(blurred[..., 1], k, lam=LAM), rgb[..., 1], atol=1e-6)
    exact = kf_deconvolve(blurred, k, lam=LAM, w_solver="exact")
    # the table matches the closed form to < 1e-6, but a gradient within rounding of the threshold (a tie)
    # may flip between 0 and w_t and move a pixel by a few 1e-3 (measured on kodim01: max 0.009, mean 3e-7)
    assert np.abs(exact - rgb).mean() < 1e-5 and np.abs(exact - rgb).max() < 0.02


def test_kf_deconvolve_rejects_bad_input_in_one_line():
    img = np.zeros((8, 8), np.float32)
    for call in (lambda: kf_deconvolve(np.zeros(8), psf.disk_kernel(2), lam=1.0),
                 lambda: kf_deconvolve(img, np.ones((3, 3)), lam=1.0),
                 lambda: kf_deconvolve(img, psf.disk_kernel(2), lam=0.0),
                 lambda: kf_deconvolve(img, psf.disk_kernel(2), lam=1.0, alpha=3.0),
                 lambda: kf_deconvolve(img, psf.disk_kernel(2), lam=1.0, boundary="wrap")):
        with pytest.raises(ValueError) as err:
            call()
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# kf_layered
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level, values", [(3.0, (3.0, 2.9, 3.1)), (6.0, (6.0, 5.9, 9.0))])
def test_constant_map_equals_kf_deconvolve_with_that_kernel(level, values):
    """Values quantise to the nearest level (6.0 is the largest: 9 px -> 6)."""
    sharp = _photo()
    blurred = _u8(psf.disk_blur(sharp, level))
    expected = np.clip(kf_deconvolve(blurred, psf.disk_kernel(level), lam=LAM), 0, 1)
    for value in values:
        out = kf_layered(blurred, np.full((64, 64), value), lam=LAM)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("value", [0.5, 0.0, 0.3, 0.62, 0.625])
def test_sharp_map_returns_the_image_unchanged(value):
    """<= 0.5 px and the level 0.5 (nearest for 0.62; 0.625 ties to the smaller) are sharp:
    fspecial('disk', 0.5) is the identity, so no deconvolution."""
    img = _photo()
    out = kf_layered(img, np.full((64, 64), value), lam=LAM)
    np.testing.assert_array_equal(out, img)


def test_each_pixel_comes_from_its_own_level():
    """Composition only (no PSNR claim: on 64 px the r = 4 band is 24 px wide and the ringing of the
    r = 2 region deconvolved with r = 4 dominates it; see scripts/tune_kf_lambda.py for varying blur)."""
    sharp = _photo()
    rmap = np.full((64, 64), 2.0)
    rmap[:, 40:] = 4.0
    rmap[:8, :8] = 0.5
    blurred = _u8(psf.varying_disk_blur(sharp, rmap))
    out = kf_layered(blurred, rmap, lam=LAM)
    d2 = np.clip(kf_deconvolve(blurred, psf.disk_kernel(2.0), lam=LAM), 0, 1)
    d4 = np.clip(kf_deconvolve(blurred, psf.disk_kernel(4.0), lam=LAM), 0, 1)
    np.testing.assert_array_equal(out[8:, :40], d2[8:, :40])
    np.testing.assert_array_equal(out[:, 40:], d4[:, 40:])
    np.testing.assert_array_equal(out[:8, :8], blurred[:8, :8])
    assert not np.array_equal(d2[:, 40:], d4[:, 40:])


def test_bad_maps_give_one_line_errors():
    img = _photo()
    with pytest.raises(ValueError, match="shape") as err:
        kf_layered(img, np.ones((64, 63)), lam=LAM)
    assert "\n" not in str(err.value)
    nan_map = np.ones((64, 64))
    nan_map[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kf_layered(img, nan_map, lam=LAM)
    with pytest.raises(ValueError, match="increasing"):
        kf_layered(img, np.ones((64, 64)), lam=LAM, levels=(1.0, 0.75))
    # what bench does before predict_with_map: the same checks, as MapUnitsError (a UserError)
    with pytest.raises(MapUnitsError) as err:
        convert_map(np.ones((64, 63)), units="radius_px", to=KFLayered.NEEDS_MAP, shape=img.shape[:2])
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# Method class
# ------------------------------------------------------------------------------------------------

def test_method_class_is_a_radius_map_consumer():
    method = KFLayered()
    info = method.info()
    assert (info["name"], info["provides"], info["units"], info["needs_map"]) == \
        ("kf_layered", "restored_image", "image", "radius_px")
    assert info["params"]["levels"] == list(KF_LEVELS) and len(KF_LEVELS) == 23
    assert KFLayered(info["params"]).params == method.params
    with pytest.raises(ValueError):
        KFLayered({"no_such_parameter": 1})
    with pytest.raises(ValueError):
        KFLayered({"levels": [2.0, 1.0]})
    img = _photo()
    with pytest.raises(UserError, match="needs a blur map"):
        method.predict(img)
    before = img.copy()
    rmap = np.broadcast_to(np.linspace(0.5, 6.0, 64), (64, 64)).astype(np.float32)
    out = method.predict_with_map(img, rmap)
    np.testing.assert_array_equal(img, before)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, kf_layered(img, rmap, lam=method.params.lam))
