"""Run directories: what ``bench run`` writes and ``report`` / ``compare`` read.

Layout of ``RUN_DIR`` (written as ``RUN_DIR.incomplete/`` and renamed when complete, so a
directory at the final name is always a finished run; ``RUN_DIR.incomplete/jobs/`` keeps each
finished task's result, keyed by a hash of what it computed, so that rerunning the same command
after Ctrl-C or a crash resumes instead of starting over)::

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
import pickle
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from datagen.atomic import atomic_write_bytes
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
        if self.work.exists():   # an interrupted run: keep its finished task results (jobs/), drop the rest
            for child in self.work.iterdir():
                if child.name != "jobs":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        try:
            (self.work / "previews").mkdir(parents=True, exist_ok=True)
            (self.work / "jobs").mkdir(exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create run directory {self.work} ({err.strerror or err}); choose another --out") from None

    def cached_result(self, key: str) -> dict | None:
        """The result of task ``key`` saved by an interrupted run of the same plan, if any."""
        path = self.work / "jobs" / f"{key}.pkl"
        try:
            return pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            return None

    def save_result(self, key: str, result: dict) -> None:
        """Keep a finished task's result so that a rerun after Ctrl-C or a crash resumes from it."""
        atomic_write_bytes(self.work / "jobs" / f"{key}.pkl", pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))

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
        shutil.rmtree(w / "jobs", ignore_errors=True)
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(w, self.out)
        return self.out


@dataclass
class Run:
    """A run directory read back (:func:`load_run`)."""

    dir: Path
    meta: dict
    summary: pd.DataFrame
    samples: pd.DataFrame | None          # None when samples.parquet is absent
    curves: pd.DataFrame
    timings: pd.DataFrame
    failures: list[dict]
    previews: list[dict]
    warnings: list[str] = field(default_factory=list)   # lenient mode: what could not be read


def load_run(run_dir: str | os.PathLike, *, role: str = "run", lenient: bool = False) -> Run:
    """Read a run directory: the one reader for ``report``, ``compare`` and ``nightly``.

    Strict (default): a missing folder, ``run.json`` or ``summary.parquet``, an unreadable file
    or a missing column is a one-line :class:`UserError` naming the path.  ``lenient=True``
    (the report) turns everything but a missing folder into ``Run.warnings`` and empty tables.
    """
    path = Path(run_dir)
    if not path.is_dir():
        hint = " (an interrupted run: rerun bench run)" if path.with_name(path.name + ".incomplete").exists() else ""
        raise UserError(f"{role} {path} is not a run directory{hint}; pass the folder bench run wrote")
    warnings: list[str] = []

    def problem(message: str) -> None:
        if not lenient:
            raise UserError(f"{message}; pass a run directory written by bench run")
        warnings.append(message)

    meta: dict = {}
    meta_path = path / "run.json"
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT:
            problem(f"{meta_path} is not a DefocusBench run (format {FORMAT!r} expected)")
            meta = meta if isinstance(meta, dict) else {}
    except (OSError, ValueError) as err:
        problem(f"{meta_path} is {'missing' if not meta_path.exists() else f'unreadable ({err})'}")

    def table(name: str, columns: list[str], *, required: bool) -> pd.DataFrame | None:
        file = path / f"{name}.parquet"
        if not file.exists():
            if required:
                problem(f"{file} is missing")
            elif lenient:
                warnings.append(f"{file.name} is missing")
            return None
        try:
            df = pd.read_parquet(file)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            problem(f"{file} is unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
            return None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            problem(f"{file} lacks column(s) {', '.join(missing)}")
            for col in missing:
                df[col] = pd.Series([None] * len(df), dtype=object)
        return df

    summary = table("summary", SUMMARY_COLUMNS, required=True)
    samples = table("samples", SAMPLE_COLUMNS, required=False)
    curves = table("curves", CURVE_COLUMNS, required=False)
    timings = table("timings", TIMING_COLUMNS, required=False)
    failures = []
    if (path / "failures.jsonl").is_file():
        for number, line in enumerate((path / "failures.jsonl").read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                warnings.append(f"failures.jsonl line {number} is not valid JSON")
                continue
            if isinstance(item, dict):
                failures.append(item)
    previews = []
    index = path / "previews" / "index.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text())
            previews = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
        except (OSError, ValueError) as err:
            warnings.append(f"could not read previews/index.json: {err}")
    return Run(path, meta, summary if summary is not None else _frame([], SUMMARY_COLUMNS), samples,
               curves if curves is not None else _frame([], CURVE_COLUMNS),
               timings if timings is not None else _frame([], TIMING_COLUMNS), failures, previews, warnings)
