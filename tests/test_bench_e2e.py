"""End to end through the ``bench`` console script: run -> report -> compare -> nightly.

Real Dask workers, real pyiqa, real parquet files; methods are injected through
``DEFOCUSBENCH_METHODS`` (see tests/plugins.py) to simulate a regression and a crash.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, SHARED_DATA, run_bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_env(tmp_path_factory) -> dict:
    """A private weights folder; NIQE/BRISQUE models imported from ../shared/data when present."""
    folder = tmp_path_factory.mktemp("weights")
    env = {"DEFOCUSBENCH_WEIGHTS": str(folder), "PYTHONPATH": str(REPO)}
    niqe = SHARED_DATA / "iqa" / "niqe" / "niqe_pris_params.npz"
    brisque = SHARED_DATA / "iqa" / "brisque" / "brisque_allmodel_live.txt"
    for name, src in (("niqe", niqe), ("brisque", brisque)):
        if src.exists():
            r = run_bench("weights", "import", name, src, env=env)
            assert r.returncode == 0, r.stderr
    return env


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, weights_env) -> Path:
    out = tmp_path_factory.mktemp("runs") / "base"
    r = run_bench("run", "--methods", "all", "--profile", "quick", "--out", out, env=weights_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_quick_run_writes_a_complete_run_directory(base_run):
    meta = json.loads((base_run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["exit_code"] == 0
    assert set(meta["methods"]) >= {"zhuo_sim2011", "var_laplacian", "local_entropy", "local_std", "unsharp_mask"}
    assert meta["git"]["sha"] is None or len(meta["git"]["sha"]) == 40
    summary = pd.read_parquet(base_run / "summary.parquet")
    ok = summary[summary.status == "ok"]
    # every blur-map method is scored on detection; MAE only where the units allow it
    for m in ("zhuo_sim2011", "var_laplacian", "local_entropy", "local_std"):
        assert {"accuracy_alpha", "accuracy_oracle", "pr_hifst"} <= set(ok[(ok.method == m) & (ok.dataset == "synth_detection")].metric)
    assert set(ok[(ok.method == "zhuo_sim2011") & (ok.dataset == "synth_defocus")].metric) == {"mae_radius", "mae_relative", "mae_dmenet"}
    na = summary[(summary.status == "n/a") & (summary.method == "local_std") & (summary.dataset == "synth_defocus")]
    assert len(na) == 3 and all(na.reason.str.len() > 0)
    enh = ok[(ok.method == "unsharp_mask") & (ok.dataset == "synth_enhance")]
    assert {"psnr", "ssim", "piqe"} <= set(enh.metric)
    if (SHARED_DATA / "iqa").exists():  # CI: NIQE and BRISQUE produce real values
        assert {"niqe", "brisque"} <= set(enh.metric)
    assert enh.value.notna().all()
    samples = pd.read_parquet(base_run / "samples.parquet")
    assert len(samples) > 0 and samples.value.notna().all()
    curves = pd.read_parquet(base_run / "curves.parquet")
    assert (curves.groupby(["method", "dataset", "curve"]).size() == 256).all() and set(curves.curve) == {"pr"}
    timings = pd.read_parquet(base_run / "timings.parquet")
    assert (timings.seconds > 0).all() and set(timings.method) == set(meta["methods"])
    assert (base_run / "report.html").stat().st_size > 10_000
    assert not base_run.with_name(base_run.name + ".incomplete").exists()


def test_report_renders_in_chromium(base_run, tmp_path):
    from .browser import render_in_chromium
    shot = tmp_path / "report.png"
    result = render_in_chromium(base_run / "report.html", screenshot=shot)
    assert result["console_errors"] == []
    for m in ("zhuo_sim2011", "var_laplacian", "local_entropy", "local_std", "unsharp_mask"):
        assert m in result["text"]
    print(f"screenshot: {shot}")


def test_compare_run_with_itself_marks_nothing_worse(base_run):
    r = run_bench("compare", base_run, base_run, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and {row["mark"] for row in rows} <= {"unchanged"}


def test_injected_degradation_is_a_regression(base_run, weights_env, tmp_path):
    env = dict(weights_env, DEFOCUSBENCH_METHODS="unsharp_mask=tests.plugins:DegradedUnsharp")
    cur = tmp_path / "degraded"
    r = run_bench("run", "--methods", "all", "--out", cur, "--no-report", env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_bench("compare", base_run, cur, "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = json.loads(r.stdout)
    worse = {(x["method"], x["metric"]) for x in rows if x["mark"] == "worse"}
    assert ("unsharp_mask", "psnr") in worse
    assert all(x["method"] == "unsharp_mask" for x in rows if x["mark"] == "worse")
    # the report with a baseline shows the comparison
    r = run_bench("report", cur, "--baseline", base_run)
    assert r.returncode == 0, r.stderr
    assert "worse" in (cur / "report.html").read_text()


def test_crashing_method_is_recorded_and_exits_3(weights_env, tmp_path):
    env = dict(weights_env, DEFOCUSBENCH_METHODS="crasher=tests.plugins:Crasher")
    out = tmp_path / "crash"
    r = run_bench("run", "--methods", "crasher,local_std", "--datasets", "synth_detection", "--out", out, env=env)
    assert r.returncode == 3, r.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "partial"
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert failures and all(f["method"] == "crasher" and f["stage"] == "predict" for f in failures)
    assert "RuntimeError: injected failure" in failures[0]["error"] and "Traceback" in failures[0]["traceback"]
    summary = pd.read_parquet(out / "summary.parquet")
    assert (summary[summary.method == "crasher"].status == "failed").all()
    assert (summary[summary.method == "local_std"].status == "ok").all()
    html = (out / "report.html").read_text()
    assert "crasher" in html and "&lt;b&gt;boom&lt;/b&gt;" in html and "<b>boom</b>" not in html


def test_nightly_against_the_committed_baseline(weights_env, tmp_path):
    """CI's quick nightly: same data, methods and metric versions as the committed baseline."""
    cfg = tmp_path / "nightly.yaml"
    baseline = REPO / "reports" / "baselines" / "quick"
    cfg.write_text(f"profile: quick\nmethods: all\nbaseline: {baseline}\nout: {tmp_path / 'nightly'}\n")
    r = run_bench("nightly", "--config", cfg, env=weights_env, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (tmp_path / "nightly" / "report.html").is_file()


def test_scheduler_option_uses_an_existing_cluster(weights_env, tmp_path):
    """Same numbers through `--scheduler tcp://...` (a real dask scheduler + worker on 127.0.0.1)."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = str(Path(sys.executable).parent / "dask")
    env = dict(__import__("os").environ, **weights_env)
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        time.sleep(3)
        args = ["--methods", "local_std,var_laplacian", "--datasets", "synth_detection", "--no-report"]
        r1 = run_bench("run", *args, "--out", tmp_path / "local", env=weights_env)
        r2 = run_bench("run", *args, "--out", tmp_path / "remote", "--scheduler", f"tcp://127.0.0.1:{port}", env=weights_env)
        assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-2000:]
        a = pd.read_parquet(tmp_path / "local" / "samples.parquet")
        b = pd.read_parquet(tmp_path / "remote" / "samples.parquet")
        pd.testing.assert_frame_equal(a, b)
    finally:
        for p in (worker, sched):
            p.terminate()
            p.wait(timeout=30)
    shutil.rmtree(tmp_path / "local", ignore_errors=True)
