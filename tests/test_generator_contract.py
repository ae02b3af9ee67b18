"""The contract every registered corpus generator keeps (as TFDS tests its builders): built from its
``manifests/demo_<kind>.yaml`` on built-in images, it gives the planned counts per split, no source
image in two splits, the same bytes with 1 and 2 workers, the same bytes after a killed build is
resumed, and a preview grid that renders."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from datagen import SPLITS
from datagen.corpus import info, verify
from datagen.generators import get_generator, list_generators
from datagen.manifest import PRIMARY, load_manifest
from datagen.plan import make_plan
from datagen.preview import preview
from datagen.runner import build

from .conftest import BIN, run_cli

REPO = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda m: None}
GENERATORS = list_generators()

#: demo_gauss20's identity before the engine was generalised (issue 10): gauss20's bytes must not
#: change unless its VERSION does (and the README says why).
GAUSS20_DEMO = ("24e6aa78ca50a2e3", "198c57c5c6755b3a3d02deba447a4f5c87676fb49fc154ad8edb28ae42ddd5af")


def demo_manifest(kind: str) -> Path:
    return REPO / "manifests" / f"demo_{kind}.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """kind -> (manifest, build result with 1 worker); built once per module."""
    out = {}
    root = tmp_path_factory.mktemp("contract")
    for kind in GENERATORS:
        manifest = load_manifest(demo_manifest(kind))
        out[kind] = (manifest, build(manifest, out=root / f"{kind}.h5", workers=1, **QUIET))
    return out


def test_every_generator_has_a_demo_manifest_on_builtin_images():
    for kind in GENERATORS:
        path = demo_manifest(kind)
        assert path.is_file(), f"generator {kind} needs {path.name}"
        manifest = load_manifest(path)
        assert manifest.generator.kind == kind
        assert all(s.kind == "builtin" for s in manifest.sources), "demo manifests use built-in images only"


@pytest.mark.parametrize("kind", GENERATORS)
def test_counts_per_split_match_the_plan_and_the_data(built, kind):
    manifest, res = built[kind]
    plan = make_plan(manifest)
    gen = get_generator(kind)(manifest.generator)
    with h5py.File(res.path, "r") as f:
        for split in SPLITS:
            c = res.counts[split]
            assert c["images"] == plan.images_per_split()[split]
            n = f[split]["source"].shape[0]
            assert c["samples"] == n
            for name, spec in gen.fields().items():
                assert f[split][name].shape == (n, *spec.shape) and f[split][name].dtype == np.dtype(spec.dtype)
            if gen.classes():
                assert sum(c["per_class"]) == n
                assert np.bincount(f[split]["label"][...], minlength=len(gen.classes())).tolist() == c["per_class"]
    assert sum(res.counts[s]["samples"] for s in SPLITS) > 0
    verify(res.path)


@pytest.mark.parametrize("kind", GENERATORS)
def test_no_source_image_is_in_two_splits(built, kind):
    _, res = built[kind]
    with h5py.File(res.path, "r") as f:
        table = f["sources"]
        keys = [k.decode() for k in table["key"][...]]
        splits = [s.decode() for s in table["split"][...]]
        assert len(set(keys)) == len(keys)
        split_of = dict(zip(keys, splits, strict=True))
        for split in SPLITS:   # every sample's source row is of the sample's split
            rows = np.unique(f[split]["source"][...])
            assert all(splits[r] == split for r in rows)
        if "companions" in table:   # a composite draws its companions from its own split
            for key, comps in zip(keys, table["companions"][...], strict=True):
                for other in comps.decode().split():
                    assert split_of[other] == split_of[key]
            roles = [r.decode() for r in table["role"][...]]
            assert PRIMARY in roles and set(roles) - {PRIMARY}


@pytest.mark.parametrize("kind", GENERATORS)
def test_same_bytes_with_one_and_two_workers(built, kind, tmp_path):
    manifest, res = built[kind]
    two = build(manifest, out=tmp_path / "two.h5", workers=2, **QUIET)
    assert (two.dataset_id, two.content_sha256) == (res.dataset_id, res.content_sha256)
    assert (tmp_path / "two.h5").read_bytes() == res.path.read_bytes()


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_killed_build_resumes_to_the_same_bytes(built, kind, tmp_path):
    _, res = built[kind]
    out = tmp_path / "k.h5"
    env = dict(os.environ, DATAGEN_TEST_PAUSE_AT="built-shard-1")
    proc = subprocess.Popen([str(BIN / "datagen"), "build", str(demo_manifest(kind)), "--out", str(out),
                             "--workers", "1", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "test pause at" not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            pytest.fail(f"build ended before the pause point: {proc.stderr.read()}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    time.sleep(0.5)
    resumed = run_cli("build", demo_manifest(kind), "--out", out, "--workers", "1", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert info(out)["content_sha256"] == res.content_sha256


@pytest.mark.parametrize("kind", GENERATORS)
def test_preview_renders(built, kind, tmp_path):
    _, res = built[kind]
    png = preview(res.path, tmp_path / "p.png")
    with Image.open(png) as im:
        assert im.width > 100 and im.height > 40
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 10   # tiles were drawn, not a blank canvas


def test_gauss20_demo_bytes_did_not_change(built):
    _, res = built["gauss20"]
    assert (res.dataset_id, res.content_sha256) == GAUSS20_DEMO


def test_build_prints_the_generators_own_summary(tmp_path):
    r = run_cli("build", demo_manifest("disk23_edges"), "--out", tmp_path / "d.h5", "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "patches per level from 10 images" in r.stdout


def test_a_third_party_regression_generator_is_one_module_and_one_manifest(tmp_path):
    """A generator outside the package (tests/plugins.py, through DEFOCUSBENCH_GENERATORS) without
    classes: a float regression target, no label field; the engine's guarantees hold for it too."""
    from .conftest import write_manifest

    env = {"DEFOCUSBENCH_GENERATORS": "radius_tiles=tests.plugins:RadiusTiles", "PYTHONPATH": str(REPO)}
    manifest = write_manifest(tmp_path / "m.yaml", {
        "name": "radius_tiles_demo", "seed": 7, "generator": {"kind": "radius_tiles", "per_image": 5},
        "sources": [{"kind": "builtin", "images": ["camera", "coins", "coffee", "rocket"],
                     "split": {"train": 0.5, "val": 0.25, "test": 0.25}}],
        "output": {"images_per_shard": 1}})
    one = run_cli("build", manifest, "--out", tmp_path / "one.h5", "--workers", "1", "--no-progress", env=env)
    two = run_cli("build", manifest, "--out", tmp_path / "two.h5", "--workers", "2", "--no-progress", env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert "20 samples from 4 images" in one.stdout
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()
    meta = info(tmp_path / "one.h5")
    assert meta["classes"] == [] and meta["counts"]["train"]["per_class"] == []
    with h5py.File(tmp_path / "one.h5", "r") as f:
        assert set(f["train"]) == {"image", "radius", "source"}
        assert f["train"]["radius"].dtype == np.float32 and f["train"]["image"].shape == (10, 24, 24)
        assert f["sources"]["mean_radius"].dtype == np.float64      # float statistics stay floats
    assert run_cli("verify", tmp_path / "one.h5", env=env).returncode == 0
    shown = run_cli("preview", tmp_path / "one.h5", "--out", tmp_path / "p.png", env=env)
    assert shown.returncode == 0, shown.stderr
    with Image.open(tmp_path / "p.png") as im:
        assert np.asarray(im.convert("L")).std() > 10
