"""The real-data manifests of Galetto & Deng 2022 (../shared/data): the COCO/ImageNet training corpus
(train/val by image) and the 6-image DIV2K validation test corpus (built here: ~7 s on 2 cores)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from datagen.manifest import load_manifest
from datagen.plan import make_plan
from datagen.reader import CorpusDataset
from datagen.runner import build

from .conftest import BIN, REPO, shared_data

pytestmark = pytest.mark.realdata

COCO = REPO / "manifests" / "coco_imagenet_gauss20.yaml"
DIV2K_VALID = REPO / "manifests" / "div2k_valid_gauss20.yaml"
ENV_VARS = ("COCO_IMAGENET_ROOT", "DIV2K_VALID_ROOT")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the manifests' root variables (their defaults apply), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {**env, **extra}


def _validate(manifest: Path, **env: str) -> dict:
    """``datagen validate --json`` as a user runs it, with the root variables unset unless given."""
    r = subprocess.run([str(BIN / "datagen"), "validate", str(manifest), "--json"], capture_output=True, text=True,
                       check=False, env=_clean_env(**env), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_generator_parameters_are_those_of_the_paper_manifest():
    paper = yaml.safe_load((REPO / "manifests" / "div2k_gauss20.yaml").read_text())
    for path in (COCO, DIV2K_VALID):
        mine = yaml.safe_load(path.read_text())
        assert (mine["generator"], mine["seed"]) == (paper["generator"], paper["seed"]), path.name


def test_coco_imagenet_manifest_splits_all_700_images_by_image():
    root = shared_data("coco_imagenet_sharp")
    out = _validate(COCO)
    # 350 + 350 photos (each folder also holds one .txt list, which is not an image)
    n = sum(1 for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert n == 700
    assert out["images"]["test"] == 0
    assert out["images"]["train"] + out["images"]["val"] == n
    assert out["images"]["val"] == pytest.approx(0.15 * n, abs=2)
    plan = make_plan(load_manifest(COCO, env={}))
    keys = [im.key for im in plan.images]
    assert len(set(keys)) == len(keys) == n                        # coco: and imagenet: keys never collide
    assert {k.split(":")[0] for k in keys} == {"coco", "imagenet"}
    splits = {im.key: im.split for im in plan.images}
    train = {k for k, s in splits.items() if s == "train"}
    val = {k for k, s in splits.items() if s == "val"}
    assert train and val and not train & val and len(train | val) == n
    assert len({Path(im.path).resolve() for im in plan.images}) == n  # no file listed twice


def test_roots_follow_their_environment_variables(tmp_path):
    shared_data("coco_imagenet_sharp")
    src = shared_data("div2k_valid_hr")
    for sub in ("coco", "imagenet"):
        (tmp_path / "ci" / sub).mkdir(parents=True)
        for p in sorted((src.parent / "coco_imagenet_sharp" / sub).iterdir())[:3]:
            (tmp_path / "ci" / sub / p.name).symlink_to(p)
    (tmp_path / "dv").mkdir()
    for p in sorted(src.glob("*.png"))[:2]:
        (tmp_path / "dv" / p.name).symlink_to(p)
    coco = _validate(COCO, COCO_IMAGENET_ROOT=str(tmp_path / "ci"))
    assert coco["images"]["train"] + coco["images"]["val"] == 6
    assert _validate(DIV2K_VALID, DIV2K_VALID_ROOT=str(tmp_path / "dv"))["images"] == {"train": 0, "val": 0, "test": 2}


def test_div2k_valid_manifest_is_a_six_image_test_corpus(tmp_path):
    shared_data("div2k_valid_hr")
    out = _validate(DIV2K_VALID)
    assert out["images"] == {"train": 0, "val": 0, "test": 6}
    # built and read back: 565 sharp base patches (README, fidelity of class 0) x 20 classes
    res = build(load_manifest(DIV2K_VALID, env={}), out=tmp_path / "dv.h5", workers=2, progress=False,
                log=lambda m: None)
    assert res.dataset_id == out["dataset_id"]
    assert res.counts["test"]["images"] == 6 and res.counts["train"]["samples"] == res.counts["val"]["samples"] == 0
    assert res.counts["test"]["per_class"] == [565] * 20
    ds = CorpusDataset(res.path, "test", fields=["image", "label"])
    assert len(ds) == 565 * 20
    batch = ds.read_batch(np.arange(len(ds)))
    with h5py.File(res.path, "r") as f:
        np.testing.assert_array_equal(batch["image"], f["test/image"][...])
    assert np.array_equal(np.bincount(batch["label"]), [565] * 20)
