import numpy as np
import pytest

from datagen import psf


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5, 7.0, 19.0])
def test_gaussian_kernel_sums_to_one_and_recovers_sigma(sigma):
    k = psf.gaussian_kernel1d(sigma, truncate=4.0)
    assert k.size == 2 * psf.gaussian_radius(sigma, truncate=4.0) + 1
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    x = np.arange(k.size) - k.size // 2
    assert np.sqrt((k * x**2).sum()) == pytest.approx(sigma, rel=0.02 if sigma >= 1 else 0.2)
    np.testing.assert_allclose(k, k[::-1])


def test_gaussian_radius_is_ceil_truncate_sigma():
    assert psf.gaussian_radius(19, truncate=3) == 57
    assert psf.gaussian_radius(1, truncate=3) == 3
    assert psf.gaussian_radius(0.5, truncate=3) == 2
    assert psf.gaussian_kernel1d(0.0).tolist() == [1.0]
    with pytest.raises(ValueError):
        psf.gaussian_radius(-1)


def test_three_tap_kernel_matches_matlab_fspecial_default():
    # fspecial('gaussian', [3 3]) (sigma 0.5) = outer(k, k) with k = [0.1065, 0.7870, 0.1065] (rounded)
    k = psf.gaussian_kernel1d(0.5, radius=1)
    np.testing.assert_allclose(np.outer(k, k)[1, 1], 0.6193, atol=1e-4)
    np.testing.assert_allclose(np.outer(k, k)[0, 0], 0.0113, atol=1e-4)


def test_convolution_matrix_equals_valid_correlation():
    rng = np.random.default_rng(0)
    k = psf.gaussian_kernel1d(2.0)
    x = rng.normal(size=40)
    a = psf.convolution_matrix(k, 40 - k.size + 1)
    np.testing.assert_allclose(a @ x, np.correlate(x, k, mode="valid"), atol=1e-12)
    assert psf.LAPLACIAN_3X3.sum() == 0


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 19.0])
def test_quantized_kernel_is_symmetric_exact_sum_and_close(sigma):
    k = psf.gaussian_kernel1d(sigma)
    q = psf.quantize_kernel(k, bits=16)
    assert q.dtype == np.int64 and q.sum() == 2**16
    np.testing.assert_array_equal(q, q[::-1])
    assert np.abs(q - k * 2**16).max() < 1
    x = np.random.default_rng(1).integers(0, 256, size=(500, k.size))
    assert np.abs(x @ q / 2**16 - x @ k).max() < 127.5 * k.size / 2**16     # documented bound
    with pytest.raises(ValueError):
        psf.quantize_kernel(np.array([0.2, 0.8]))


def test_sigma_radius_table_round_trip_and_modes():
    table = psf.SIGMA_RADIUS_TABLE
    np.testing.assert_allclose(psf.sigma_to_radius(table[:, 0]), table[:, 1])
    np.testing.assert_allclose(psf.radius_to_sigma(table[:, 1]), table[:, 0])
    assert psf.sigma_to_radius(10.0) == 6.0 and psf.sigma_to_radius(0.15) == 0.25
    assert psf.sigma_to_radius(0.56, mode="nearest") == 0.75      # closest sigma 0.5 (0.65 is farther)
    np.testing.assert_allclose(psf.sigma_to_radius(0.4), 0.625)   # halfway between rows 0 and 1


@pytest.mark.realdata
def test_sigma_radius_table_matches_dandres_convertion_mat():
    import scipy.io

    from tests.conftest import shared_data
    ref = scipy.io.loadmat(shared_data("dandres", "convertion.mat"))["convertion"]
    np.testing.assert_allclose(psf.SIGMA_RADIUS_TABLE, ref, atol=1e-12)


@pytest.mark.parametrize("radius", [0.75, 1.0, 1.5, 2.25, 3.0, 4.75, 6.0])
def test_disk_kernel_is_a_normalised_symmetric_pillbox(radius):
    k = psf.disk_kernel(radius)
    c = int(np.ceil(radius - 0.5))
    assert k.shape == (2 * c + 1, 2 * c + 1) and k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k, k.T, atol=1e-15)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    assert (k >= 0).all() and k[c, c] == k.max()
    # area-weighted: the total covered area is pi r^2 (up to the centre-pixel rule)
    yy, xx = np.mgrid[-c:c + 1, -c:c + 1]
    inside = (xx ** 2 + yy ** 2) <= (radius - 0.75) ** 2
    np.testing.assert_allclose(k[inside], k[c, c])   # pixels wholly inside share the centre weight


def test_disk_kernel_matches_matlab_values():
    """MATLAB fspecial('disk', r) values (6 decimals) as tabulated in alikaraali/svbr-net-icip2022
    ``disk_kernels.py`` (r = 0.75, 1.0, 2.0; METHODS.md 2.1 says that table is fspecial's)."""
    np.testing.assert_allclose(psf.disk_kernel(0.75), [[0.001022, 0.107507, 0.001022], [0.107507, 0.565884, 0.107507],
                                                       [0.001022, 0.107507, 0.001022]], atol=1e-6)
    np.testing.assert_allclose(psf.disk_kernel(1.0), [[0.025079, 0.145344, 0.025079], [0.145344, 0.318310, 0.145344],
                                                      [0.025079, 0.145344, 0.025079]], atol=1e-6)
    np.testing.assert_allclose(psf.disk_kernel(2.0)[:3], [[0.0, 0.017016, 0.038115, 0.017016, 0.0],
                                                          [0.017016, 0.078381, 0.079577, 0.078381, 0.017016],
                                                          [0.038115, 0.079577, 0.079577, 0.079577, 0.038115]], atol=1e-6)
    assert psf.disk_kernel(0.5).shape == (1, 1)
