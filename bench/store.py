"""Run directories: what ``bench run`` writes and ``report`` / ``compare`` read.

Layout of ``RUN_DIR`` (assembled in ``RUN_DIR.incomplete/`` and renamed when complete, so a
directory at the final name is always a finished run; ``RUN_DIR.incomplete/jobs/`` keeps each
finished task's result, keyed by a hash of what it computed, so that rerunning the same command
after Ctrl-C, a crash or ``kill -9`` resumes instead of starting over)::

    run.json          provenance: git sha + dirty flag, machine, package versions, profile,
                      device, methods (version, params), datasets (dataset_id), metrics (spec:
                      direction, unit, version, conventions), status, exit code, seconds,
                      report (written | not requested | failed: why), and the ownership marker:
                      format, run_id and files (every path this tool writes in the folder)
    summary.parquet   method, dataset, metric, value, n, status, reason, extras (JSON),
                      higher_is_better, unit            (status: ok | n/a | failed | unavailable)
    samples.parquet   method, dataset, metric, key, value        (one row per sample x metric)
    curves.parquet    method, dataset, metric, curve, point, threshold, precision, recall
    timings.parquet   method, dataset, key, seconds, megapixels
    failures.jsonl    {"method", "dataset", "key", "stage", "error", "traceback"} per line
    previews/         index.json + small PNG thumbnails (input | target | each method); file
                      names come from :func:`file_token`, never raw names
    report.html       written by :mod:`bench.report`

Ownership.  ``bench run`` deletes or replaces nothing it cannot prove it wrote.  A folder is a
run of ours when its ``run.json`` (a regular file) has ``format`` :data:`FORMAT` and a string
``run_id``; the files it may remove are those listed in ``files`` (format 1 runs, written before
the list existed, have the fixed layout above with the previews named by ``previews/index.json``).
``--out`` may be absent, an empty folder, or a run of ours that holds nothing else; anything else
is refused in one line (:class:`~datagen.errors.OutputError`).  The work folder
``RUN_DIR.incomplete`` carries the same marker from its creation (status ``running``, its list of
files written before the files themselves), so a rerun removes exactly what a killed run left
there, and keeps ``jobs/``.  The job cache holds only JSON data (:func:`to_data` /
:func:`from_data`), never pickles, so a file planted there can at worst be ignored.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import platform
import re
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from datagen.atomic import atomic_write_bytes, fsync_dir, temp_target
from datagen.errors import OutputError, UserError

FORMAT = "defocusbench-run"
FORMAT_VERSION = 2   # 2: run.json lists the run's files; the job cache is JSON data (1: neither; pickled jobs)
JOB_FORMAT = "defocusbench-job"
RUNNING = "running"  # the status in a work folder's run.json until the run is complete
REPORT = "report.html"
#: The top-level files of a run directory (format 1 runs: these, plus the previews their index names).
RUN_FILES = ("run.json", "summary.parquet", "samples.parquet", "curves.parquet", "timings.parquet", "failures.jsonl",
             REPORT)

SUMMARY_COLUMNS = ["method", "dataset", "metric", "value", "n", "status", "reason", "extras", "higher_is_better", "unit"]
SAMPLE_COLUMNS = ["method", "dataset", "metric", "key", "value"]
CURVE_COLUMNS = ["method", "dataset", "metric", "curve", "point", "threshold", "precision", "recall"]
TIMING_COLUMNS = ["method", "dataset", "key", "seconds", "megapixels"]
_DTYPES = {"value": "float64", "n": "int64", "point": "int64", "threshold": "float64", "precision": "float64",
           "recall": "float64", "seconds": "float64", "megapixels": "float64", "higher_is_better": "bool"}

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_JOB_NAME = re.compile(r"[0-9a-f]{24}\.json")


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


def file_token(name: object) -> str:
    """``name`` (a method, dataset, sample key) as one safe file-name component.

    A plain name (letters, digits, ``._-``, not starting with a dot, at most 80 characters) is
    kept as it is; anything else (``/``, ``$``, ``:``, spaces, ``..``) is replaced by its plain
    characters plus 8 hex digits of its SHA-256, so that two names never share a file.
    """
    name = str(name)
    if _PLAIN_NAME.fullmatch(name):
        return name
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "x"
    return f"{plain}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def preview_name(dataset: str, key: str, kind: str) -> str:
    """A preview's path relative to ``previews/``: ``<dataset>/<key>__<kind>.png``, each part a
    :func:`file_token` (``kind``: ``input``, ``target`` or a method name)."""
    return f"{file_token(dataset)}/{file_token(key)}__{file_token(kind)}.png"


# ----------------------------------------------------------------------------- job results as data

_TAGS = ("$nd", "$np", "$b", "$t")


def _array_data(a: np.ndarray) -> list:
    if a.dtype.kind not in "biufc":
        raise TypeError(f"NumPy dtype {a.dtype} is not numeric")
    return [a.dtype.str, list(a.shape), base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")]


def _array(value: object) -> np.ndarray:
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], list)
            and isinstance(value[2], str)):
        raise ValueError("an array must be [dtype, shape, base64]")
    try:
        dtype = np.dtype(value[0])
    except TypeError:
        raise ValueError(f"unknown dtype {value[0]!r}") from None
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise ValueError(f"dtype {value[0]!r} is not numeric")
    shape = value[1]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"bad array shape {shape!r}")
    raw = base64.b64decode(value[2], validate=True)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def to_data(obj: object) -> object:
    """A task result as JSON-ready data: the job cache's format (read back by :func:`from_data`).

    Dicts with string keys, lists, strings, numbers, booleans and ``None`` are kept; tuples,
    bytes and numeric NumPy arrays / scalars become one-key tagged objects (``$t``, ``$b``,
    ``$nd``, ``$np``) that round-trip exactly (dtype, shape, bits).  Anything else raises
    ``TypeError``: results are data, never objects to reconstruct (no pickle).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic):
        return {"$np": _array_data(np.asarray(obj))}
    if isinstance(obj, (int, float)):
        return obj
    if isinstance(obj, np.ndarray):
        return {"$nd": _array_data(obj)}
    if isinstance(obj, bytes):
        return {"$b": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, tuple):
        return {"$t": [to_data(x) for x in obj]}
    if isinstance(obj, list):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("dict keys must be strings")
        if len(obj) == 1 and next(iter(obj)) in _TAGS:
            raise TypeError(f"a dict with the single key {next(iter(obj))!r} would read back as a tagged value")
        return {k: to_data(v) for k, v in obj.items()}
    raise TypeError(f"{type(obj).__name__} is not data (results hold dicts, lists, numbers, strings, bytes and "
                    "numeric NumPy arrays)")


