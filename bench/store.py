"""Run directories: what ``bench run`` writes and ``report`` / ``compare`` read.

Layout of ``RUN_DIR`` (written as ``RUN_DIR.incomplete/`` and renamed when complete, so a
directory at the final name is always a finished run)::

    run.json          provenance: git sha + dirty flag, machine, package versions, profile,
                      device, methods (version, params), datasets (dataset_id), metrics (spec:
                      direction, unit, version, conventions), status, exit code, seconds
    summary.parquet   method, dataset, metric, value, n, status, reason, extras (JSON),
                      higher_is_better, unit            (status: ok | n/a | failed | unavailable)
    samples.parquet   method, dataset, metric, key, value        (one row per sample x metric)
    curves.parquet    method, dataset, metric, curve, point, threshold, precision, recall
    timings.parquet   method, dataset, key, seconds, megapixels
    failures.jsonl    {"method", "dataset", "key", "stage", "error", "traceback"} per line
    previews/         index.json + small PNG thumbnails (input | target | each method)
    report.html       written by :mod:`bench.report`
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from datagen.errors import UserError

FORMAT = "defocusbench-run"
FORMAT_VERSION = 1

SUMMARY_COLUMNS = ["method", "dataset", "metric", "value", "n", "status", "reason", "extras", "higher_is_better", "unit"]
SAMPLE_COLUMNS = ["method", "dataset", "metric", "key", "value"]
CURVE_COLUMNS = ["method", "dataset", "metric", "curve", "point", "threshold", "precision", "recall"]
TIMING_COLUMNS = ["method", "dataset", "key", "seconds", "megapixels"]
_DTYPES = {"value": "float64", "n": "int64", "point": "int64", "threshold": "float64", "precision": "float64",
           "recall": "float64", "seconds": "float64", "megapixels": "float64", "higher_is_better": "bool"}


def git_info(repo: Path | None = None) -> dict:
    """``{"sha": str | None, "dirty": bool}`` of the checkout the package runs from."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        if sha.returncode:
            return {"sha": None, "dirty": False}
        st = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10, check=False)
        return {"sha": sha.stdout.strip(), "dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": False}


def machine_info() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version()}


def new_run_id() -> str:
    sha = (git_info()["sha"] or "nogit")[:8]
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{sha}"


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for col in columns:
        if col in _DTYPES:
            df[col] = df[col].astype(_DTYPES[col]) if len(df) else pd.Series(dtype=_DTYPES[col])
    return df


@dataclass
class RunWriter:
    """Collects a run's rows and writes the run directory atomically (``.incomplete`` then rename)."""

    out: Path
    meta: dict
    summary: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out).absolute()
        if self.out.exists() and not (self.out / "run.json").is_file():
            raise UserError(f"--out {self.out} exists and is not a run directory; choose another --out")
        self.work = self.out.with_name(self.out.name + ".incomplete")
        if self.work.exists():
            shutil.rmtree(self.work)
        try:
            (self.work / "previews").mkdir(parents=True)
        except OSError as err:
            raise UserError(f"cannot create run directory {self.work} ({err.strerror or err}); choose another --out") from None

    @property
    def previews(self) -> Path:
        return self.work / "previews"

    def finish(self, *, status: str, exit_code: int, seconds: float) -> Path:
        w = self.work
        _frame(self.summary, SUMMARY_COLUMNS).to_parquet(w / "summary.parquet", index=False)
        _frame(self.samples, SAMPLE_COLUMNS).to_parquet(w / "samples.parquet", index=False)
        _frame(self.curves, CURVE_COLUMNS).to_parquet(w / "curves.parquet", index=False)
        _frame(self.timings, TIMING_COLUMNS).to_parquet(w / "timings.parquet", index=False)
        with open(w / "failures.jsonl", "w") as f:
            f.writelines(json.dumps(row, sort_keys=True) + "\n" for row in self.failures)
        meta = dict(self.meta, status=status, exit_code=exit_code, seconds=round(seconds, 3))
        (w / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(w, self.out)
        return self.out


def load_run(run_dir: str | os.PathLike) -> dict:
    """Read a run directory: ``{"dir", "meta", "summary", "samples", "curves", "timings", "failures"}``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        hint = " (an interrupted run: rerun bench run)" if run_dir.with_name(run_dir.name + ".incomplete").exists() else ""
        raise UserError(f"{run_dir} is not a run directory{hint}; pass the folder bench run wrote")
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{run_dir}: run.json is missing or unreadable ({err}); pass a folder written by bench run") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{run_dir}: run.json is not a DefocusBench run (format {FORMAT!r} expected)")
    out = {"dir": run_dir, "meta": meta}
    for name, cols in (("summary", SUMMARY_COLUMNS), ("samples", SAMPLE_COLUMNS), ("curves", CURVE_COLUMNS),
                       ("timings", TIMING_COLUMNS)):
        path = run_dir / f"{name}.parquet"
        try:
            out[name] = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for missing/corrupt files
            if name == "summary":
                raise UserError(f"{path}: missing or unreadable ({str(err).splitlines()[0] if str(err) else err}); "
                                "rerun bench run") from None
            out[name] = _frame([], cols)
    failures = []
    if (run_dir / "failures.jsonl").is_file():
        for line in (run_dir / "failures.jsonl").read_text().splitlines():
            if line.strip():
                failures.append(json.loads(line))
    out["failures"] = failures
    return out
