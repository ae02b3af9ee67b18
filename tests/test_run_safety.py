"""``bench run`` never loses or executes what it did not write, and never hangs on bad flags.

* ownership: ``--out`` and ``<out>.incomplete`` are replaced only when this tool can prove it
  wrote every file there (run.json marker + file list; format 1 runs by their fixed layout);
* one writer per ``--out`` (a real ``flock`` held by a real second process);
* the job cache is JSON data: a planted pickle is never loaded, a job of the wrong structure is
  computed again; ``kill -9`` and resume gives the samples of a clean run;
* one line and exit 2 for bad ``--workers`` / ``--scheduler``; a report failure is recorded.

Real files, real ``bench`` subprocesses and real Dask clusters throughout.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import store
from bench.store import FORMAT, FORMAT_VERSION, RunWriter, load_run
from datagen.errors import OutputError, UserError
from datagen.lock import output_lock

from .conftest import BIN, REPO, run_bench

BASELINE = REPO / "reports" / "baselines" / "quick"
QUICK = ("--methods", "local_std", "--datasets", "synth_detection", "--workers", "1", "--no-report")
# two methods x 2 chunks = 4 sequential tasks on one worker: time to kill the run after the first
SLOW = ("--methods", "local_std,var_laplacian", "--datasets", "synth_detection", "--profile", "full",
        "--workers", "1", "--no-report")
META = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": "test-run"}


def _one_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, r.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_run(out: Path, run_id: str = "test-run") -> Path:
    """A real (empty) run directory written by RunWriter, with one preview."""
    writer = RunWriter(out, dict(META, run_id=run_id))
    writer.files["previews/" + store.preview_name("synth", "k", "input")] = b"png"
    writer.finish(status="complete", exit_code=0, seconds=0.0, report="not requested")
    return writer.publish()


# ----------------------------------------------------------------------------- names and data

def test_file_names_derived_from_names_are_plain_and_distinct():
    file_token, preview_name = store.file_token, store.preview_name
    assert file_token("local_std") == "local_std" and file_token("img_0001.v2") == "img_0001.v2"
    odd = ["a/b", "a_b/", "../x", "..", ".hidden", "$\\alpha$", "test:0000012", "", "é", "a" * 200]
    tokens = [file_token(n) for n in odd]
    assert len(set(tokens)) == len(odd)
    for t in tokens:
        assert t and "/" not in t and not t.startswith(".") and len(t) <= 80 and t not in (".", "..")
    assert file_token("a/b") != file_token("a_b")
    name = preview_name("dataset/x", "../../etc/passwd", "method-a$b$")
    assert name.count("/") == 1 and ".." not in name.split("/")


def test_job_results_are_json_data_that_round_trip_exactly():
    to_data, from_data = store.to_data, store.from_data
    result = {"states": {"m": {"k": {"acc": np.linspace(0, 1, 7, dtype=np.float32), "value": np.float64(0.1),
                                     "n": np.int64(3), "flag": np.bool_(True), "t": (1, "x"), "nan": float("nan")}}},
              "previews": {"k": {"input": b"\x89PNG", "target": None}}, "keys": ["k"]}
    data = json.loads(json.dumps(to_data(result)))
    back = from_data(data)
    acc = back["states"]["m"]["k"]["acc"]
    assert acc.dtype == np.float32 and np.array_equal(acc, result["states"]["m"]["k"]["acc"])
    state = back["states"]["m"]["k"]
    assert type(state["value"]) is np.float64 and type(state["n"]) is np.int64 and type(state["flag"]) is np.bool_
    assert state["t"] == (1, "x") and np.isnan(state["nan"]) and back["previews"]["k"]["input"] == b"\x89PNG"
    for bad in (object(), {1: "x"}, np.array(["s"]), np.array([object()]), {"$nd": 1}):
        with pytest.raises(TypeError):
            to_data(bad)
    for bad in ({"$nd": ["O", [1], "AA=="]}, {"$nd": ["<f8", [2], "AA=="]}, {"$b": 5}, {"$np": ["<f8", [1], "AAAAAAAAAAA="]},
                {"$nd": ["garbage", [1], ""]}, {"$t": "x"}):
        with pytest.raises(ValueError):
            from_data(bad)


# ----------------------------------------------------------------------------- ownership of --out

def test_bench_run_refuses_a_folder_it_did_not_write_and_deletes_nothing(tmp_path):
    """The probe's repro: run.json `{}` beside a thesis."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    (folder / "thesis.tex").write_text("\\chapter{Five years}")
    before = _tree(folder)
    line = _one_line(run_bench("run", *QUICK, "--out", folder))
    assert "not a run directory written by bench run" in line and str(folder) in line
    assert _tree(folder) == before
    assert not folder.with_name("thesis.incomplete").exists() and not folder.with_name("thesis.lock").exists()