def from_data(obj: object) -> object:
    """The inverse of :func:`to_data`; ``ValueError`` for a malformed tagged value."""
    if isinstance(obj, list):
        return [from_data(x) for x in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and next(iter(obj)) in _TAGS:
            ((tag, value),) = obj.items()
            if tag == "$t":
                if not isinstance(value, list):
                    raise ValueError("a tuple must be a list")
                return tuple(from_data(x) for x in value)
            if tag == "$b":
                if not isinstance(value, str):
                    raise ValueError("bytes must be base64 text")
                return base64.b64decode(value, validate=True)
            array = _array(value)
            if tag == "$np":
                if array.shape != ():
                    raise ValueError("a NumPy scalar must have shape []")
                return array[()]
            return array
        return {k: from_data(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- ownership

def _read_json(path: Path) -> object:
    """JSON read from a regular file (never through a symbolic link), or ``None``."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _marker(folder: Path) -> dict | None:
    """``folder/run.json`` when it marks a folder of ours (format :data:`FORMAT`, a string run_id)."""
    meta = _read_json(folder / "run.json")
    if isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get("run_id"), str):
        return meta
    return None


def _clean_relative(path: object) -> str | None:
    """A listed path when it is a plain relative POSIX path that stays inside its folder."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path or path.startswith("/"):
        return None
    return path if all(part not in ("", ".", "..") for part in path.split("/")) else None


def _listed_files(folder: Path, meta: dict) -> set[str] | None:
    """The paths ``run.json`` says this tool wrote in ``folder``; ``None`` when the list is malformed."""
    files = meta.get("files")
    if files is None:   # format 1: the fixed layout, previews as indexed
        files = [*RUN_FILES, "previews/index.json"]
        index = _read_json(folder / "previews" / "index.json")
        for entry in index if isinstance(index, list) else []:
            if isinstance(entry, dict):
                methods = entry.get("methods") if isinstance(entry.get("methods"), dict) else {}
                files += [f"previews/{p}" for p in (entry.get("input"), entry.get("target"), *methods.values())
                          if isinstance(p, str)]
    if not isinstance(files, list):
        return None
    clean = {_clean_relative(f) for f in files}
    return None if None in clean else clean


def _entries(folder: Path) -> tuple[set[str], set[str]]:
    """Relative POSIX paths under ``folder``: (files and anything else that is not a folder, folders)."""
    files, dirs = set(), set()
    for root, dirnames, filenames in os.walk(folder):   # symbolic links to folders are not followed
        rel = Path(root).relative_to(folder)
        for name in dirnames:
            (files if os.path.islink(os.path.join(root, name)) else dirs).add((rel / name).as_posix())
        files.update((rel / name).as_posix() for name in filenames)
    return files, dirs


def _ancestors(paths: set[str]) -> set[str]:
    """Every folder above ``paths`` (relative POSIX paths), ``a/b/c`` -> ``a``, ``a/b``."""
    return {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _shown(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _owned(folder: Path) -> tuple[list[str], list[str]] | str:
    """The files and folders to remove to empty ``folder``, every one written by this tool; or,
    when that cannot be proven, why not (part of a one-line message)."""
    meta = _marker(folder)
    listed = _listed_files(folder, meta) if meta is not None else None
    if listed is None:
        return (f"exists and is not a run directory written by bench run (no run.json of format {FORMAT!r} "
                "with a run id and its list of files)")
    files, dirs = _entries(folder)
    foreign = sorted((files - listed) | (dirs - _ancestors(listed)) | {p for p in files & listed if not _regular(folder / p)})
    if foreign:
        return f"holds files bench run did not write and will not delete ({_shown(foreign)})"
    return sorted(files), sorted(dirs, key=lambda p: -p.count("/"))


def _remove(folder: Path, files: list[str], dirs: list[str]) -> None:
    """Remove ``files``, then ``dirs`` (deepest first), then ``folder`` itself (which must then be empty)."""
    for rel in files:
        (folder / rel).unlink(missing_ok=True)
    for rel in dirs:
        (folder / rel).rmdir()
    folder.rmdir()


def _out_problem(out: Path) -> tuple[list[str], list[str]] | str:
    """What to remove from an existing ``--out`` before the new run takes its place, or why it must stay."""
    if out.is_symlink():
        return "is a symbolic link, not a run directory"
    if not out.is_dir():
        return "exists and is not a run directory"
    if not any(out.iterdir()):
        return [], []
    return _owned(out)


def _remove_our_temps(folder: Path, ours: Callable[[str], bool]) -> None:
    """Delete the temporary files that :mod:`datagen.atomic` left beside paths ``ours`` accepts
    (relative to ``folder``) when a process was killed mid-write."""
    for rel in _entries(folder)[0]:
        parent, _, name = rel.rpartition("/")
        target = temp_target(name)
        if target and ours(f"{parent}/{target}" if parent else target) and _regular(folder / rel):
            (folder / rel).unlink()


def _rmdir_empty_parents(folder: Path, paths: set[str]) -> None:
    for parent in sorted(_ancestors(paths), key=lambda p: -p.count("/")):
        try:
            (folder / parent).rmdir()
        except OSError:
            pass   # not empty (or gone): leave it


# ----------------------------------------------------------------------------- writing a run

def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for col in columns:
        if col in _DTYPES:
            df[col] = df[col].astype(_DTYPES[col]) if len(df) else pd.Series(dtype=_DTYPES[col])
    return df


def _parquet(rows: list[dict], columns: list[str]) -> bytes:
    buf = io.BytesIO()
    _frame(rows, columns).to_parquet(buf, index=False)
    return buf.getvalue()


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


@dataclass
class RunWriter:
    """Collects a run's rows and files and writes the run directory atomically.

    Construction checks ``out`` and its work folder ``<out>.incomplete`` and refuses (one-line
    :class:`OutputError`) whatever this tool cannot prove it wrote (module docstring); nothing
    is created until a task result is saved or :meth:`finish` runs.  :meth:`finish` writes the
    run into the work folder, :meth:`amend` corrects its ``run.json`` (e.g. the report failed),
    :meth:`publish` renames it to ``out``.  The caller holds :func:`datagen.lock.output_lock`
    on ``out`` throughout.
    """

    out: Path
    meta: dict
    summary: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)   # other files (previews): relative path -> bytes

    def __post_init__(self):
        self.out = Path(self.out).absolute()
        self.work = self.out.with_name(self.out.name + ".incomplete")
        if os.path.lexists(self.out):
            problem = _out_problem(self.out)
            if isinstance(problem, str):
                raise OutputError(f"--out {self.out} {problem}; choose another --out")
        self._opened = False
        self._take_over_work()

    def _take_over_work(self) -> None:
        """Accept an existing work folder only when it is ours; drop what a killed :meth:`finish` left
        (the files its run.json lists), keep ``jobs/`` for resuming."""
        work = self.work
        if not os.path.lexists(work):
            return
        if work.is_symlink() or not work.is_dir():
            raise OutputError(f"--out {self.out}: {work} exists and is not a work folder of bench run; "
                              "move it away or choose another --out")
        if not any(work.iterdir()):
            return
        meta = _marker(work)
        listed = _listed_files(work, meta) if meta is not None else None
        if listed is None:
            raise OutputError(f"--out {self.out}: {work} exists and is not a work folder of bench run (no run.json "
                              f"of format {FORMAT!r} with a run id and its list of files); move it away or choose "
                              "another --out")
        files = _entries(work)[0]
        links = sorted(rel for rel in files if (work / rel).is_symlink())
        if links:   # this tool never makes links; writing or deleting through one could reach anywhere
            raise OutputError(f"--out {self.out}: {work} holds symbolic links bench run did not make ({_shown(links)}); "
                              "move it away or choose another --out")
        for rel in (listed & files) - {"run.json"}:
            if _regular(work / rel):
                (work / rel).unlink()
        _remove_our_temps(work, lambda rel: rel in listed or rel == "run.json")
        _rmdir_empty_parents(work, listed)

    def _open_work(self) -> None:
        """Create the work folder and its marker (once)."""
        if self._opened:
            return
        try:
            (self.work / "jobs").mkdir(parents=True, exist_ok=True)
            self._mark([])
        except OSError as err:
            raise OutputError(f"cannot create run directory {self.work} ({err.strerror or err}); choose another --out") from None
        self._opened = True

    def _mark(self, files: list[str]) -> None:
        atomic_write_bytes(self.work / "run.json", _json_bytes(dict(self.meta, status=RUNNING, files=files)))

    def cached_result(self, key: str) -> object | None:
        """The result of task ``key`` saved by an interrupted run of the same plan, as data
        (:func:`from_data`), or ``None`` when there is none or it is not a job file of ours.
        The caller checks the structure before using it."""
        if not _JOB_NAME.fullmatch(f"{key}.json"):
            return None
        data = _read_json(self.work / "jobs" / f"{key}.json")
        if not (isinstance(data, dict) and data.get("format") == JOB_FORMAT and data.get("key") == key):
            return None
        try:
            return from_data(data.get("result"))
        except (ValueError, TypeError, RecursionError):
            return None

    def save_result(self, key: str, result: dict) -> None:
        """Keep a finished task's result so that a rerun after Ctrl-C or a crash resumes from it.
        ``TypeError`` when the result is not data (:func:`to_data`)."""
        if not _JOB_NAME.fullmatch(f"{key}.json"):
            raise ValueError(f"job key {key!r} is not 24 hex digits")
        payload = {"format": JOB_FORMAT, "key": key, "result": to_data(result)}
        self._open_work()
        atomic_write_bytes(self.work / "jobs" / f"{key}.json", json.dumps(payload).encode())

    def finish(self, *, status: str, exit_code: int, seconds: float, report: str) -> Path:
        """Write the run into the work folder (``report``: ``written``, ``not requested``, ...); returns it."""
        files = {"summary.parquet": _parquet(self.summary, SUMMARY_COLUMNS),
                 "samples.parquet": _parquet(self.samples, SAMPLE_COLUMNS),
                 "curves.parquet": _parquet(self.curves, CURVE_COLUMNS),
                 "timings.parquet": _parquet(self.timings, TIMING_COLUMNS),
                 "failures.jsonl": "".join(json.dumps(row, sort_keys=True) + "\n" for row in self.failures).encode(),
                 **self.files}
        names = sorted({*files, "run.json", REPORT})
        self.meta = dict(self.meta, status=status, exit_code=exit_code, seconds=round(seconds, 3), report=report,
                         files=names)
        self._open_work()
        self._mark(names)   # from here on a kill leaves only listed files, which the next run removes
        for rel, data in files.items():
            (self.work / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.work / rel, data)
        self.amend()
        return self.work

    def amend(self, **fields) -> None:
        """Rewrite ``run.json`` in the work folder with ``fields`` changed."""
        self.meta.update(fields)
        atomic_write_bytes(self.work / "run.json", _json_bytes(self.meta))

    def publish(self) -> Path:
        """Rename the finished work folder to ``out``, replacing a run of ours there; returns ``out``."""
        jobs = self.work / "jobs"
        if jobs.is_dir() and not jobs.is_symlink():
            for path in jobs.iterdir():
                if _JOB_NAME.fullmatch(path.name) and _regular(path):
                    path.unlink()
            _remove_our_temps(jobs, _JOB_NAME.fullmatch)
            try:
                jobs.rmdir()
            except OSError:
                pass   # something we did not write is in there: it moves along, untouched
        if os.path.lexists(self.out):   # checked at the start; checked again, it may have changed since
            problem = _out_problem(self.out)
            if isinstance(problem, str):
                raise OutputError(f"--out {self.out} {problem}; the new run is complete in {self.work}")
            _remove(self.out, *problem)
        os.replace(self.work, self.out)
        fsync_dir(self.out.parent)
        return self.out


# ----------------------------------------------------------------------------- reading a run

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


#: ``run.json`` fields that readers use, with their JSON types (any may be absent).
META_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "run_id": str, "created": str, "profile": str, "device": str,
    "status": str, "exit_code": int, "seconds": (int, float), "report": str, "git": dict, "machine": dict,
    "versions": dict, "methods": dict, "datasets": dict, "metrics": dict, "files": list,
    "comparison_rule": dict}
#: Fields that map a name to a record (an object).
META_RECORDS = ("methods", "datasets", "metrics")


def _json_type(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (type(None), "null"), ((int, float), "a number"), (str, "a string"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def meta_problems(meta: dict) -> dict[str, str]:
    """``run.json`` fields of the wrong type: field -> one-line description."""
    wanted = {str: "a string", int: "a whole number", (int, float): "a number", dict: "an object", list: "a list"}
    out = {}
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        if key not in meta:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            out[key] = f"field {key!r} must be {wanted[kind]}, not {_json_type(value)}"
        elif key in META_RECORDS:
            bad = [name for name, record in value.items() if not isinstance(record, dict)]
            if bad:
                out[key] = f"field {key!r}: entry {bad[0]!r} must be an object, not {_json_type(value[bad[0]])}"
    return out


def load_run(run_dir: str | os.PathLike, *, role: str = "run", lenient: bool = False) -> Run:
    """Read a run directory: the one reader for ``report``, ``compare`` and ``nightly``.

    Strict (default): a missing folder, ``run.json`` or ``summary.parquet``, an unreadable file,
    a missing column or a ``run.json`` field of the wrong type (:data:`META_TYPES`) is a one-line
    :class:`UserError` naming the path.  ``lenient=True`` (the report) turns everything but a
    missing folder into ``Run.warnings``, empty tables and dropped fields.  Both formats (1, 2) read.
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
    except (OSError, ValueError, RecursionError) as err:
        problem(f"{meta_path} is {'missing' if not meta_path.exists() else f'unreadable ({err})'}")
    for key, message in meta_problems(meta).items():
        problem(f"{meta_path}: {message}")
        meta.pop(key)

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
