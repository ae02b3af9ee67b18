"""Real data (../shared/data): class-0 fidelity on DIV2K and a build of the paper's manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datagen.generators.gauss20 import tile_sharpness
from datagen.imageio import read_gray
from datagen.manifest import load_manifest
from datagen.runner import build

from .conftest import REPO, shared_data

pytestmark = pytest.mark.realdata

DIV2K_SAMPLE = ("0803", "0830", "0853", "0886", "0894", "0898")


def _sharp_counts(sigma: float) -> list[int]:
    folder = shared_data("div2k_valid_hr")
    return [int((tile_sharpness(read_gray(folder / f"{n}.png")[0], patch=32, sigma=sigma) > 1000).sum())
            for n in DIV2K_SAMPLE]


def test_class0_counts_match_the_reference_readings():
    """Issue reference: sigma 0.5 (MATLAB fspecial default) passes 94 tiles/image, sigma 1 passes 2/image."""
    half, one = _sharp_counts(0.5), _sharp_counts(1.0)
    assert round(np.mean(half)) == 94 and round(np.mean(one)) == 2
    # the paper's 25 per DIV2K valid image is consistent with sigma 0.5 once the outlier 0830 is set aside
    without_outlier = np.mean([c for n, c in zip(DIV2K_SAMPLE, half) if n != "0830"])
    assert 20 <= without_outlier <= 30
    assert max(one) < 25


@pytest.fixture
def div2k_root(tmp_path) -> Path:
    """The 6-image sample laid out as a DIV2K root: 4 in DIV2K_train_HR, 2 in DIV2K_valid_HR."""
    folder = shared_data("div2k_valid_hr")
    for sub, names in (("DIV2K_train_HR", DIV2K_SAMPLE[:4]), ("DIV2K_valid_HR", DIV2K_SAMPLE[4:])):
        (tmp_path / sub).mkdir()
        for n in names:
            (tmp_path / sub / f"{n}.png").symlink_to(folder / f"{n}.png")
    return tmp_path


@pytest.mark.slow
def test_build_div2k_manifest_on_the_sample(div2k_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DIV2K_ROOT", str(div2k_root))
    res = build(load_manifest(REPO / "manifests" / "div2k_gauss20.yaml"), out=tmp_path / "div2k.h5", workers=2,
                progress=False, log=lambda m: None)
    assert res.counts["test"]["images"] == 2 and res.counts["train"]["images"] + res.counts["val"]["images"] == 4
    sharp = {s["key"].rsplit("/", 1)[1][:4]: s["sharp_tiles"] for s in res.stats}
    assert sharp == dict(zip(DIV2K_SAMPLE, _sharp_counts(0.5)))
    for split in ("train", "val", "test"):
        pc = res.counts[split]["per_class"]
        assert len(pc) == 20 and len(set(pc)) == 1