def test_writer_refuses_what_it_cannot_prove_it_wrote(tmp_path):
    cases = {}
    cases["foreign_marker"] = tmp_path / "a"                 # our format, but no run id
    cases["foreign_marker"].mkdir()
    (cases["foreign_marker"] / "run.json").write_text(json.dumps({"format": FORMAT}))
    cases["extra_file"] = _write_run(tmp_path / "b")         # a run of ours plus a user's file
    (cases["extra_file"] / "notes.txt").write_text("mine")
    cases["extra_dir"] = _write_run(tmp_path / "c")
    (cases["extra_dir"] / "previews" / "mine").mkdir()
    cases["forged_list"] = tmp_path / "d"                    # a file list pointing outside the folder
    cases["forged_list"].mkdir()
    (cases["forged_list"] / "run.json").write_text(json.dumps(dict(META, files=["run.json", "../victim.txt"])))
    (tmp_path / "victim.txt").write_text("precious")
    cases["listed_symlink"] = _write_run(tmp_path / "e")     # a listed name that is now a link elsewhere
    (cases["listed_symlink"] / "summary.parquet").unlink()
    (cases["listed_symlink"] / "summary.parquet").symlink_to(tmp_path / "victim.txt")
    cases["symlink"] = tmp_path / "f"
    cases["symlink"].symlink_to(cases["extra_file"])
    cases["file"] = tmp_path / "g"
    cases["file"].write_text("x")
    everything = _tree(tmp_path)
    for name, out in cases.items():
        with pytest.raises(OutputError) as err:
            RunWriter(out, dict(META))
        assert str(out) in str(err.value) and "\n" not in str(err.value), name
    assert _tree(tmp_path) == everything


def test_writer_replaces_only_runs_of_its_own_both_formats(tmp_path):
    ours = _write_run(tmp_path / "ours", "first")
    assert json.loads((ours / "run.json").read_text())["files"]
    _write_run(ours, "second")                                 # a run of ours: replaced
    assert json.loads((ours / "run.json").read_text())["run_id"] == "second"
    legacy = shutil.copytree(BASELINE, tmp_path / "legacy")    # format 1 (no file list), as runs before it were
    meta = json.loads((legacy / "run.json").read_text())
    meta.pop("files", None)
    (legacy / "run.json").write_text(json.dumps(dict(meta, format_version=1)))
    _write_run(legacy, "third")
    assert json.loads((legacy / "run.json").read_text())["run_id"] == "third"
    assert not (legacy / "report.html").exists() and not list(tmp_path.glob("*.incomplete"))
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_run(empty)
    assert (empty / "summary.parquet").is_file()


def test_work_folder_not_ours_is_refused_and_kept(tmp_path):
    out = tmp_path / "results"
    work = tmp_path / "results.incomplete"          # e.g. the user's own folder of that name
    work.mkdir()
    (work / "draft.txt").write_text("mine")
    (work / "jobs").mkdir()
    (work / "jobs" / "0123456789abcdef01234567.pkl").write_bytes(b"x")
    before = _tree(work)
    with pytest.raises(OutputError, match="not a work folder of bench run"):
        RunWriter(out, dict(META))
    ours = RunWriter(tmp_path / "other", dict(META))     # a work folder of ours with a planted link
    ours.save_result("0123456789abcdef01234567", {"x": 1})
    (ours.work / "run.json").write_text(json.dumps(dict(META, files=["previews/a.png"])))
    (ours.work / "previews").symlink_to(work)
    (work / "a.png").write_bytes(b"user's")
    before = _tree(work)
    with pytest.raises(OutputError, match="symbolic links"):
        RunWriter(tmp_path / "other", dict(META))
    assert _tree(work) == before
    line = _one_line(run_bench("run", *QUICK, "--out", out))
    assert "results.incomplete" in line
    assert _tree(work) == before and not out.exists()


