"""Evaluation dataset loaders: official layouts, crops, polarity check, determinism, ids."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from bench.datasets import DATASETS, open_dataset
from datagen import psf
from datagen.errors import UserError

from .conftest import shared_data, synthetic_photo


def _cuhk(root, n=4, *, inverted=False, image_dir="image"):
    (root / image_dir).mkdir(parents=True)
    (root / "gt").mkdir()
    for i in range(1, n + 1):
        sharp = synthetic_photo(i, 60, 80).astype(np.float32) / 255
        mask = np.zeros((60, 80), bool)
        mask[:, 40:] = True
        img = np.where(mask[..., None], psf.gaussian_blur(sharp, 3.0), sharp)
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(root / image_dir / f"out_of_focus{i:04d}.png")
        stored = ~mask if inverted else mask
        Image.fromarray(stored.astype(np.uint8) * 255).save(root / "gt" / f"out_of_focus{i:04d}.png")
    return root


def test_synthetic_sets_are_deterministic_and_consistent():
    for name in ("synth_detection", "synth_defocus", "synth_enhance"):
        a, b = open_dataset(name), open_dataset(name)
        assert a.dataset_id == b.dataset_id and a.keys() == b.keys() and len(a) == 6  # quick: the 6 photos
        s1, s2 = a.load(a.keys()[0]), b.load(b.keys()[0])
        np.testing.assert_array_equal(s1.image, s2.image)
        assert s1.image.dtype == np.float32 and s1.image.shape[2] == 3 and max(s1.image.shape[:2]) == 160
        assert 0 <= s1.image.min() and s1.image.max() <= 1
        for k, v in s1.targets.items():
            np.testing.assert_array_equal(v, s2.targets[k])
    assert open_dataset("synth_detection", profile="full").dataset_id != open_dataset("synth_detection").dataset_id


def test_synth_defocus_radius_map_matches_the_blur_used():
    d = open_dataset("synth_defocus")
    s = d.load(d.keys()[0])
    r = s.targets["radius_map"]
    assert set(np.unique(r)) <= set(np.arange(0.5, 6.01, 0.25)) and len(np.unique(r)) == 3
    np.testing.assert_allclose(s.targets["sigma_map"], psf.radius_to_sigma(r), rtol=1e-6)


def test_synth_detection_blurs_exactly_the_masked_region():
    d = open_dataset("synth_detection")
    s = d.load("astronaut")
    from bench.datasets.synthetic import load_builtin
    sharp = load_builtin("astronaut", 160)
    mask = s.targets["blur_mask"]
    np.testing.assert_array_equal(s.image[~mask], sharp[~mask])
    assert np.abs(s.image[mask] - sharp[mask]).mean() > 0.005


def test_cuhk_layout_subset_and_partial_copy(tmp_path):
    root = _cuhk(tmp_path / "c", image_dir="images")
    d = open_dataset("cuhk", root=root)
    assert d.keys() == [f"out_of_focus{i:04d}" for i in range(1, 5)]
    assert "4 of 200 images present" in d.description
    s = d.load(d.keys()[0])
    assert s.targets["blur_mask"].dtype == bool and s.targets["blur_mask"][:, 40:].all()
    assert d.check_polarity() is None
    with pytest.raises(UserError, match="subset"):
        open_dataset("cuhk", root=root, subset="nope")
    with pytest.raises(UserError, match="no image with its mask"):
        open_dataset("cuhk", root=root, subset="motion")


def test_cuhk_inverted_masks_are_detected(tmp_path):
    root = _cuhk(tmp_path / "c", inverted=True)
    d = open_dataset("cuhk", root=root)
    before = d.dataset_id
    note = d.check_polarity()
    assert note and "inverted" in note
    assert d.load(d.keys()[0]).targets["blur_mask"][:, 40:].all()
    assert d.dataset_id != before   # the polarity in use is part of the id
    d2 = open_dataset("cuhk", root=root, polarity="blurred255")
    assert d2.check_polarity() is None and not d2.load(d2.keys()[0]).targets["blur_mask"][:, 40:].any()


def test_rtf_layout_and_crop(tmp_path):
    root = tmp_path / "rtf"
    root.mkdir()
    for n in ("01", "02"):
        Image.fromarray(synthetic_photo(int(n), 36, 36)).save(root / f"image_{n}.png")
        scipy.io.savemat(root / f"map_{n}.mat", {"blurMap": np.full((36, 36), 1.5)})
    (root / "image_03.png").write_bytes((root / "image_01.png").read_bytes())   # no map: ignored
    d = open_dataset("rtf", root=root)
    assert d.keys() == ["image_01", "image_02"]
    s = d.load("image_01")
    assert s.image.shape == (36, 16, 3) and s.targets["radius_map"].shape == (36, 16)
    full = open_dataset("rtf_full", root=root)
    assert full.load("image_01").image.shape == (36, 36, 3) and full.dataset_id != d.dataset_id
    scipy.io.savemat(root / "map_02.mat", {"other": np.zeros(3)})
    with pytest.raises(UserError, match="blurMap"):
        d.load("image_02")


def test_every_dataset_declares_its_contract():
    for name, cls in DATASETS.items():
        assert cls.NAME == name and cls.TASK in ("detection", "defocus_map", "enhancement", "restoration", "patch_blur",
                                                  "nr_enhancement")
        assert (cls.TARGETS or cls.TASK == "nr_enhancement") and cls.VERSION and cls.DESCRIPTION


@pytest.mark.realdata
def test_dandres_image_01_loads_as_rtf():
    d = open_dataset("rtf", root=shared_data("dandres"))
    s = d.load("image_01")
    assert s.image.shape == (360, 340, 3) and s.targets["radius_map"].shape == (360, 340)
    assert 0.5 <= s.targets["radius_map"].min() and s.targets["radius_map"].max() <= 6


@pytest.mark.realdata
def test_shared_cuhk_images_load_with_the_right_polarity():
    d = open_dataset("cuhk", root=shared_data("cuhk"))
    assert d.keys() == ["out_of_focus0011", "out_of_focus0031", "out_of_focus0035", "out_of_focus0080", "out_of_focus0088"]
    agree, checked = d.polarity_votes()
    print(f"CUHK polarity votes: {agree} of {checked} images are less sharp inside the 255 label")
    assert checked == 5 and agree >= 4 and d.check_polarity() is None
    assert "5 of 200 images present" in d.description


def test_gauss20_corpus_split_as_an_evaluation_set(tmp_path, make_manifest):
    from .conftest import run_cli
    out = tmp_path / "c.h5"
    r = run_cli("build", make_manifest(), "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    d = open_dataset("gauss20", root=out, profile="quick")
    assert len(d) == 40 and d.TASK == "patch_blur"   # 2 per class x 20 classes
    s = d.load(d.keys()[-1])
    assert s.image.shape == (32, 32, 3) and int(s.targets["label"]) == 19
    assert float(s.targets["sigma_map"][0, 0]) == 19.0
    full = open_dataset("gauss20", root=out, profile="full")
    assert len(full) > len(d) and full.dataset_id != d.dataset_id
    with pytest.raises(UserError, match="corpus file"):
        open_dataset("gauss20", root=tmp_path)
    with pytest.raises(UserError, match="split"):
        open_dataset("gauss20", root=out, split="nope")


def test_patch_metrics():
    from bench.datasets.base import Sample
    from bench.metrics import PredInfo, create_metric
    s = Sample("k", np.zeros((4, 4, 3), np.float32), {"sigma_map": np.full((4, 4), 3.0, np.float32), "label": np.array(3)})
    info = PredInfo(units="sigma_px", higher="blurred")
    mae, acc = create_metric("mae_sigma"), create_metric("level_accuracy")
    pred = np.full((4, 4), 3.4, np.float32)
    assert mae.per_sample(pred, s, info)["value"] == pytest.approx(0.4, abs=1e-6)
    assert acc.per_sample(pred, s, info)["value"] == 1.0
    assert acc.per_sample(pred + 0.2, s, info)["value"] == 0.0
    assert mae.applicable(PredInfo(units="score", higher="sharp"))


def test_synth_defocus_layers_are_disk_blurred():
    from bench.datasets.synthetic import load_builtin
    d = open_dataset("synth_defocus")
    key = d.keys()[0]
    s = d.load(key)
    sharp = load_builtin(key, 160)
    r = s.targets["radius_map"]
    for radius in np.unique(r):
        sel = r == radius
        np.testing.assert_allclose(s.image[sel], psf.disk_blur(sharp, float(radius))[sel], atol=1e-6)


def test_photo_sets_without_reference(tmp_path):
    """kodak24 and cuhk_photos: photos only (no targets), content ids, one-line errors."""
    from bench.harness import DEFAULT_METRICS, plan

    kodak = tmp_path / "kodak"
    kodak.mkdir()
    for i in (1, 2, 24):
        Image.fromarray(synthetic_photo(i, 40, 48)).save(kodak / f"kodim{i:02d}.png")
    Image.fromarray(synthetic_photo(9, 40, 48)).save(kodak / "other.png")        # not a Kodak name: ignored
    d = open_dataset("kodak24", root=kodak)
    assert d.keys() == ["kodim01", "kodim02", "kodim24"] and "3 of 24 photos present" in d.description
    s = d.load("kodim02")
    assert s.image.shape == (40, 48, 3) and s.image.dtype == np.float32 and s.targets == {}
    first = d.dataset_id
    Image.fromarray(synthetic_photo(5, 40, 48)).save(kodak / "kodim02.png")
    assert open_dataset("kodak24", root=kodak).dataset_id != first               # content, not names
    with pytest.raises(UserError, match="no photo named kodim01"):
        open_dataset("kodak24", root=tmp_path)
    with pytest.raises(UserError, match="needs its folder"):
        open_dataset("kodak24")

    c = open_dataset("cuhk_photos", root=_cuhk(tmp_path / "c", n=2))
    assert c.keys() == ["out_of_focus0001", "out_of_focus0002"] and c.load(c.keys()[0]).targets == {}
    with pytest.raises(UserError, match="no image/ folder"):
        open_dataset("cuhk_photos", root=kodak)

    # enhancers are scored by the no-reference metrics only; blur maps do not fit
    pairs = {p.method: p for p in plan(["identity", "local_std"], {"kodak24": d}, None)}
    assert pairs["identity"].metrics + list(pairs["identity"].unavailable) == list(DEFAULT_METRICS["nr_enhancement"])
    assert pairs["local_std"].reason.startswith("local_std provides blur_map")


@pytest.mark.realdata
def test_shared_kodak24_and_cuhk_photos():
    assert len(open_dataset("kodak24", root=shared_data("kodak24"))) == 24
    assert len(open_dataset("cuhk_photos", root=shared_data("cuhk"))) == 5
