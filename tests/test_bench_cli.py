"""``bench`` verbs not covered end to end elsewhere: predict, score on real maps, list, exit 4, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .conftest import BIN, run_bench, shared_data, synthetic_photo


def test_predict_writes_float32_maps_and_previews(tmp_path):
    paths = []
    for i, shape in enumerate([(48, 64), (40, 40)]):
        p = tmp_path / f"in{i}.png"
        Image.fromarray(synthetic_photo(i, *shape)).save(p)
        paths.append(p)
    r = run_bench("predict", "local_std", *paths, "--out", tmp_path / "out", "--set", "window=8")
    assert r.returncode == 0, r.stderr
    for p, shape in zip(paths, [(48, 64), (40, 40)]):
        arr = np.load(tmp_path / "out" / f"{p.stem}.npy")
        assert arr.dtype == np.float32 and arr.shape == shape and np.isfinite(arr).all()
        assert (tmp_path / "out" / f"{p.stem}.png").is_file()
    r = run_bench("predict", "unsharp_mask", paths[0], "--out", tmp_path / "um")
    assert r.returncode == 0 and np.load(tmp_path / "um" / "in0.npy").shape == (48, 64, 3)
    r = run_bench("predict", "local_std", paths[0], "--out", tmp_path / "o2", "--set", "window=-3")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_list_verbs_describe_methods_metrics_datasets():
    r = run_bench("list", "methods", "--json")
    methods = {m["name"]: m for m in json.loads(r.stdout)}
    assert methods["zhuo_sim2011"]["provides"] == "blur_map" and methods["zhuo_sim2011"]["units"] == "sigma_px"
    assert methods["local_std"]["higher"] == "sharp"
    metrics = {m["name"]: m for m in json.loads(run_bench("list", "metrics", "--json").stdout)}
    assert metrics["mae_radius"]["higher_is_better"] is False and metrics["psnr"]["needs"] == ["sharp"]
    assert metrics["piqe"]["available"] == "yes"
    datasets = {d["name"]: d for d in json.loads(run_bench("list", "datasets", "--json").stdout)}
    assert datasets["cuhk"]["needs_root"] and not datasets["synth_enhance"]["needs_root"]
    assert run_bench("list", "methods").returncode == 0


def test_nothing_to_run_exits_4(tmp_path):
    r = run_bench("run", "--methods", "unsharp_mask", "--datasets", "synth_detection", "--out", tmp_path / "r")
    assert r.returncode == 4, r.stderr
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "nothing ran"


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_nothing_complete(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([str(BIN / "bench"), "run", "--methods", "zhuo_sim2011", "--datasets", "synth_detection",
                             "--profile", "full", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    jobs = out.with_name("run.incomplete") / "jobs"
    deadline = time.time() + 180
    while not list(jobs.glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)   # interrupt once a first task has finished and others are in flight
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("bench: interrupted; finished tasks are kept in") and "--out" in last
    assert not out.exists()
    # the rerun resumes from the finished tasks and gives the same numbers as an uninterrupted run
    r = run_bench("run", "--methods", "zhuo_sim2011", "--datasets", "synth_detection", "--profile", "full",
                  "--out", out, "--no-report", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming:" in r.stderr
    clean = tmp_path / "clean"
    r = run_bench("run", "--methods", "zhuo_sim2011", "--datasets", "synth_detection", "--profile", "full",
                  "--out", clean, "--no-report", timeout=600)
    a = pd.read_parquet(out / "samples.parquet").sort_values(["metric", "key"]).reset_index(drop=True)
    b = pd.read_parquet(clean / "samples.parquet").sort_values(["metric", "key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.realdata
def test_score_reproduces_the_published_hifst_curve_from_the_cli():
    root, maps = shared_data("cuhk"), shared_data("cuhk", "hifst_maps")
    ref = np.loadtxt(shared_data("cuhk", "reference_pr", "BlurDetection_HiFSTBlurMap_PRCurve.txt"))
    r = run_bench("score", "--dataset", "cuhk", "--root", root, "--maps", maps, "--higher", "sharp",
                  "--subset", "all", "--metrics", "pr_hifst", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["n"] == 1000 and len(result["pr_curve"]) == 256
    got = np.array([[p["precision"], p["recall"]] for p in result["pr_curve"]])
    assert np.abs(got - ref).max() < 0.005
    print(f"bench score vs published HiFST curve: max |diff| {np.abs(got - ref).max():.2e}, "
          f"AP {result['metrics']['pr_hifst']['value']:.4f}")


@pytest.mark.parametrize("tool,args", [("bench", "list metrics"), ("datagen", "list")])
def test_output_cut_short_by_a_pipe_is_not_a_traceback(tool, args):
    r = subprocess.run(f"'{BIN / tool}' {args} | head -c 1 > /dev/null; exit ${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