def test_leftovers_of_a_killed_finish_are_removed_and_saved_jobs_kept(tmp_path):
    out = tmp_path / "run"
    first = RunWriter(out, dict(META))
    first.save_result("0123456789abcdef01234567", {"x": 1})
    first.files["previews/d/k__input.png"] = b"png"
    first.finish(status="complete", exit_code=0, seconds=1.0, report="written")   # killed before publish
    (first.work / "report.html").write_text("half a report")
    (first.work / ".run.json.123.0badc0de.tmp").write_text("{")               # a killed atomic write
    second = RunWriter(out, dict(META, run_id="again"))
    assert second.cached_result("0123456789abcdef01234567") == {"x": 1}
    left = set(_tree(second.work))
    assert left == {"run.json", "jobs/0123456789abcdef01234567.json"}, left
    second.finish(status="complete", exit_code=0, seconds=1.0, report="not requested")
    assert second.publish() == out and set(_tree(out)) == set(json.loads((out / "run.json").read_text())["files"]) - {"report.html"}


# ----------------------------------------------------------------------------- one writer per --out

def test_second_run_on_a_locked_out_fails_in_one_line(tmp_path):
    out = tmp_path / "run"
    with output_lock(out):
        line = _one_line(run_bench("run", *QUICK, "--out", out, timeout=120))
    assert "in use by" in line and f"pid {os.getpid()}" in line
    assert not out.exists() and not out.with_name("run.incomplete").exists()


