"""gauss20: samples rebuilt independently from the sources, class-0 selection, split hygiene."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from datagen import psf
from datagen.generators import SourceItem
from datagen.generators.gauss20 import (
    BLUR_BITS,
    Gauss20,
    Gauss20Params,
    blurred_tiles,
    tile_sharpness,
)
from datagen.manifest import parse_manifest
from datagen.runner import build

from .conftest import manifest_dict, synthetic_photo


def reference_gray(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def reference_blur(gray: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """Direct whole-image Gaussian convolution (scipy), reflect border, sampled kernel radius ceil(3 sigma)."""
    r = int(np.ceil(truncate * sigma))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return ndi.correlate1d(ndi.correlate1d(gray, k, axis=0, mode="reflect"), k, axis=1, mode="reflect")


def reference_sharpness(gray: np.ndarray, patch: int = 32, sigma: float = 0.5) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
    k /= k.sum()
    smooth = ndi.correlate(gray, np.outer(k, k), mode="reflect")
    lap = ndi.correlate(smooth, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float), mode="reflect")
    rows, cols = gray.shape[0] // patch, gray.shape[1] // patch
    tiles = lap[: rows * patch, : cols * patch].reshape(rows, patch, cols, patch).swapaxes(1, 2)
    return tiles.reshape(rows * cols, -1).var(axis=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, image_folder):
    out = tmp_path_factory.mktemp("corpus") / "c.h5"
    res = build(parse_manifest(manifest_dict(image_folder)), out=out, workers=1, progress=False, log=lambda m: None)
    return out, res


def test_samples_equal_direct_convolution_of_whole_image(corpus, image_folder):
    path, _ = corpus
    checked = 0
    with h5py.File(path, "r") as f:
        keys = [k.decode() for k in f["sources/key"][...]]
        for split in ("train", "val", "test"):
            g = f[split]
            if not g["label"].shape[0]:
                continue
            src, pos, lab, sig = g["source"][...], g["position"][...], g["label"][...], g["sigma"][...]
            for s_index in np.unique(src)[:2]:
                gray = reference_gray(image_folder / keys[s_index].split(":", 1)[1])
                rows = np.flatnonzero(src == s_index)
                for sigma in (1.0, 4.0, 19.0):
                    ref = reference_blur(gray, sigma)
                    for i in rows[sig[rows] == sigma][:5]:
                        y, x = pos[i]
                        crop = np.clip(np.rint(ref[y:y + 32, x:x + 32]), 0, 255)
                        assert np.abs(crop - g["image"][i].astype(float)).max() <= 1
                        checked += 1
                for i in rows[lab[rows] == 0][:5]:
                    y, x = pos[i]
                    assert np.array_equal(g["image"][i], gray[y:y + 32, x:x + 32].astype(np.uint8))
    assert checked >= 20


def reference_fixed_point_blur(gray: np.ndarray, sigma: float, truncate: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point definition computed independently in int64: whole image, reflect border.

    Returns ``(rounded uint8 image, exact two-pass integer sums)``; a pixel is
    ``round_half_even(sum / 2**32)``.
    """
    q = psf.quantize_kernel(psf.gaussian_kernel1d(sigma, truncate=truncate), bits=BLUR_BITS)
    h = q.size // 2
    pad = np.pad(gray.astype(np.int64), h, mode="symmetric")
    height, width = gray.shape
    vert = sum(int(q[i]) * pad[i:i + height] for i in range(q.size))
    full = sum(int(q[j]) * vert[:, j:j + width] for j in range(q.size))
    return np.rint(full / 2.0 ** (2 * BLUR_BITS)).astype(np.uint8), full


