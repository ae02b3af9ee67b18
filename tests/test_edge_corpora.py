"""Invariants of the Karaali 2022 corpora (disk23_edges, depth_edges) and the image + mask sources."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from datagen.edges import canny_edges
from datagen.filehash import file_sha256
from datagen.generators import SourceItem
from datagen.generators.depth_edges import (
    COMPOSITE,
    DepthEdges,
    DepthEdgesParams,
    composite,
    contour_distance,
    depth_edge_candidates,
    object_alpha,
    rotated_patches,
)
from datagen.generators.disk23_edges import (
    DISK23_RADII,
    Disk23Edges,
    Disk23Params,
    blurred_levels,
)
from datagen.imageio import read_image
from datagen.manifest import load_manifest
from datagen.patches import centred_patches
from datagen.runner import build
from datagen.sources import builtin_image_path

from .conftest import run_bench, run_cli, write_manifest

REPO = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda m: None}


@pytest.fixture(scope="module")
def disk23(tmp_path_factory):
    out = tmp_path_factory.mktemp("d23") / "d.h5"
    return build(load_manifest(REPO / "manifests" / "demo_disk23_edges.yaml"), out=out, workers=2, **QUIET)


@pytest.fixture(scope="module")
def depth(tmp_path_factory):
    out = tmp_path_factory.mktemp("dep") / "d.h5"
    return build(load_manifest(REPO / "manifests" / "demo_depth_edges.yaml"), out=out, workers=2, **QUIET)


def _source_images(f) -> dict[int, str]:
    return {i: k.decode().split(":", 1)[1] for i, k in enumerate(f["sources"]["key"][...])}


def test_disk23_patches_are_centred_on_edges_of_their_blurred_image(disk23):
    gen = Disk23Edges(Disk23Params())
    with h5py.File(disk23.path, "r") as f:
        names = _source_images(f)
        grp = f["train"]
        src, label, pos, img = (grp[k][...] for k in ("source", "label", "position", "image"))
        radius = grp["radius"][...]
    assert np.array_equal(radius, np.asarray(DISK23_RADII, np.float32)[label])
    for s in np.unique(src)[:3]:
        rgb, _ = read_image(builtin_image_path(names[int(s)]), color="rgb")
        levels = blurred_levels(rgb, gen.params.radii)
        mine = np.flatnonzero(src == s)
        counts = np.bincount(label[mine], minlength=23)
        assert (counts == counts[0]).all() and counts[0] > 0          # the same count per level
        for i in mine:
            blurred = levels[int(label[i])]
            y, x = pos[i]
            assert canny_edges(blurred)[y, x], "the centre pixel is an edge pixel of the blurred image"
            assert np.array_equal(img[i], centred_patches(blurred, [y], [x], size=41)[0])


def test_disk23_level_zero_is_the_sharp_image():
    rgb, _ = read_image(builtin_image_path("coins"), color="rgb")
    levels = blurred_levels(rgb, DISK23_RADII[:3])
    assert np.array_equal(levels[0], rgb) and not np.array_equal(levels[1], rgb)


def test_depth_edges_classes_are_balanced_and_depth_patches_lie_near_the_contour(depth):
    gen = DepthEdges(DepthEdgesParams())
    with h5py.File(depth.path, "r") as f:
        names = _source_images(f)
        for split in ("train", "val", "test"):
            c = depth.counts[split]["per_class"]
            assert c[0] == c[1] > 0
        grp = f["train"]
        src, label, mode, radius, pos = (grp[k][...] for k in ("source", "label", "mode", "radius", "position"))
        rotation = grp["rotation"][...]
    assert set(np.unique(rotation)) <= set(gen.params.rotations)
    assert ((label == 1) == (mode == COMPOSITE)).all()
    for s in np.unique(src):
        mask, _ = read_image(REPO / "datagen" / "data" / "masks" / f"{names[int(s)]}.png")
        for i in np.flatnonzero((src == s) & (label == 1)):
            r_fg, r_bg = radius[i]
            assert r_fg < r_bg
            alpha = object_alpha(mask, float(r_fg))
            y, x = pos[i]
            assert contour_distance(alpha)[y, x] <= gen.params.contour_distance


def test_a_composite_with_equal_blur_levels_has_no_depth_edges():
    rgb, _ = read_image(builtin_image_path("coffee"), color="rgb")
    mask, _ = read_image(REPO / "datagen" / "data" / "masks" / "coffee.png")
    bg = np.ascontiguousarray(np.flipud(rgb))
    for r in (0.0, 1.0, 3.0):
        img, alpha = composite(rgb, mask, bg, r_fg=r, r_bg=r)
        assert depth_edge_candidates(img, alpha, r_fg=r, r_bg=r, distance=2).size == 0
    img, alpha = composite(rgb, mask, bg, r_fg=0.0, r_bg=3.0)
    assert depth_edge_candidates(img, alpha, r_fg=0.0, r_bg=3.0, distance=2).size > 100


def test_rotations_by_quarter_turns_are_exact_and_others_keep_the_centre():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    ys, xs = np.array([40, 3]), np.array([45, 88])
    plain = centred_patches(img, ys, xs, size=41)
    quarter = rotated_patches(img, ys, xs, np.float32([90, 180]), size=41)
    assert np.array_equal(quarter[0], np.rot90(plain[0], 1)) and np.array_equal(quarter[1], np.rot90(plain[1], 2))
    turned = rotated_patches(img, ys, xs, np.float32([-30, 135]), size=41)
    assert np.array_equal(turned[:, 20, 20], plain[:, 20, 20])   # the centre pixel does not move


def test_depth_edges_generator_is_deterministic_per_key():
    rgb, _ = read_image(builtin_image_path("coins"), color="rgb")
    mask, _ = read_image(REPO / "datagen" / "data" / "masks" / "coins.png")
    bg, _ = read_image(builtin_image_path("gravel"), color="rgb")
    item = SourceItem("objects:coins", rgb, mask, {"background": (bg,)})
    gen = DepthEdges(DepthEdgesParams(patches_per_pair=3))
    a, _ = gen.make(item, np.random.default_rng(5))
    b, _ = gen.make(item, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (a["label"] == 1).sum() == (a["label"] == 0).sum() == 18


# ------------------------------------------------------------------------ image + mask sources
def _pairs(root: Path, n: int = 3, *, size=(40, 30), mask_size=None) -> Path:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / f"o{i}.png")
        w, h = mask_size or size
        m = np.zeros((h, w), np.uint8)
        m[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
        Image.fromarray(m).save(root / "masks" / f"o{i}.png")
    return root


def _depth_manifest(tmp_path: Path, pairs: Path) -> Path:
    bgs = tmp_path / "bgs"
    bgs.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(bgs / f"b{i}.png")
    return write_manifest(tmp_path / "m.yaml", {
        "name": "pairs", "seed": 1, "generator": {"kind": "depth_edges", "patches_per_pair": 1},
        "sources": [{"kind": "paired", "root": str(pairs), "split": "train"},
                    {"kind": "folder", "root": str(bgs), "role": "background", "split": "train"}]})


def _refused(tmp_path: Path, manifest: Path, needle: str) -> None:
    out = tmp_path / "o.h5"
    r = run_cli("build", manifest, "--out", out, "--workers", "1", "--no-progress")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    assert not list(tmp_path.glob("o.h5.tmp-*"))


def test_pairs_build(tmp_path):
    manifest = _depth_manifest(tmp_path, _pairs(tmp_path / "sod"))
    r = run_cli("build", manifest, "--out", tmp_path / "ok.h5", "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "object/background pairs" in r.stdout


def test_a_mask_of_another_size_is_refused(tmp_path):
    _refused(tmp_path, _depth_manifest(tmp_path, _pairs(tmp_path / "sod", mask_size=(20, 30))), "a mask must have its image's size")


def test_an_empty_mask_folder_is_refused(tmp_path):
    pairs = _pairs(tmp_path / "sod")
    for p in (pairs / "masks").iterdir():
        p.unlink()
    _refused(tmp_path, _depth_manifest(tmp_path, pairs), "masks")


def test_a_pair_with_a_missing_mask_is_refused(tmp_path):
    pairs = _pairs(tmp_path / "sod")
    (pairs / "masks" / "o1.png").unlink()
    _refused(tmp_path, _depth_manifest(tmp_path, pairs), "has no mask masks/o1.*")


def test_a_generator_that_needs_masks_refuses_plain_images(tmp_path, image_folder):
    m = write_manifest(tmp_path / "m.yaml", {
        "name": "x", "seed": 1, "generator": {"kind": "depth_edges"},
        "sources": [{"kind": "folder", "root": str(image_folder), "split": "train"},
                    {"kind": "folder", "root": str(image_folder), "role": "background", "split": "train"}]})
    _refused(tmp_path, m, "needs image + mask pairs")


def test_an_unknown_role_is_refused(tmp_path, image_folder):
    m = write_manifest(tmp_path / "m.yaml", {
        "name": "x", "seed": 1, "generator": {"kind": "disk23_edges"},
        "sources": [{"kind": "folder", "root": str(image_folder), "split": "train", "role": "background"}]})
    _refused(tmp_path, m, "draws no 'background' images")


# ------------------------------------------------------------------------ training the two stages
def test_bnet_then_enet_train_with_f1_copied_and_frozen(disk23, depth, tmp_path):
    import torch

    b = run_bench("train", "karaali2022_bnet", "--corpus", disk23.path, "--out", tmp_path / "b")
    assert b.returncode == 0, b.stderr
    missing = run_bench("train", "karaali2022_enet", "--corpus", depth.path, "--out", tmp_path / "e0")
    assert missing.returncode == 2 and "give --init FILE" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "e0").exists()
    wrong = run_bench("train", "karaali2022_enet", "--corpus", disk23.path, "--out", tmp_path / "e1",
                      "--init", tmp_path / "b" / "model.pt")
    assert wrong.returncode == 2 and "trains on 'depth_edges'" in wrong.stderr
    e = run_bench("train", "karaali2022_enet", "--corpus", depth.path, "--out", tmp_path / "e",
                  "--init", tmp_path / "b" / "model.pt")
    assert e.returncode == 0, e.stderr
    bnet = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    enet = torch.load(tmp_path / "e" / "model.pt", weights_only=True)
    f1 = [k for k in bnet if k.startswith("f1.")]
    assert f1 and all(torch.equal(bnet[k], enet[k]) for k in f1)           # frozen: unchanged by training
    card = json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert card["init"]["sha256"] == file_sha256(tmp_path / "b" / "model.pt")