@pytest.mark.slow
def test_two_runs_at_once_the_second_fails_naming_the_first(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([str(BIN / "bench"), "run", *SLOW, "--out", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run.lock"
    deadline = time.time() + 120
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert lock.exists(), "the first run never took the lock of its --out"
        line = _one_line(run_bench("run", *SLOW, "--out", out, timeout=120))
        assert f"pid {first.pid}" in line and "in use by" in line
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert load_run(out).meta["status"] == "complete" and not lock.exists()


# ----------------------------------------------------------------------------- kill -9, resume, planted jobs

@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """The work folder of a ``bench run`` killed with SIGKILL (driver and workers) after its first task."""
    out = tmp_path_factory.mktemp("killed") / "run"
    proc = subprocess.Popen([str(BIN / "bench"), "run", *SLOW, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    jobs = out.with_name("run.incomplete") / "jobs"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not [p for p in jobs.glob("*") if not p.name.startswith(".")]:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {err[-2000:]}"
    assert not out.exists()
    return out.with_name("run.incomplete")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("clean") / "run"
    r = run_bench("run", *SLOW, "--out", out, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return _samples(out)


def _samples(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "samples.parquet").sort_values(["method", "metric", "key"]).reset_index(drop=True)


def _resume(killed: Path, tmp_path: Path, plant=None) -> tuple[Path, subprocess.CompletedProcess]:
    """Copy the killed run's work folder beside a fresh --out, let ``plant`` tamper with its jobs/, rerun."""
    out = tmp_path / "run"
    shutil.copytree(killed, tmp_path / "run.incomplete", symlinks=True)
    if plant:
        plant(tmp_path / "run.incomplete" / "jobs")
    return out, run_bench("run", *SLOW, "--out", out, timeout=600)


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_samples_of_a_clean_run(killed, clean, tmp_path):
    saved = [p for p in (killed / "jobs").iterdir() if not p.name.startswith(".")]
    assert saved and all(p.suffix == ".json" for p in saved)      # data, not pickles
    out, r = _resume(killed, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming: {len(saved)} of 4 tasks" in r.stderr
    pd.testing.assert_frame_equal(_samples(out), clean)
    assert not (tmp_path / "run.incomplete").exists() and not (tmp_path / "run.lock").exists()


class _Evil:
    """A pickle that runs code when loaded: it creates the file named in its argument."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.slow
def test_planted_pickles_in_the_job_cache_are_never_loaded(killed, clean, tmp_path):
    pwned = tmp_path / "pwned"

    def plant(jobs: Path) -> None:
        for p in list(jobs.iterdir()):
            (jobs / f"{p.stem}.pkl").write_bytes(pickle.dumps(_Evil(str(pwned))))
            (jobs / f"{p.stem}.pickle").write_bytes(pickle.dumps(_Evil(str(pwned))))

    out, r = _resume(killed, tmp_path, plant)
    assert not pwned.exists(), "a planted pickle was executed"
    assert r.returncode == 0, r.stderr[-3000:]
    pd.testing.assert_frame_equal(_samples(out), clean)


@pytest.mark.slow
def test_a_cached_job_of_the_wrong_structure_is_computed_again(killed, clean, tmp_path):
    def plant(jobs: Path) -> None:
        for p in list(jobs.iterdir()):
            if p.suffix == ".json":   # a job file of ours whose result lacks everything a task returns
                data = json.loads(p.read_text())
                data["result"] = {"states": 5}
                p.write_text(json.dumps(data))
            else:                     # the previous cache format: a (harmless) pickle of the wrong structure
                p.write_bytes(pickle.dumps({"states": 5}))

    out, r = _resume(killed, tmp_path, plant)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    pd.testing.assert_frame_equal(_samples(out), clean)


def test_saved_results_of_any_wrong_structure_are_rejected_without_raising():
    """Every way a saved job can be malformed gives a reason (the task is computed again), never an exception."""
    import copy

    from bench import datasets
    from bench.harness import Job, _result_problem, run_job
    from bench.metrics import PredInfo

    dset = datasets.open_dataset("synth_detection", root=None, profile="quick")
    keys = dset.keys()[:2]
    job = Job("local_std", {}, "cpu", dset, "synth_detection", keys, ["accuracy_oracle"], keys[:1],
              PredInfo(provides="blur_map", units="score", higher="sharp"))
    good = store.from_data(json.loads(json.dumps(store.to_data(run_job(job)))))
    assert _result_problem(good, job) is None
    k0 = keys[0]
    breakages = [lambda r: r.clear(), lambda r: r.update(extra=1), lambda r: r.update(keys=[k0]),
                 lambda r: r.update(method="other"), lambda r: r.update(failures=5), lambda r: r.update(states=[]),
                 lambda r: r["states"].update(psnr={}), lambda r: r["states"]["accuracy_oracle"].pop(k0),
                 lambda r: r["states"]["accuracy_oracle"].update({k0: 5}), lambda r: r.update(timings={}),
                 lambda r: r["timings"][0].update(key=["unhashable"]), lambda r: r["timings"][0].update(seconds="1"),
                 lambda r: r["timings"].pop(), lambda r: r["timings"][0].update(seconds=True),
                 lambda r: r.update(previews={}), lambda r: r["previews"][k0].update(output=None),
                 lambda r: r["previews"][k0].update(input="text"), lambda r: r["previews"][k0].pop("target")]
    for number, breakage in enumerate(breakages):
        bad = copy.deepcopy(good)
        breakage(bad)
        assert isinstance(_result_problem(bad, job), str), number
    for not_a_result in (None, 5, "x", [good], {"states": 5}):
        assert isinstance(_result_problem(not_a_result, job), str)


# ----------------------------------------------------------------------------- flags: one line, exit 2

@pytest.mark.parametrize("workers", ["-3", "0", "100000"])
def test_bad_worker_count_is_one_line_not_a_hang(tmp_path, workers):
    line = _one_line(run_bench("run", *QUICK[:4], "--workers", workers, "--out", tmp_path / "r", timeout=60))
    assert "--workers" in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("address", ["bad", "tcp://127.0.0.1:1"])
def test_bad_scheduler_address_is_one_line(tmp_path, address):
    r = run_bench("run", *QUICK, "--scheduler", address, "--out", tmp_path / "r", timeout=120)
    line = _one_line(r)
    assert "--scheduler" in line and "Exception ignored" not in r.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.incomplete").exists()


# ----------------------------------------------------------------------------- report failures are recorded

def test_a_method_name_with_mathtext_never_yields_a_complete_run_without_report(tmp_path):
    """``$x^$`` crashed the report after run.json said complete; now such a name is refused up front."""
    env = {"DEFOCUSBENCH_METHODS": "$x^$=methods.classical.local_stats:LocalStd", "PYTHONPATH": str(REPO)}
    out = tmp_path / "r"
    r = run_bench("run", "--methods", "all", "--datasets", "synth_detection", "--workers", "1", "--out", out, env=env)
    if out.exists():
        meta = json.loads((out / "run.json").read_text())
        assert (out / "report.html").is_file() or (meta["status"] != "complete" and r.returncode != 0)
    line = _one_line(r)
    assert "method name '$x^$'" in line and "invalid" in line


def test_a_failed_report_is_recorded_in_run_json_and_the_exit_code(tmp_path):
    from bench.harness import EXIT_PARTIAL, run

    messages = []
    path, code = run(methods="local_std", datasets=["synth_detection"], out=tmp_path / "r", workers=1,
                     baseline=tmp_path / "no-such-baseline", log=messages.append)
    meta = json.loads((path / "run.json").read_text())
    assert code == EXIT_PARTIAL and meta["exit_code"] == EXIT_PARTIAL and meta["status"] == "partial"
    assert meta["report"].startswith("failed: ") and "no-such-baseline" in meta["report"]
    assert not (path / "report.html").exists()
    assert any(m.startswith("report failed:") for m in messages)


# ----------------------------------------------------------------------------- run.json of the wrong types

@pytest.mark.parametrize("field, value", [("methods", 5), ("status", []), ("datasets", {"x": 3}), ("exit_code", "0"),
                                          ("metrics", None), ("run_id", 7)])
def test_run_json_fields_of_the_wrong_type_are_one_line(tmp_path, field, value):
    run = shutil.copytree(BASELINE, tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    meta[field] = value
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=f"field '{field}'"):
        load_run(run)
    assert any(field in w for w in load_run(run, lenient=True).warnings)
    for args in (("report", run), ("compare", BASELINE, run), ("compare", run, BASELINE)):
        assert f"field '{field}'" in _one_line(run_bench(*args)), args
    cfg = tmp_path / "nightly.yaml"
    cfg.write_text(f"baseline: {run}\nout: {tmp_path / 'nightly'}\n")
    assert f"field '{field}'" in _one_line(run_bench("nightly", "--config", cfg))


def test_report_renders_a_run_json_of_the_wrong_types_with_warnings(tmp_path):
    from bench.report import render_report

    run = shutil.copytree(BASELINE, tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    meta.update(methods=5, status=[], datasets={"synth_detection": "x"})
    (run / "run.json").write_text(json.dumps(meta))
    html = render_report(run)
    assert "field &#39;methods&#39; must be an object" in html and "local_std" in html


@pytest.mark.parametrize("case", ["folder", "under_a_file", "read_only"])
def test_report_out_that_cannot_be_written_is_one_line(tmp_path, case):
    if case == "folder":
        out = tmp_path / "dir"
        out.mkdir()
    elif case == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "report.html"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):   # root ignores mode bits: use a folder that is read-only for everyone
            ro = Path("/sys")
            if not ro.is_dir() or os.access(ro, os.W_OK) and _writable(ro):
                pytest.skip("no read-only folder available")
        out = ro / "report.html"
    line = _one_line(run_bench("report", BASELINE, "--out", out))
    assert "report" in line and "--out" in line
    assert not (BASELINE / "report.html").exists()


def _writable(folder: Path) -> bool:
    try:
        (folder / ".defocusbench-probe").touch()
    except OSError:
        return False
    (folder / ".defocusbench-probe").unlink()
    return True
