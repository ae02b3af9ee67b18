"""bench.metrics.fidelity against scikit-image with pinned arguments (the reference implementation):
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1)`` and ``peak_signal_noise_ratio(data_range=1)``."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.datasets.base import Sample
from bench.metrics import get_metric
from bench.metrics.base import PredInfo
from bench.metrics.fidelity import PSNR, PSNR_CAP, PSNRY, SSIM, SSIMY, luma, psnr, ssim
from methods.base import to_gray

from .conftest import synthetic_photo

IMAGE = PredInfo(provides="restored_image", units="image", higher="n/a")


def sk_ssim(a, b):
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    if a.ndim == 3:
        kw["channel_axis"] = -1
    return structural_similarity(a, b, **kw)


def _pairs():
    rng = np.random.default_rng(0)
    out = {}
    a = rng.random((37, 53, 3))
    out["random_noise"] = (a, np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1))
    out["random_independent"] = (rng.random((24, 31, 3)), rng.random((24, 31, 3)))
    photo = synthetic_photo(3).astype(np.float64) / 255
    out["synthetic_blur"] = (photo, gaussian_filter(photo, (1.5, 1.5, 0)))
    astro = skimage.data.astronaut()[100:260, 150:350].astype(np.float64) / 255
    out["astronaut_blur_noise"] = (astro, np.clip(gaussian_filter(astro, (2, 2, 0)) + 0.02 * rng.standard_normal(astro.shape), 0, 1))
    cat = skimage.data.chelsea()[50:200, 100:300].astype(np.float64) / 255
    out["chelsea_jpeg_like"] = (cat, np.round(cat * 15) / 15)
    return out


PAIRS = _pairs()


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_rgb_matches_skimage(name):
    ref, img = PAIRS[name]
    assert ssim(ref, img) == pytest.approx(sk_ssim(ref, img), abs=1e-6)
    assert psnr(ref, img) == pytest.approx(peak_signal_noise_ratio(ref, img, data_range=1.0), abs=1e-6)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_luma_matches_skimage(name):
    ref, img = PAIRS[name]
    yr, yi = luma(ref), luma(img)
    assert yr.shape == ref.shape[:2]
    assert yr == pytest.approx(to_gray(ref.astype(np.float32)), abs=1e-6)      # the same BT.601 weights
    assert ssim(yr, yi) == pytest.approx(sk_ssim(yr, yi), abs=1e-6)
    assert psnr(yr, yi) == pytest.approx(peak_signal_noise_ratio(yr, yi, data_range=1.0), abs=1e-6)


def test_ssim_is_the_mean_of_per_channel_ssim():
    ref, img = PAIRS["astronaut_blur_noise"]
    per = [ssim(ref[..., c], img[..., c]) for c in range(3)]
    assert ssim(ref, img) == pytest.approx(np.mean(per), abs=1e-12)


def test_float32_inputs_are_computed_in_float64():
    ref, img = PAIRS["synthetic_blur"]
    assert ssim(ref.astype(np.float32), img.astype(np.float32)) == pytest.approx(
        sk_ssim(ref.astype(np.float32).astype(np.float64), img.astype(np.float32).astype(np.float64)), abs=1e-9)


def test_identical_images():
    ref = PAIRS["random_noise"][0]
    assert psnr(ref, ref) == PSNR_CAP == 100.0
    assert psnr(ref, ref, cap=None) == np.inf
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    # the cap only bites for (near-)identical images
    assert psnr(ref, ref + 1e-6) == PSNR_CAP                       # 120 dB, capped
    assert psnr(ref, ref + 1e-4) == pytest.approx(80.0)


def test_bad_inputs():
    a = np.zeros((20, 20, 3))
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:, :10])
    with pytest.raises(ValueError, match="window"):
        ssim(np.zeros((8, 30)), np.zeros((8, 30)))
    with pytest.raises(ValueError, match="NaN"):
        ssim(a, np.full_like(a, np.nan))


def test_metric_classes():
    ref, img = PAIRS["astronaut_blur_noise"]
    s = Sample("k", img.astype(np.float32), {"sharp": ref.astype(np.float32)})
    r32, i32 = ref.astype(np.float32).astype(np.float64), img.astype(np.float32).astype(np.float64)
    assert PSNR().per_sample(img, s, IMAGE)["value"] == pytest.approx(psnr(r32, img), abs=1e-6)
    assert SSIM().per_sample(i32, s, IMAGE)["value"] == pytest.approx(sk_ssim(r32, i32), abs=1e-6)
    assert PSNRY().per_sample(i32, s, IMAGE)["value"] == pytest.approx(psnr(luma(r32), luma(i32)), abs=1e-9)
    assert SSIMY().per_sample(i32, s, IMAGE)["value"] == pytest.approx(sk_ssim(luma(r32), luma(i32)), abs=1e-6)
    # predictions are clipped to [0, 1] before scoring
    over = i32 * 1.5
    assert PSNR().per_sample(over, s, IMAGE)["value"] == pytest.approx(psnr(r32, np.clip(over, 0, 1)))
    with pytest.raises(ValueError, match="shape"):
        PSNR().per_sample(i32[:10], s, IMAGE)


def test_specs_and_reduce():
    for name, cls, unit in (("psnr", PSNR, "dB"), ("ssim", SSIM, "fraction"), ("psnr_y", PSNRY, "dB"),
                            ("ssim_y", SSIMY, "fraction")):
        assert get_metric(name) is cls
        assert cls.spec.name == name and cls.spec.unit == unit and cls.spec.higher_is_better
        assert cls.spec.needs == ("sharp",) and cls.spec.accepts == ("enhanced_image", "restored_image")
        assert cls.spec.threshold > 0
    assert SSIM.spec.conventions["sigma"] == 1.5 and SSIM.spec.conventions["k2"] == 0.03
    assert PSNR().applicable(PredInfo(provides="blur_map", units="radius_px", higher="blurred"))
    assert PSNR().applicable(PredInfo(provides="enhanced_image", units="image", higher="n/a")) is None
    res = PSNR().reduce({"a": {"value": 20.0}, "b": {"value": 30.0}})
    assert res.value == 25.0 and res.per_sample == {"a": 20.0, "b": 30.0}
    assert res.extras["std"] == pytest.approx(np.std([20, 30], ddof=1))
