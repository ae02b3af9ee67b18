"""The svpsf39 corpus (SVBR-Net, Karaali & Jung 2022): map families, exact rendering, the
estimated-like maps, storage.  Determinism across workers and resume are in the generator contract
test (tests/test_generator_contract.py, on manifests/demo_svpsf39.yaml)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from datagen import psf
from datagen.blur_maps import FAMILIES, SVBR_LEVELS, family_map, quantize_to_levels
from datagen.generators.base import SourceItem
from datagen.generators.svpsf39 import MAP_SCALE, SVPSF39, SVPSF39Params, fit_image
from datagen.manifest import load_manifest
from datagen.runner import build

from .conftest import run_cli
from .test_generator_contract import QUIET, REPO

RADII = np.concatenate([[0.0], SVBR_LEVELS])


def gather_reference(image: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The gather model written directly: every pixel the sum of its own level's disk kernel times
    the replicate-padded image window around it (float64, one pixel at a time)."""
    h, w = idx.shape
    c = 6                                      # the largest kernel (r = 6) is 13 x 13
    pad = np.pad(image.astype(np.float64), ((c, c), (c, c), (0, 0)), mode="edge")
    out = np.empty((h, w, 3))
    for y in range(h):
        for x in range(w):
            if idx[y, x] == 0:
                out[y, x] = image[y, x]
                continue
            k = psf.disk_kernel(RADII[idx[y, x]])
            r = k.shape[0] // 2
            win = pad[y + c - r:y + c + r + 1, x + c - r:x + c + r + 1]
            out[y, x] = np.einsum("uv,uvc->c", k, win)
    return out


def test_rendering_equals_a_per_pixel_gather_for_every_level():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (23, 26, 3), dtype=np.uint8)
    idx = np.arange(23 * 26).reshape(23, 26) % 23          # every level 0..22, many times, scattered
    idx = rng.permutation(idx.ravel()).reshape(idx.shape).astype(np.uint8)
    stack = psf.disk_blur_stack(img, SVBR_LEVELS, border="replicate")
    got = psf.select_levels(stack, idx)
    ref = gather_reference(img, idx)
    assert np.abs(got - ref).max() < 1e-9
    assert np.array_equal(np.rint(got), np.rint(ref))


def test_a_constant_map_is_the_whole_image_disk_blur():
    img = data.astronaut()[100:160, 200:264]
    stack = psf.disk_blur_stack(img, SVBR_LEVELS, border="replicate")
    for i, r in enumerate(SVBR_LEVELS, start=1):
        k = psf.disk_kernel(r)
        ref = np.stack([ndimage.correlate(img[..., c].astype(np.float64), k, mode="nearest") for c in range(3)], -1)
        got = psf.select_levels(stack, np.full(img.shape[:2], i, np.uint8))
        assert np.abs(got - ref).max() < 1e-9, r
    assert np.array_equal(psf.select_levels(stack, np.zeros(img.shape[:2], np.uint8)), img)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gives_quantised_maps_in_the_levels(family):
    rng = np.random.default_rng(family)
    for _ in range(5):
        m = family_map(family, rng, height=360, width=340)
        assert m.shape == (360, 340) and m.min() >= 0 and m.max() <= 6.0
        r = RADII[quantize_to_levels(m)]
        assert set(np.unique(r)) <= set(RADII)
        assert np.abs(r - m)[m > 0.5].max() <= 0.125 + 1e-12       # nearest level
    if family == 9:
        assert np.unique(m).size == 1 and m[0, 0] in SVBR_LEVELS


def test_ramps_and_steps_follow_the_paper_constants():
    rng = np.random.default_rng(0)
    row = family_map(1, rng, height=4, width=340)[0]
    start = int(np.argmax(row > 0))
    assert 0 <= start <= 99 and row[start] in SVBR_LEVELS[:6]
    assert row[-1] in SVBR_LEVELS[16:] and np.all(np.diff(row) >= 0)
    steps = family_map(5, rng, height=4, width=340)[0]
    c = int(np.argmax(steps > 0))
    assert c <= 140
    bands = [steps[c + 50 * i] for i in range(4)]
    s = SVBR_LEVELS.index(bands[0])
    assert bands == [SVBR_LEVELS[s + 2 * i] for i in range(4)] and steps[-1] == bands[-1]
    down = family_map(6, rng, height=4, width=340)[0]
    assert down[0] == down.max() and down[-1] == down.min() > 0


def test_quantisation_sharp_below_half_and_ties_to_the_smaller_level():
    r = np.array([0.0, 0.5, 0.51, 0.875, 0.876, 6.2, np.nan])
    assert RADII[quantize_to_levels(r)].tolist() == [0.0, 0.0, 0.75, 0.75, 1.0, 6.0, 0.0]


@pytest.fixture(scope="module")
def sample():
    gen = SVPSF39(SVPSF39Params(height=72, width=68, draws=1))
    arrays, stats = gen.make(SourceItem("astronaut", data.astronaut(), split="train"), np.random.default_rng(5))
    return gen, arrays, stats


