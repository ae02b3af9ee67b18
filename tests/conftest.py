"""Shared fixtures: tiny generated images (no downloads), manifest writers, CLI runners."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
BIN = Path(sys.executable).parent


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (expected ../shared/data beside the repo)")
    return path


def synthetic_photo(seed: int, height: int = 160, width: int = 224) -> np.ndarray:
    """RGB uint8: a sharp textured region (noise + edges) beside a smooth gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 60 + 120 * (x / width) + 30 * np.sin(y / 17.0)
    texture = rng.integers(0, 256, (height, width)).astype(float)
    edges = 200.0 * (((x // 9) + (y // 13)) % 2)
    mask = x < width * 0.55
    gray = np.where(mask, 0.5 * texture + 0.5 * edges, base)
    rgb = np.stack([gray, np.roll(gray, 1, axis=1), 255 - gray], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_images(folder: Path, n: int, *, seed0: int = 0, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(synthetic_photo(seed0 + i, **kw)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session", autouse=True)
def _private_hash_cache(tmp_path_factory):
    """Source-file hashes (datagen.filehash) go to a cache of this test session, never the user's
    home; set in ``os.environ`` so that CLI subprocesses and Dask workers inherit it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFOCUSBENCH_CACHE", str(tmp_path_factory.mktemp("hash-cache")))
        yield


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """8 small synthetic photos (160x224)."""
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, 8)
    return folder


@pytest.fixture(scope="session")
def big_image_folder(tmp_path_factory) -> Path:
    """24 larger photos: a build of them lasts long enough to be interrupted."""
    folder = tmp_path_factory.mktemp("big_images")
    write_images(folder, 24, seed0=100, height=512, width=640)
    return folder


def manifest_dict(root: Path, **over) -> dict:
    data = {
        "name": "fixture_gauss20",
        "seed": 7,
        "generator": {"kind": "gauss20"},
        "sources": [{"kind": "folder", "root": str(root), "pattern": "*.png",
                     "split": {"train": 0.5, "val": 0.25, "test": 0.25}}],
        "output": {"images_per_shard": 2},
    }
    for key, value in over.items():
        data[key] = value
    return data


def write_manifest(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def make_manifest(tmp_path, image_folder):
    def make(data: dict | None = None, name: str = "m.yaml", **over) -> Path:
        return write_manifest(tmp_path / name, data if data is not None else manifest_dict(image_folder, **over))
    return make


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, tool: str = "datagen",
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``datagen`` (or ``bench``) console script as a user would."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def run_bench(*args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli(*args, tool="bench", **kw)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def no_shipped_metric_files(monkeypatch):
    """An installation without the NIQE / BRISQUE files of ``bench/metrics/iqa_models`` (what cannot
    exist in this checkout): only imported metric weights are there to be used."""
    from bench import weights
    from bench.metrics import iqa

    monkeypatch.setattr(weights, "_shipped_metric_file", lambda spec: None)
    monkeypatch.setattr(iqa, "_CACHE", {})
