"""``bench`` verbs not covered end to end elsewhere: predict, predict then score, run --subset, score on real maps,
list, exit 4, Ctrl-C; progress on stderr (lines off a terminal, a bar on one)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .conftest import BIN, run_bench, run_cli, shared_data, synthetic_photo
from .test_fetch import TRAIN, VALID, div2k, server  # noqa: F401 - fixtures: a local mirror of DIV2K-like zips


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory):
    """A tiny CUHK layout: two defocus images of the test subset and one motion image (right half blurred)."""
    from datagen import psf

    root = tmp_path_factory.mktemp("cuhk")
    (root / "image").mkdir()
    (root / "gt").mkdir()
    for seed, key in enumerate(("out_of_focus0001", "out_of_focus0002", "motion0138")):
        sharp = synthetic_photo(seed, 60, 80).astype(np.float32) / 255
        mask = np.zeros((60, 80), bool)
        mask[:, 40:] = True
        image = np.where(mask[..., None], psf.gaussian_blur(sharp, 3.0), sharp)
        Image.fromarray((image * 255 + 0.5).astype(np.uint8)).save(root / "image" / f"{key}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "gt" / f"{key}.png")
    return root


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
        assert (tmp_path / "out" / "previews" / f"{p.stem}.png").is_file()
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["in0.npy", "in1.npy", "previews"]
    r = run_bench("predict", "unsharp_mask", paths[0], "--out", tmp_path / "um")
    assert r.returncode == 0 and np.load(tmp_path / "um" / "in0.npy").shape == (48, 64, 3)
    r = run_bench("predict", "local_std", paths[0], "--out", tmp_path / "o2", "--set", "window=-3")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_predict_then_score_the_same_folder(tmp_path, cuhk_root):
    """The workflow as written: ``bench predict M IMAGES --out D`` then ``bench score --maps D`` (the previews that
    predict writes are in D/previews/, which score ignores)."""
    images = sorted((cuhk_root / "image").iterdir())
    out = tmp_path / "maps"
    r = run_bench("predict", "local_std", *images, "--out", out, "--set", "window=8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(out / f"{p.stem}.npy") for p in images]
    assert sorted(p.name for p in (out / "previews").iterdir()) == [f"{p.stem}.png" for p in images]
    r = run_bench("score", "--dataset", "cuhk", "--root", cuhk_root, "--maps", out, "--subset", "all",
                  "--higher", "sharp", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["n"] == 3 and 0.5 < result["metrics"]["accuracy_oracle"]["value"] <= 1


def test_run_takes_a_subset_and_prints_its_leaderboard(tmp_path, cuhk_root):
    from bench.leaderboard import format_run_result, run_result

    out = tmp_path / "run"
    r = run_bench("run", "--methods", "local_std,var_laplacian", "--datasets", "cuhk", "--root", f"cuhk={cuhk_root}",
                  "--subset", "motion", "--out", out, "--no-report", "--workers", "1")
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["datasets"]["cuhk"]["n"] == 1 and "subset motion" in meta["datasets"]["cuhk"]["description"]
    # stdout holds the leaderboard and the run's line, nothing else; the logs are on stderr
    assert r.stdout == format_run_result(run_result(out, 0)) + "\n"
    lines = r.stdout.splitlines()
    assert lines[0] == "cuhk: detection, 1 samples" and lines[1].split() == ["method", "accuracy_alpha",
                                                                            "accuracy_oracle", "pr_hifst"]
    assert {ln.split()[0] for ln in lines[3:5]} == {"local_std", "var_laplacian"}
    assert lines[-1] == f"run {out}: complete (exit 0), 0 failure(s), no report"
    assert f"complete: {out}" in r.stderr and "cuhk:" not in r.stderr
    # off a terminal, the tasks' progress is a line every ~10 % with an ETA
    assert re.search(r"^bench run 100% \((\d+)/\1 tasks, .*, eta [^)]*\)$", r.stderr, re.MULTILINE), r.stderr


def test_run_subset_needs_a_dataset_with_subsets(tmp_path, capsys):
    from bench.cli import main

    code = main(["run", "--subset", "motion", "--datasets", "synth_detection", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--subset motion: none of the selected datasets (synth_detection) has subsets" in err and "cuhk" in err
    assert not (tmp_path / "r").exists()


def test_progress_lines_every_tenth_and_a_bar_on_request(capsys):
    from datagen.progress import Progress

    lines = []
    p = Progress(1000, log=lines.append, unit="images", desc="build", bar=False)
    for _ in range(1000):
        p.update(1, note="loss 0.5")
    p.close()
    assert [int(ln.split()[1].rstrip("%")) for ln in lines] == list(range(10, 101, 10))
    assert lines[-1].startswith("build 100% loss 0.5 (1000/1000 images, ") and ", eta " in lines[-1]
    resumed = []
    p = Progress(100, log=resumed.append, unit="B", desc="x.zip", bar=False, initial=50)
    p.update(50)
    assert len(resumed) == 1 and resumed[0].startswith("x.zip 100% (0/0 MB, ")
    p = Progress(10, log=lines.append, unit="tasks", desc="bench run", bar=True)   # stderr is no terminal here
    p.update(10)
    p.close()
    err = capsys.readouterr().err
    assert "\r" in err and "bench run:   0%|" in err and "0/10" in err and len(lines) == 10   # a bar, no line


def test_fetch_progress_lines(server, div2k, tmp_path):  # noqa: F811 - pytest fixtures
    _, sums = div2k
    r = run_cli("fetch", "div2k", "--dest", tmp_path / "d", "--base-url", server.url, "--checksums", sums,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for name in (TRAIN, VALID):
        mine = [ln for ln in lines if ln.startswith(f"datagen: {name} ")]
        assert mine and mine[-1].startswith(f"datagen: {name} 100% (0/0 MB, ") and "MB/s, eta " in mine[-1], lines
    assert r.stdout.startswith("div2k ready in ")


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