@pytest.mark.parametrize("kind", ["photo", "noise"])
def test_blur_equals_independent_integer_reference(kind):
    """Byte-exact against int64 arithmetic, including the pixels whose exact value lies within
    float32 rounding of a half-integer (noise gives hundreds of them): the exactness claim."""
    rng = np.random.default_rng(7)
    if kind == "photo":
        gray = np.asarray(Image.fromarray(synthetic_photo(3, 200, 260)).convert("L"))
    else:
        gray = rng.integers(0, 256, (384, 512), dtype=np.uint8)
    cols = gray.shape[1] // 32
    tiles = np.arange((gray.shape[0] // 32) * cols)
    tiles = tiles if kind == "noise" else np.array([0, 7, 10, 30, 33])
    ys, xs = (tiles // cols) * 32, (tiles % cols) * 32
    sigmas = (1.0, 2.0, 9.0, 19.0) if kind == "photo" else (1.0, 3.0, 7.0, 12.0, 19.0)
    got = blurred_tiles(gray, ys, xs, patch=32, sigmas=sigmas, truncate=3.0)
    near_ties = 0
    for c, sigma in enumerate(sigmas):
        want, full = reference_fixed_point_blur(gray, sigma)
        frac = (full % 2 ** (2 * BLUR_BITS)) / 2.0 ** (2 * BLUR_BITS)
        for j, (y, x) in enumerate(zip(ys, xs)):
            np.testing.assert_array_equal(got[j, c], want[y:y + 32, x:x + 32])
            near_ties += int((np.abs(frac[y:y + 32, x:x + 32] - 0.5) < 2e-5).sum())
    if kind == "noise":
        assert near_ties > 20   # within float32 error of a tie: a plain float32 product misrounds some


def test_blur_is_within_one_gray_level_of_float_convolution():
    gray = np.asarray(Image.fromarray(synthetic_photo(4, 200, 260)).convert("L"))
    ys, xs = np.array([0, 0, 64, 160]), np.array([0, 224, 96, 32])
    for sigma in (1.0, 5.0, 19.0):
        _, full = reference_fixed_point_blur(gray, sigma)
        exact = reference_blur(gray.astype(float), sigma)
        h = psf.gaussian_radius(sigma)
        bound = 2 * 127.5 * (2 * h + 1) / 2 ** BLUR_BITS        # documented bound before rounding
        assert np.abs(full / 2.0 ** (2 * BLUR_BITS) - exact).max() < min(bound, 0.5)
        got = blurred_tiles(gray, ys, xs, patch=32, sigmas=(sigma,), truncate=3.0)
        for j, (y, x) in enumerate(zip(ys, xs)):
            assert np.abs(got[j, 0].astype(float) - np.rint(exact[y:y + 32, x:x + 32])).max() <= 1


def test_class0_is_exactly_the_tiles_above_threshold(corpus, image_folder):
    path, _ = corpus
    with h5py.File(path, "r") as f:
        keys = [k.decode() for k in f["sources/key"][...]]
        for split in ("train", "val", "test"):
            g = f[split]
            lab, src, pos, phi = g["label"][...], g["source"][...], g["position"][...], g["sharpness"][...]
            assert (phi[lab == 0] > 1000).all()
            for s_index in np.unique(src):
                gray = reference_gray(image_folder / keys[s_index].split(":", 1)[1])
                ref_phi = reference_sharpness(gray)
                cols = gray.shape[1] // 32
                want = {(int(t // cols) * 32, int(t % cols) * 32) for t in np.flatnonzero(ref_phi > 1000)}
                got = {tuple(map(int, p)) for p in pos[(src == s_index) & (lab == 0)]}
                assert got == want


def test_every_sharp_tile_has_all_twenty_levels(corpus):
    path, res = corpus
    with h5py.File(path, "r") as f:
        for split in ("train", "val", "test"):
            lab = f[split]["label"][...]
            counts = np.bincount(lab, minlength=20)
            assert len(counts) == 20 and (counts == counts[0]).all()
            assert np.array_equal(lab[:20], np.arange(20)) or len(lab) == 0
    assert res.samples > 0 and sum(c["per_class"][0] for c in res.counts.values()) > 0


def test_no_source_image_in_two_splits(corpus):
    path, _ = corpus
    with h5py.File(path, "r") as f:
        split_of = [s.decode() for s in f["sources/split"][...]]
        seen = {}
        for split in ("train", "val", "test"):
            for s in np.unique(f[split]["source"][...]):
                assert split_of[s] == split
                assert seen.setdefault(int(s), split) == split
        assert sorted(set(split_of)) == ["test", "train", "val"]


def test_tile_context_and_patch_blur_options():
    gray = np.asarray(Image.fromarray(synthetic_photo(5)).convert("L"))
    phi_tile = tile_sharpness(gray, patch=32, sigma=0.5, context="tile")
    phi_image = tile_sharpness(gray, patch=32, sigma=0.5, context="image")
    assert phi_tile.shape == phi_image.shape and np.corrcoef(phi_tile, phi_image)[0, 1] > 0.95
    np.testing.assert_allclose(phi_image, reference_sharpness(gray.astype(float)), rtol=1e-9)
    cols = gray.shape[1] // 32
    for t in (0, 3, len(phi_tile) - 1):  # "tile": each tile filtered alone, reflect at its own border
        y, x = (t // cols) * 32, (t % cols) * 32
        ref = reference_sharpness(gray[y:y + 32, x:x + 32].astype(float))[0]
        assert phi_tile[t] == pytest.approx(ref, rel=1e-9)
    ys, xs = np.array([0, 64]), np.array([32, 96])
    got = blurred_tiles(gray, ys, xs, patch=32, sigmas=(1.0, 5.0), truncate=3.0, context="patch")
    for j, (y, x) in enumerate(zip(ys, xs)):  # "patch": the isolated tile blurred with a reflect border
        for c, sigma in enumerate((1.0, 5.0)):
            np.testing.assert_array_equal(got[j, c], reference_fixed_point_blur(gray[y:y + 32, x:x + 32], sigma)[0])
    gen = Gauss20(Gauss20Params(blur_context="patch", sigmas=(1.0, 2.0)))
    arrays, stats = gen.make(SourceItem("t", gray), np.random.default_rng(0))
    assert arrays["image"].shape[0] == 3 * stats["sharp_tiles"] > 0
    with pytest.raises(ValueError):
        Gauss20Params(sigmas=(2.0, 1.0))