def test_one_row_per_image_with_every_map(sample):
    gen, arrays, stats = sample
    assert set(arrays) == set(gen.fields())
    for name, f in gen.fields().items():
        assert arrays[name].shape == (1, *f.shape), name
    assert arrays["family"][0].tolist() == list(range(1, 14))
    assert set(np.unique(arrays["gt"])) <= set(np.rint(RADII * MAP_SCALE).astype(int).tolist())
    # the blurred image is the sharp one rendered under the GT map
    stack = psf.disk_blur_stack(arrays["sharp"][0], SVBR_LEVELS)
    for j in range(13):
        idx = np.searchsorted(np.rint(RADII * MAP_SCALE), arrays["gt"][0, j])
        assert np.array_equal(arrays["blurred"][0, j], np.clip(np.rint(psf.select_levels(stack, idx)), 0, 255))
    assert stats["fit"] == "resize" and 0 < stats["edge_fraction"] < 0.5


def test_estimated_maps_lie_in_the_gt_range_and_match_it_at_the_edges(sample):
    """Normalised DT filtering is a weighted mean of the samples: inside their range exactly.  The
    matting solve is not a convex combination and overshoots near strong colour edges (measured here:
    up to 0.5 px beyond the samples' range); allowed 0.75 px, and always within 0..6 px.  At the sampled
    edge pixels (measured on this 72 x 68 astronaut, 13 maps): DT 0.00-0.35 px from the GT (mean
    0.15; it averages nearby samples of other levels), matting 0.00-0.85 (mean 0.47: lambda = 1e-3
    is weak and the matting model wants the map locally linear in colour, which a ramp is not).
    Bounds: per map 0.45 / 1.0 px, mean 0.25 / 0.65 px."""
    from datagen.edges import canny_edges

    _, arrays, _ = sample
    for name, slack, per_map, mean in (("dt", 0.0, 0.45, 0.25), ("matting", 0.75, 1.0, 0.65)):
        errors = []
        for j in range(13):
            gt = arrays["gt"][0, j] / MAP_SCALE
            edges = canny_edges(arrays["blurred"][0, j], channel="gray", sigma=1.0)
            lo, hi = gt[edges].min(), gt[edges].max()
            est = arrays[name][0, j] / MAP_SCALE
            assert set(np.unique(est)) <= set(RADII), (name, j)
            nz = est[est > 0]
            if lo > 0.5 and name == "dt":
                assert (est > 0).all(), j                   # no sharp pixels from blurred-only samples
            if nz.size:
                assert nz.min() >= min(lo, SVBR_LEVELS[0]) - slack - 1e-9 and nz.max() <= hi + slack + 1e-9, (name, j)
            errors.append(np.abs(est - gt)[edges].mean())
        assert max(errors) <= per_map and np.mean(errors) <= mean, (name, np.round(errors, 2))
    assert all(arrays[name][0, 8].min() == arrays[name][0, 8].max() == arrays["gt"][0, 8, 0, 0]
               for name in ("dt", "matting"))                # a uniform map is propagated exactly


def test_eval_images_are_random_crops_of_the_source():
    img = data.coffee()                                     # 400 x 600
    rng = np.random.default_rng(0)
    crop = fit_image(img, height=360, width=340, mode="crop", rng=rng)
    hits = [(y, x) for y in range(41) for x in range(261) if np.array_equal(img[y:y + 360, x:x + 340], crop)]
    assert len(hits) == 1
    small = fit_image(data.chelsea(), height=360, width=340, mode="crop", rng=rng)    # 300 x 451: enlarged
    assert small.shape == (360, 340, 3)
    assert fit_image(img, height=360, width=340, mode="resize", rng=rng).shape == (360, 340, 3)


def test_the_demo_corpus_stores_each_map_in_its_own_compressed_chunk_and_splits_by_sorted_key(tmp_path):
    manifest = load_manifest(REPO / "manifests" / "demo_svpsf39.yaml")
    res = build(manifest, out=tmp_path / "svp.h5", workers=1, limit=4, **QUIET)
    with h5py.File(res.path, "r") as f:
        for split in ("train", "val", "test"):
            if f[split]["blurred"].shape[0]:
                ds = f[split]["blurred"]
                assert ds.compression == "gzip" and ds.chunks == (1, 1, 96, 96, 3)
                assert f[split]["gt"].chunks == (1, 1, 96, 96)
                assert f[split]["sharp"].shape[1:] == (96, 96, 3)
        keys = [k.decode() for k in f["sources"]["key"][...]]
        splits = [s.decode() for s in f["sources"]["split"][...]]
    plan_keys = sorted(f"builtin:{n}" for n in load_manifest(REPO / "manifests" / "demo_svpsf39.yaml").sources[0].images)
    full = dict(zip(plan_keys, ["train"] * 4 + ["val"] * 2 + ["test"] * 2, strict=True))
    assert all(full[k] == s for k, s in zip(keys, splits, strict=True))


def test_bad_generator_parameters_are_one_line_errors(tmp_path):
    text = (REPO / "manifests" / "demo_svpsf39.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    for old, new, words in (("draws: 1", "draws: 1\n  families: [1, 14]", "families"),
                            ("draws: 1", "draws: 1\n  estimated: [dt, dt]", "estimated"),
                            ("draws: 1", "draws: 1\n  levels: [1.0, 2.0]", "levels")):
        bad.write_text(text.replace(old, new))
        proc = run_cli("build", str(bad), "--out", str(tmp_path / "x.h5"))
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr
        assert not (tmp_path / "x.h5").exists()
