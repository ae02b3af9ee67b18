"""``bench`` bad input: exit 2, exactly one line on stderr, no traceback, nothing written as complete."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.cli import main

from .conftest import run_bench


@pytest.fixture
def cuhk_root(tmp_path):
    """A tiny CUHK layout: 3 images 40x30 with masks (left half blurred)."""
    root = tmp_path / "cuhk"
    (root / "image").mkdir(parents=True)
    (root / "gt").mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "image" / f"out_of_focus{i:04d}.jpg")
        mask = np.zeros((30, 40), np.uint8)
        mask[:, :20] = 255
        Image.fromarray(mask).save(root / "gt" / f"out_of_focus{i:04d}.png")
    return root


def _maps(tmp_path, shape=(30, 40), fill=None, n=3):
    folder = tmp_path / "maps"
    folder.mkdir(exist_ok=True)
    for i in range(1, n + 1):
        arr = np.random.default_rng(i).random(shape).astype(np.float32)
        if fill is not None:
            arr[0, 0] = fill
        np.save(folder / f"out_of_focus{i:04d}.npy", arr)
    return folder


def _assert_one_line(capsys, code, expect: str):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expect.lower() in lines[0].lower(), lines[0]
    return lines[0]


def test_unknown_method_suggests(capsys, tmp_path):
    line = _assert_one_line(capsys, main(["run", "--methods", "zhuo_sim", "--out", str(tmp_path / "r")]), "did you mean")
    assert "zhuo_sim2011" in line
    assert not (tmp_path / "r").exists()


def test_unknown_metric_suggests(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--metrics", "psnrr", "--out", str(tmp_path / "r")]), "did you mean psnr")


def test_unknown_dataset_suggests(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--datasets", "cuhkk", "--out", str(tmp_path / "r")]), "did you mean cuhk")


def test_real_dataset_without_root(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--datasets", "cuhk", "--out", str(tmp_path / "r")]), "--root cuhk=DIR")


def test_missing_root(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--root", f"cuhk={tmp_path / 'nope'}", "--out", str(tmp_path / "r")]),
                     "is not a folder")


def test_wrong_layout(capsys, tmp_path):
    (tmp_path / "flat").mkdir()
    _assert_one_line(capsys, main(["run", "--root", f"rtf={tmp_path / 'flat'}", "--out", str(tmp_path / "r")]),
                     "no image_NN.png")
    _assert_one_line(capsys, main(["run", "--root", f"cuhk={tmp_path / 'flat'}", "--out", str(tmp_path / "r")]),
                     "no gt/ folder")


def test_unknown_profile_and_bad_root_syntax(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--profile", "fast"]), "--profile")
    _assert_one_line(capsys, main(["run", "--root", "cuhk"]), "NAME=DIR")


def test_bad_method_parameter(capsys, tmp_path):
    _assert_one_line(capsys, main(["run", "--methods", "local_std", "--set", "local_std.nonsense=3",
                                   "--out", str(tmp_path / "r")]), "local_std")


def test_out_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    _assert_one_line(capsys, main(["run", "--methods", "local_std", "--datasets", "synth_detection",
                                   "--out", str(tmp_path / "f")]), "not a run directory")


def test_score_maps_of_wrong_size(capsys, tmp_path, cuhk_root):
    maps = _maps(tmp_path, shape=(31, 40))
    _assert_one_line(capsys, main(["score", "--dataset", "cuhk", "--root", str(cuhk_root), "--maps", str(maps)]),
                     "ground truth is 40x30")


def test_score_nan_maps(capsys, tmp_path, cuhk_root):
    maps = _maps(tmp_path, fill=np.nan)
    _assert_one_line(capsys, main(["score", "--dataset", "cuhk", "--root", str(cuhk_root), "--maps", str(maps)]), "NaN")


def test_score_missing_maps(capsys, tmp_path, cuhk_root):
    maps = _maps(tmp_path, n=2)
    _assert_one_line(capsys, main(["score", "--dataset", "cuhk", "--root", str(cuhk_root), "--maps", str(maps)]),
                     "no map for 1 of 3")


def test_score_corrupt_mask(capsys, tmp_path, cuhk_root):
    (cuhk_root / "gt" / "out_of_focus0002.png").write_bytes(b"not a png")
    maps = _maps(tmp_path)
    _assert_one_line(capsys, main(["score", "--dataset", "cuhk", "--root", str(cuhk_root), "--maps", str(maps)]),
                     "corrupt or unreadable mask")


def test_score_ok_on_the_tiny_layout(capsys, tmp_path, cuhk_root):
    """The fixture itself is valid: a map equal to the mask scores perfectly."""
    folder = tmp_path / "perfect"
    folder.mkdir()
    for i in (1, 2, 3):
        m = np.zeros((30, 40), np.float32)
        m[:, :20] = 1
        np.save(folder / f"out_of_focus{i:04d}.npy", m)
    assert main(["score", "--dataset", "cuhk", "--root", str(cuhk_root), "--maps", str(folder), "--json"]) == 0
    import json
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and result["metrics"]["accuracy_oracle"]["value"] == pytest.approx(1.0)
    assert len(result["pr_curve"]) == 256


def test_unreadable_run_dirs(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line(capsys, main(["report", str(tmp_path / "empty")]), "run.json")
    _assert_one_line(capsys, main(["compare", str(tmp_path / "nope"), str(tmp_path / "empty")]), "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    _assert_one_line(capsys, main(["report", str(tmp_path / "bad")]), "unreadable")


def test_predict_bad_inputs(capsys, tmp_path):
    _assert_one_line(capsys, main(["predict", "local_sdt", "x.png", "--out", str(tmp_path / "o")]), "did you mean local_std")
    _assert_one_line(capsys, main(["predict", "local_std", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]),
                     "cannot read image")
    (tmp_path / "garbage.png").write_bytes(b"garbage")
    _assert_one_line(capsys, main(["predict", "local_std", str(tmp_path / "garbage.png"), "--out", str(tmp_path / "o")]),
                     "not an image")
    assert not list((tmp_path / "o").glob("*.npy")) if (tmp_path / "o").exists() else True


def test_nightly_and_weights_bad_inputs(capsys, tmp_path):
    _assert_one_line(capsys, main(["nightly", "--config", str(tmp_path / "missing.yaml")]), "nightly config")
    cfg = tmp_path / "n.yaml"
    cfg.write_text("profile: quick\nbaseline: nowhere\nbogus: 1\n")
    _assert_one_line(capsys, main(["nightly", "--config", str(cfg)]), "bogus")
    cfg.write_text(f"profile: quick\nbaseline: {tmp_path / 'nowhere'}\n")
    _assert_one_line(capsys, main(["nightly", "--config", str(cfg)]), "not a run directory")
    _assert_one_line(capsys, main(["weights", "import", "nosuch", str(cfg)]), "nosuch")


def test_console_script_exit_codes_and_no_traceback(tmp_path):
    r = run_bench("run", "--methods", "nosuch")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_bench("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_bench("--version")
    assert r.returncode == 0 and "defocus-bench" in r.stdout
