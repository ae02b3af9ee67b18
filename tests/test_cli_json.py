"""``--json`` on ``bench run``, ``bench predict``, ``datagen build`` and ``datagen verify``: stdout is one JSON
document holding the facts of the text output, nothing else; the logs stay on stderr."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .conftest import run_bench, run_cli, synthetic_photo


def test_run_json(tmp_path):
    out = tmp_path / "run"
    r = run_bench("run", "--methods", "local_std,zhuo_sim2011", "--datasets", "synth_detection", "--out", out,
                  "--workers", "1", "--json", "--progress")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    meta = json.loads((out / "run.json").read_text())
    assert result["run_dir"] == str(out) and result["status"] == meta["status"] == "complete"
    assert result["exit_code"] == 0 and result["failures"] == 0 and result["seconds"] == meta["seconds"]
    assert result["report"] == str(out / "report.html") and (out / "report.html").is_file()
    (board,) = result["leaderboard"]
    (table,) = board["tables"]
    assert board["dataset"] == "synth_detection" and board["not_applicable"] == []
    assert table["n"] == meta["datasets"]["synth_detection"]["n"] > 1
    assert [m["name"] for m in table["metrics"]] == ["accuracy_alpha", "accuracy_oracle", "pr_hifst"]
    assert [row["method"] for row in table["rows"]] == ["local_std", "zhuo_sim2011"]
    summary = pd.read_parquet(out / "summary.parquet").set_index(["method", "metric"])["value"]
    for row in table["rows"]:
        for metric, cell in row["cells"].items():
            assert cell["status"] == "ok" and cell["value"] == pytest.approx(summary[(row["method"], metric)])
    for metric in ("accuracy_alpha", "accuracy_oracle", "pr_hifst"):     # all higher is better
        best = max(table["rows"], key=lambda row: row["cells"][metric]["value"])
        assert [row["cells"][metric]["best"] for row in table["rows"]] == [row is best for row in table["rows"]]
    assert "complete:" in r.stderr and "bench run:   0%|" in r.stderr   # a bar (--progress), on stderr only


def test_predict_json(tmp_path):
    images = []
    for i, shape in enumerate([(48, 64), (40, 40)]):
        images.append(tmp_path / f"in{i}.png")
        Image.fromarray(synthetic_photo(i, *shape)).save(images[-1])
    out = tmp_path / "out"
    r = run_bench("predict", "local_std", *images, "--out", out, "--set", "window=8", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["method"] == "local_std" and result["out"] == str(out) and result["weights"] == {}
    assert [o["image"] for o in result["outputs"]] == [str(p) for p in images]
    for o, shape in zip(result["outputs"], [[48, 64], [40, 40]]):
        assert o["npy"] == str(out / f"{Path(o['image']).stem}.npy") and o["shape"] == shape
        assert np.load(o["npy"]).shape == tuple(shape) and o["dtype"] == "float32"
        assert Path(o["preview"]) == out / "previews" / f"{Path(o['image']).stem}.png"
        assert Image.open(o["preview"]).format == "PNG"


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder):
    from .conftest import manifest_dict, write_manifest

    folder = tmp_path_factory.mktemp("json_build")
    manifest = write_manifest(folder / "m.yaml", manifest_dict(image_folder))
    out = folder / "c.h5"
    r = run_cli("build", manifest, "--out", out, "--workers", "1", "--no-progress", "--json")
    return r, out, manifest


def test_build_json(built):
    r, out, manifest = built
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert result["path"] == str(out) and result["status"] == "built" and result["seconds"] > 0
    assert result["dataset_id"] == info["dataset_id"] and result["content_sha256"] == info["content_sha256"]
    assert result["counts"] == info["counts"] and sum(c["images"] for c in result["counts"].values()) == 8
    assert result["shards_built"] == 4 and result["shards_reused"] == 0 and result["summary"]
    assert "build" in r.stderr and "%" in r.stderr            # progress lines on stderr
    again = run_cli("build", manifest, "--out", out, "--workers", "1", "--no-progress", "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["status"] == "up-to-date" and second["dataset_id"] == result["dataset_id"]
    assert second["counts"] == result["counts"] and second["summary"] == []


def test_verify_json(built, tmp_path):
    _, out, _ = built
    r = run_cli("verify", out, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert result["ok"] is True and result["path"] == str(out) and result["dataset_id"] == info["dataset_id"]
    assert any("content_sha256" in c for c in result["checked"]) and r.stderr == ""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(out.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["train/image"][0, 0, 0] ^= 1
    r = run_cli("verify", bad, "--json")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    result = json.loads(r.stdout)
    assert result["ok"] is False and "train/image" in result["problems"] and result["checked"]
