"""``bench run``: plan method x dataset x metric, predict and score on Dask, store, report.

Plan
    Every selected method meets every selected dataset.  A pair fits when the method's output
    suits the dataset's task (:data:`FITS`); pairs that do not fit, and metrics that cannot
    read a method's output (a sharpness score has no radius), are recorded as ``n/a`` with
    the reason; metrics whose weights are missing as ``unavailable``.
Execute
    One Dask task per (method, dataset, chunk of samples) (:func:`run_job`): load, predict,
    time, compute each metric's per-sample state, render preview thumbnails.  A crash is
    recorded with its traceback (stage ``load``, ``predict`` or ``score``) and the run goes on
    (``--keep-going``, default) or stops (``--fail-fast``).  Local runs use a
    :func:`datagen.runner.connect` cluster of single-threaded worker processes, one per core;
    ``scheduler=`` runs on an existing cluster.  Each finished task's result is saved as data
    in the work folder (:meth:`RunWriter.save_result`); a rerun reuses the results whose
    structure fits its task and recomputes the others.
Weights
    The driver resolves each selected method's weights once (:func:`bench.weights.resolve_method_weights`:
    ``--weights`` > imported > shipped) and passes the file to the method in every task
    (``Job.weights``; the task checks the file still has the resolved sha256).  ``run.json``
    records ``methods.<name>.weights = {weight: {origin, path, sha256, description}}`` and the
    job key includes the sha256, so a resumed run never reuses a task computed with other
    weights.  A method whose weights cannot be found fails (stage ``weights``, one line) and the
    rest of the run goes on.
Reduce and store
    The driver reduces states per (method, dataset, metric) (:meth:`Metric.reduce`) and
    writes the run directory (:mod:`bench.store`) while holding the lock of ``--out``
    (:func:`datagen.lock.output_lock`).  A pair with any failed sample, or whose reduction
    fails, is reported as ``failed`` (never a mean over the survivors).  The report is written
    before the run directory takes its final name; when it fails, ``run.json`` says so
    (``report: failed: ...``, status ``partial``) and the exit code is not 0.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from datagen.errors import UserError, describe_validation_error, unknown_name

from . import datasets as ds_mod
from .metrics import PredInfo, create_metric, get_metric
from .store import (
    FORMAT,
    FORMAT_VERSION,
    TIMING_COLUMNS,
    RunWriter,
    git_info,
    machine_info,
    new_run_id,
    preview_name,
)

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``bench run``; ``str()`` says where the finished tasks are and how to resume."""


#: Which method outputs each dataset task scores.
FITS = {"detection": ("blur_map",), "defocus_map": ("blur_map",), "patch_blur": ("blur_map",),
        "enhancement": ("enhanced_image", "restored_image"), "restoration": ("restored_image",),
        "nr_enhancement": ("enhanced_image", "restored_image")}
#: Metrics run by default on each task.
DEFAULT_METRICS = {
    "detection": ("accuracy_alpha", "accuracy_oracle", "pr_hifst"),
    "defocus_map": ("mae_radius", "mae_relative", "mae_dmenet"),
    "patch_blur": ("mae_sigma", "level_accuracy"),
    "enhancement": ("psnr", "ssim", "psnr_y", "ssim_y", "niqe", "brisque", "piqe"),
    "restoration": ("psnr", "ssim", "psnr_y", "ssim_y", "niqe", "brisque", "piqe"),
    "nr_enhancement": ("niqe", "brisque", "piqe"),     # photos without a reference (Galetto & Deng Table 6)
}
PROFILE_DATASETS = {"quick": ("synth_detection", "synth_defocus", "synth_enhance"),
                    "full": ("synth_detection", "synth_defocus", "synth_enhance", "cuhk", "rtf")}
PREVIEWS_PER_DATASET = 3
_VERSIONED = ("defocus-bench", "numpy", "scipy", "opencv-python", "scikit-image", "torch", "pyiqa", "dask",
              "distributed", "pandas", "pyarrow", "h5py", "pillow")


def select_methods(spec: str) -> list[str]:
    """Method names for ``--methods`` (all / names / globs); one-line :class:`UserError` otherwise."""
    from methods.registry import select_methods as select
    try:
        return select(spec, option="--methods")
    except KeyError as err:
        raise UserError(f"{err.args[0]}; see bench list methods") from None


def select_metrics(spec: str | None) -> list[str] | None:
    """Metric names for ``--metrics``; ``None`` = each dataset task's defaults."""
    from .metrics import select_metrics as select
    if not spec or spec == "all":
        return None
    try:
        return select(spec, option="--metrics")
    except KeyError as err:
        raise UserError(f"{err.args[0]}; see bench list metrics") from None


def parse_roots(items: list[str] | dict | None) -> dict[str, str]:
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    roots = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--root {item!r}: expected NAME=DIR, e.g. --root cuhk=/data/CUHK")
        roots[name] = path
    return roots


@dataclass
class Pair:
    method: str
    dataset: str
    metrics: list[str]
    na: dict[str, str] = field(default_factory=dict)           # metric -> why n/a
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why unavailable
    reason: str = ""                                           # whole pair n/a
    info: PredInfo = field(default_factory=PredInfo)           # how to read the method's output


@dataclass
class Job:
    method: str
    params: dict
    device: str
    dataset: object
    dataset_name: str
    keys: list[str]
    metrics: list[str]
    preview_keys: list[str]
    info: PredInfo
    weights: str | None = None                                  # path given to the method (weights=)
    weights_sha256: dict[str, str] = field(default_factory=dict)  # weight name -> sha256 the driver resolved
    metric_weights_sha256: dict[str, str] = field(default_factory=dict)  # the metrics' weights in use -> sha256


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:500]


def _check_prediction(pred, sample, provides: str) -> np.ndarray:
    pred = np.asarray(pred)
    h, w = sample.image.shape[:2]
    want = (h, w) if provides == "blur_map" else (h, w, 3)
    if pred.shape != want:
        raise ValueError(f"prediction has shape {pred.shape}, expected {want}")
    if not np.isfinite(pred).all():
        raise ValueError("prediction has NaN or infinite values")
    return pred.astype(np.float32, copy=False)


def run_job(job: Job) -> dict:
    """One Dask task: predict and score ``job.keys``; never raises for method/data errors."""
    from methods import create_method

    from . import previews

    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    out = {"method": job.method, "dataset": job.dataset_name, "keys": list(job.keys),
           "states": {m: {} for m in job.metrics}, "timings": [], "failures": [], "previews": {}}

    def fail(key, stage, err):
        out["failures"].append({"method": job.method, "dataset": job.dataset_name, "key": key, "stage": stage,
                                "error": _one_line(err), "traceback": traceback.format_exc()})

    try:
        if job.weights is not None:
            _check_weights(job)
        method = create_method(job.method, job.params, device=job.device, weights=job.weights)
    except Exception as err:  # noqa: BLE001 - a broken method is data for the report
        for key in job.keys:
            fail(key, "predict", err)
        return out
    # model-based metrics (no-reference IQA networks) run on the run's --device; the others are numpy
    metrics = {name: create_metric(name, device=job.device) if get_metric(name).spec.task == "nr_iqa"
               else create_metric(name) for name in job.metrics}
    for key in job.keys:
        try:
            sample = job.dataset.load(key)
        except Exception as err:  # noqa: BLE001
            fail(key, "load", err)
            continue
        try:
            t0 = time.perf_counter()
            pred = method.predict(sample.image)
            seconds = time.perf_counter() - t0
            pred = _check_prediction(pred, sample, job.info.provides)
        except Exception as err:  # noqa: BLE001
            fail(key, "predict", err)
            continue
        h, w = sample.image.shape[:2]
        out["timings"].append({"method": job.method, "dataset": job.dataset_name, "key": key,
                               "seconds": seconds, "megapixels": h * w / 1e6})
        for name, metric in metrics.items():
            try:
                out["states"][name][key] = metric.per_sample(pred, sample, job.info)
            except Exception as err:  # noqa: BLE001
                fail(key, "score", err)
        if key in job.preview_keys:
            out["previews"][key] = {"input": previews.image_png(sample.image), "target": previews.target_png(sample.targets),
                                    "output": previews.output_png(pred)}
    return out


def _check_weights(job: Job) -> None:
    """The weights file (or source folder) still has the sha256 the driver resolved (recorded in
    run.json and the job key)."""
    from datagen.safe_read import read_regular_file

    from .weights import MAX_METHOD_WEIGHT_BYTES, weights_digest
    want = next(iter(job.weights_sha256.values()), None)
    if Path(job.weights).is_dir() and job.weights_sha256:   # a source folder (e.g. the authors' release)
        got = weights_digest(next(iter(job.weights_sha256)), job.weights)
    else:
        got = hashlib.sha256(read_regular_file(job.weights, limit=MAX_METHOD_WEIGHT_BYTES, what="weight files")).hexdigest()
    if want is not None and got != want:
        raise RuntimeError(f"weights file {job.weights} changed during the run (sha256 {want[:12]} -> {got[:12]})")


def parse_weights(items: list[str] | dict | None, methods: list[str]) -> dict[str, str]:
    """``--weights [NAME=]PATH`` items -> ``{weight name: path}``.  A bare ``PATH`` stands for the one
    weight the selected ``methods`` use (e.g. galetto2022, shared by galetto2022_um / _sdof)."""
    from methods import get_method
    if isinstance(items, dict):
        items = [f"{k}={v}" for k, v in items.items()]
    if not items:
        return {}
    used: dict[str, list[str]] = {}
    for m in methods:
        for w in get_method(m).WEIGHTS or {}:
            used.setdefault(w, []).append(m)
    out = {}
    for item in map(str, items):
        name, sep, path = item.partition("=")
        if not (sep and path and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name)) or Path(item).exists():
            name, path = "", item             # a bare PATH
        if not name:
            if not used:
                raise UserError(f"--weights {item}: no selected method uses weights")
            if len(used) > 1:
                raise UserError(f"--weights {item}: the selected methods use the weights {', '.join(sorted(used))}; "
                                "give NAME=PATH")
            name = next(iter(used))
        if name not in used:
            raise UserError(f"--weights {item}: no selected method uses weights {name!r} "
                            f"(they use: {', '.join(sorted(used)) or 'none'})")
        out[name] = path
    return out


def _wanted_metrics(task: str, metric_names: list[str] | None) -> list[str]:
    """The task's default metrics, or the selected ones that score this task."""
    if metric_names is None:
        return list(DEFAULT_METRICS[task])
    wanted = [m for m in DEFAULT_METRICS[task] if m in metric_names]
    return wanted + [m for m in metric_names if m not in wanted and get_metric(m).spec.task == task]


def plan(methods: list[str], datasets: dict[str, object], metric_names: list[str] | None) -> list[Pair]:
    from methods import get_method
    pairs = []
    metric_objs = {}
    for mname in methods:
        cls = get_method(mname)
        info = PredInfo(provides=cls.PROVIDES, units=cls.UNITS, higher=cls.HIGHER)
        for dname, dset in datasets.items():
            task = dset.TASK
            wanted = _wanted_metrics(task, metric_names)
            pair = Pair(mname, dname, [], info=info)
            if cls.PROVIDES not in FITS[task]:
                pair.reason = f"{mname} provides {cls.PROVIDES}; {dname} ({task}) scores {' / '.join(FITS[task])}"
                pair.na = dict.fromkeys(wanted, pair.reason)
                pairs.append(pair)
                continue
            for m in wanted:
                metric = metric_objs.setdefault(m, create_metric(m))
                why = metric.applicable(info)
                missing = [t for t in metric.spec.needs if t not in dset.TARGETS]
                if missing:
                    why = f"{dname} has no {', '.join(missing)}"
                if why:
                    pair.na[m] = why
                    continue
                gone = metric.unavailable()
                if gone:
                    pair.unavailable[m] = gone
                    continue
                pair.metrics.append(m)
            pairs.append(pair)
    return pairs


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in _VERSIONED:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _chunks(keys: list[str], workers: int) -> list[list[str]]:
    n = max(1, math.ceil(len(keys) / max(1, 2 * workers)))
    return [keys[i:i + n] for i in range(0, len(keys), n)]


def _metric_weights(metrics: dict[str, dict]) -> dict[str, str]:
    """Record in ``metrics`` (run.json's) which file each metric weight comes from
    (``weights_used: {name: {origin, path, sha256}}``, or ``{error}`` when it cannot be used) and
    return ``{weight name: sha256}`` of the usable ones (for the job key)."""
    from .weights import WeightsUnusable, resolve_weights

    shas: dict[str, str] = {}
    for info in metrics.values():
        used = {}
        for w in info.get("weights", []):
            try:
                rec = resolve_weights(w)
            except WeightsUnusable as err:
                used[w] = {"error": str(err)}
                continue
            used[w], shas[w] = rec.record(), rec.sha256
        if used:
            info["weights_used"] = used
    return shas


def metric_spec_dict(name: str) -> dict:
    """A metric's spec as JSON-ready data (run.json, ``bench list metrics``)."""
    d = asdict(get_metric(name).spec)
    d["needs"], d["accepts"], d["weights"] = list(d["needs"]), list(d["accepts"]), list(d["weights"])
    return d


def run(*, methods: str = "all", datasets: list[str] | None = None, metrics: str | None = None, profile: str = "quick",
        roots: dict[str, str] | None = None, out: str | os.PathLike | None = None, device: str = "cpu",
        fail_fast: bool = False, scheduler: str | None = None, workers: int | None = None, report: bool = True,
        baseline: str | os.PathLike | None = None, params: dict[str, dict] | None = None,
        weights: list[str] | dict[str, str] | None = None,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> tuple[Path, int]:
    """Run the benchmark; returns ``(run directory, exit code)``.  Raises :class:`UserError` for bad input
    (also when ``out`` is in use by another run, or holds anything this tool did not write).

    ``baseline``: a run directory whose comparison the report includes (``bench nightly``).
    ``weights``: ``--weights [NAME=]PATH`` items (or ``{name: path}``), the user's files for method
    weights; the others resolve to the imported or shipped file (:func:`bench.weights.resolve_weights`).
    A method whose weights cannot be found fails (one line, recorded like other failures) and the
    run goes on.  ``run.json`` records each method's ``weights: {name: {origin, path, sha256}}``
    (plus ``card``, the model card of exactly that file, when there is one) and each metric's
    ``weights_used`` (NIQE, BRISQUE).
    """
    from datagen.errors import writable_dir
    from datagen.lock import output_lock
    from datagen.runner import check_workers
    from methods import get_method

    t0 = time.perf_counter()
    if profile not in PROFILE_DATASETS:
        raise UserError(f"--profile {profile!r} is unknown; choose quick or full")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r} is unknown; choose cpu or cuda")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible here; use --device cpu")
    n_workers = check_workers(workers)
    method_names = select_methods(methods)
    metric_names = select_metrics(metrics)
    roots = dict(roots or {})
    names = list(datasets) if datasets else [d for d in PROFILE_DATASETS[profile] if d not in ds_mod.NEEDS_ROOT or d in roots]
    for name in roots:
        if name not in names:
            if name not in ds_mod.DATASETS:
                raise UserError(unknown_name("dataset", name, ds_mod.DATASETS) + " (in --root)")
            names.append(name)
    opened = {}
    for name in names:
        opened[name] = ds_mod.open_dataset(name, root=roots.get(name), profile=profile)
        note = getattr(opened[name], "check_polarity", lambda: None)()
        if note:
            log(f"note: {note}")
    params = params or {}
    user_weights = parse_weights(weights, method_names)
    method_info, method_weights, weight_errors = {}, {}, {}
    for m in method_names:
        cls = get_method(m)
        try:
            p = cls.Params.model_validate(params.get(m, {}))
        except ValidationError as err:
            raise UserError(f"--set for {m}: {describe_validation_error(err)}") from None
        method_info[m] = dict(cls.info(), params=p.model_dump(mode="json"))
        method_weights[m], weight_errors[m], method_info[m]["weights"] = _resolve_weights(m, cls, user_weights)
        if weight_errors[m]:
            log(f"note: {m}: {weight_errors[m]}")
    pairs = plan(method_names, opened, metric_names)
    used_metrics = sorted({m for p in pairs for m in (*p.metrics, *p.na, *p.unavailable)})
    run_id = new_run_id()
    out = Path(out) if out else Path("reports") / "runs" / run_id
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "profile": profile, "device": device,
            "git": git_info(), "machine": machine_info(), "versions": _versions(), "methods": method_info,
            "datasets": {n: {"dataset_id": d.dataset_id, "version": d.VERSION, "task": d.TASK, "n": len(d.keys()),
                             "description": getattr(d, "description", d.DESCRIPTION)} for n, d in opened.items()},
            "metrics": {m: metric_spec_dict(m) for m in used_metrics}}
    metric_shas = _metric_weights(meta["metrics"])
    writable_dir(out.absolute().parent, hint="choose another --out")   # the lock file lives beside --out
    with output_lock(out):
        writer = RunWriter(out, meta)
        for p in pairs:
            for m, why in p.na.items():
                _summary_row(writer, p.method, p.dataset, m, "n/a", why)
            for m, why in p.unavailable.items():
                _summary_row(writer, p.method, p.dataset, m, "unavailable", why)
        runnable = [p for p in pairs if not p.reason]
        jobs, unresolved = [], []
        for p in runnable:
            if weight_errors[p.method]:
                unresolved.append(_weights_failure(p, weight_errors[p.method]))
                continue
            dset = opened[p.dataset]
            keys = dset.keys()
            resolved = method_weights[p.method]
            path = str(next(iter(resolved.values())).path) if resolved else None
            shas = {w: r.sha256 for w, r in resolved.items()}
            for chunk in _chunks(keys, n_workers):
                jobs.append(Job(p.method, method_info[p.method]["params"], device, dset, p.dataset, chunk, p.metrics,
                                [k for k in chunk if k in keys[:PREVIEWS_PER_DATASET]], p.info,
                                weights=path, weights_sha256=shas,
                                metric_weights_sha256={w: metric_shas[w] for m in p.metrics
                                                       for w in get_metric(m).spec.weights if w in metric_shas}))
        if not jobs and unresolved:
            exit_code = _reduce(writer, runnable, opened, unresolved)
        elif not jobs:
            log("nothing to run: no method fits the selected datasets")
            exit_code = EXIT_NOTHING
        else:
            header = f"bench run {run_id}: {len(method_names)} method(s) x {len(opened)} dataset(s), {len(jobs)} task(s) -> {out}"
            try:
                results = _execute(jobs, writer, scheduler=scheduler, workers=n_workers, fail_fast=fail_fast, log=log,
                                   header=header)
            except KeyboardInterrupt:
                kept = f"finished tasks are kept in {writer.work}; " if writer.work.is_dir() else ""
                raise RunInterrupted(f"{kept}rerun with --out {out} to resume") from None
            exit_code = _reduce(writer, runnable, opened, results + unresolved)
        return _store(writer, exit_code, report=report, baseline=baseline, t0=t0, log=log)


def _resolve_weights(method: str, cls, user: dict[str, str]) -> tuple[dict, str, dict]:
    """``(resolved, error, run.json record)`` of ``method``'s weights: ``{}``, ``""``, ``{}`` for a
    method without weights; on failure the one-line error, and the record says it per weight."""
    from .weights import card_for, resolve_method_weights
    try:
        resolved = resolve_method_weights(method, user)
    except UserError as err:
        msg = _one_line(err)
        return {}, msg, {w: {"origin": None, "path": None, "sha256": None, "error": msg} for w in cls.WEIGHTS or {}}
    records = {}
    for w, r in resolved.items():
        records[w] = dict(r.record(), description=str(cls.WEIGHTS[w]))
        card = card_for(r)
        if card is not None:    # the report renders it (training curve, confusion matrix)
            records[w]["card"] = card
    return resolved, "", records


def _weights_failure(pair: Pair, error: str) -> dict:
    """A task result standing for a (method, dataset) pair that did not run: its weights are missing."""
    return {"method": pair.method, "dataset": pair.dataset, "keys": [], "states": {}, "timings": [], "previews": {},
            "failures": [{"method": pair.method, "dataset": pair.dataset, "key": None, "stage": "weights",
                          "error": error, "traceback": ""}]}


def _store(writer: RunWriter, exit_code: int, *, report: bool, baseline, t0: float, log) -> tuple[Path, int]:
    """Write the run and its report into the work folder, then give it its final name."""
    status = {EXIT_OK: "complete", EXIT_NOTHING: "nothing ran"}.get(exit_code, "partial")
    writer.finish(status=status, exit_code=exit_code, seconds=time.perf_counter() - t0,
                  report="written" if report else "not requested")
    if report:
        from .report import write_report
        try:
            write_report(writer.work, baseline=baseline)
        except Exception as err:  # noqa: BLE001 - the results stand without their report; run.json says so
            problem = _one_line(err)
            exit_code = exit_code or EXIT_PARTIAL
            writer.amend(status="partial" if status == "complete" else status, exit_code=exit_code,
                         report=f"failed: {problem}")
            log(f"report failed: {problem}; the results are stored, see bench report {writer.out}")
    path = writer.publish()
    log(f"{writer.meta['status']}: {path} ({time.perf_counter() - t0:.1f} s)")
    return path, exit_code


def _summary_row(writer: RunWriter, method: str, dataset: str, metric: str, status: str, reason: str = "",
                 value: float = float("nan"), n: int = 0, extras: dict | None = None) -> None:
    spec = get_metric(metric).spec
    writer.summary.append({"method": method, "dataset": dataset, "metric": metric, "value": value, "n": n,
                           "status": status, "reason": reason, "extras": json.dumps(extras or {}, sort_keys=True),
                           "higher_is_better": spec.higher_is_better, "unit": spec.unit})


def job_key(job: Job) -> str:
    """What a task computes, hashed: method (name, version, parameters, weights sha256), device,
    dataset id, keys, metrics (name, version), previews.  Equal keys give equal results; a rerun
    reuses them, never a result computed with other weights."""
    from methods import get_method
    payload = {"method": job.method, "version": get_method(job.method).VERSION, "params": job.params,
               "device": job.device, "dataset": job.dataset_name, "dataset_id": job.dataset.dataset_id,
               "keys": job.keys, "metrics": {m: get_metric(m).spec.version for m in job.metrics},
               "previews": job.preview_keys, "info": asdict(job.info)}
    if job.weights_sha256:      # only methods with weights: the keys of the others stay as they were
        payload["weights_sha256"] = job.weights_sha256
    if job.metric_weights_sha256:   # only tasks scoring a metric with weights (NIQE, BRISQUE)
        payload["metric_weights_sha256"] = job.metric_weights_sha256
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _execute(jobs: list[Job], writer: RunWriter, *, scheduler, workers, fail_fast, log, header: str) -> list[dict]:
    """Run the tasks not saved by an interrupted run; ``header`` is logged once the cluster is there
    (so that a bad ``--scheduler`` is the only line on stderr)."""
    from distributed import as_completed

    from datagen.runner import connect

    keys = [job_key(j) for j in jobs]
    results, todo = [], []
    for key, job in zip(keys, jobs):
        cached = writer.cached_result(key)
        why = None if cached is None else _result_problem(cached, job)
        if cached is not None and not why:
            results.append(cached)
            continue
        if why and why != _HAD_FAILURES:
            log(f"note: ignoring the saved result of task {key} ({why}); computing it again")
        todo.append((key, job))
    client, cluster = connect(scheduler, workers) if todo else (None, None)
    log(header)
    if results:
        log(f"resuming: {len(results)} of {len(jobs)} tasks already done by the interrupted run")
    if not todo:
        return results
    try:
        futures = {client.submit(run_job, j, pure=False): k for k, j in todo}
        for done, fut in enumerate(as_completed(list(futures), loop=client.loop), start=1):
            res = fut.result()
            try:
                writer.save_result(futures[fut], res)
            except TypeError as err:   # a plug-in's metric state that is not data: the run goes on, unsaved
                log(f"note: the result of task {futures[fut]} cannot be saved for resuming ({err})")
            results.append(res)
            if done == len(todo) or done % max(1, len(todo) // 10) == 0:
                log(f"  {done}/{len(todo)} tasks")
            if fail_fast and res["failures"]:
                first = res["failures"][0]
                log(f"--fail-fast: stopping after {first['method']} failed on {first['dataset']}/{first['key']}")
                for other in futures:
                    other.cancel()
                break
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


_RESULT_KEYS = {"method", "dataset", "keys", "states", "timings", "failures", "previews"}
_PREVIEW_KINDS = {"input", "target", "output"}
_HAD_FAILURES = "it recorded failures"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _result_problem(res, job: Job) -> str | None:
    """Why a saved task result cannot stand for ``job`` (``None``: it can).  Only a result without
    failures whose every part has the structure :func:`run_job` gives is reused."""
    if not isinstance(res, dict) or set(res) != _RESULT_KEYS:
        return "not a task result"
    if (res["method"], res["dataset"], res["keys"]) != (job.method, job.dataset_name, list(job.keys)):
        return "it belongs to another task"
    if not isinstance(res["failures"], list):
        return "malformed failures"
    if res["failures"]:
        return _HAD_FAILURES
    keys, states = set(job.keys), res["states"]
    if not (isinstance(states, dict) and set(states) == set(job.metrics)
            and all(isinstance(s, dict) and set(s) == keys and all(isinstance(v, dict) for v in s.values())
                    for s in states.values())):
        return "its metric states do not match the task"
    timings = res["timings"]
    if not (isinstance(timings, list) and len(timings) == len(keys)
            and all(isinstance(t, dict) and set(t) == set(TIMING_COLUMNS) and isinstance(t["key"], str)
                    and t["key"] in keys and t["method"] == job.method and t["dataset"] == job.dataset_name
                    and _is_number(t["seconds"]) and _is_number(t["megapixels"]) for t in timings)
            and {t["key"] for t in timings} == keys):
        return "its timings do not match the task"
    previews = res["previews"]
    if not (isinstance(previews, dict) and set(previews) == set(job.preview_keys)
            and all(isinstance(v, dict) and set(v) == _PREVIEW_KINDS and isinstance(v["output"], bytes)
                    and all(v[k] is None or isinstance(v[k], bytes) for k in ("input", "target"))
                    for v in previews.values())):
        return "its previews do not match the task"
    return None


def _reduce(writer: RunWriter, pairs: list[Pair], opened: dict, results: list[dict]) -> int:
    """Reduce per-sample states into summary/sample/curve rows; write previews; return the exit code."""
    states: dict[tuple[str, str, str], dict] = {}
    failures: dict[tuple[str, str], list[dict]] = {}
    index: dict[tuple[str, str], dict] = {}
    for res in results:
        m, d = res["method"], res["dataset"]
        writer.timings.extend(res["timings"])
        writer.failures.extend(res["failures"])
        failures.setdefault((m, d), []).extend(res["failures"])
        for metric, per_key in res["states"].items():
            states.setdefault((m, d, metric), {}).update(per_key)
        for key, png in res["previews"].items():
            entry = index.setdefault((d, key), {"dataset": d, "key": key, "input": None, "target": None, "methods": {}})
            for kind in ("input", "target"):
                if png[kind] is not None and entry[kind] is None:
                    entry[kind] = preview_name(d, key, kind)
                    writer.files[f"previews/{entry[kind]}"] = png[kind]
            entry["methods"][m] = preview_name(d, key, f"method-{m}")
            writer.files[f"previews/{entry['methods'][m]}"] = png["output"]
    writer.files["previews/index.json"] = json.dumps([index[k] for k in sorted(index)], indent=1).encode()
    for p in pairs:
        n_total = len(opened[p.dataset].keys())
        fails = failures.get((p.method, p.dataset), [])
        for metric in p.metrics:
            st = states.get((p.method, p.dataset, metric), {})
            if len(st) < n_total:
                scored = set(st)
                first = next((f for f in fails if f["key"] not in scored), None)
                why = first["error"] if first else "not run (--fail-fast stopped the run)"
                _summary_row(writer, p.method, p.dataset, metric, "failed",
                             f"{n_total - len(st)} of {n_total} samples failed: {why}")
                continue
            try:
                result = get_metric(metric)().reduce(st)
                value, per_sample = float(result.value), {k: float(v) for k, v in sorted(result.per_sample.items())}
            except Exception as err:  # noqa: BLE001 - a failing reduction is data for the report, like a failing predict
                writer.failures.append({"method": p.method, "dataset": p.dataset, "key": None, "stage": "reduce",
                                        "error": _one_line(err), "traceback": traceback.format_exc()})
                _summary_row(writer, p.method, p.dataset, metric, "failed", f"{metric} reduce failed: {_one_line(err)}")
                continue
            _summary_row(writer, p.method, p.dataset, metric, "ok", value=value, n=len(st), extras=result.extras)
            writer.samples.extend({"method": p.method, "dataset": p.dataset, "metric": metric, "key": k, "value": v}
                                  for k, v in per_sample.items())
            for curve, series in result.curves.items():
                if not {"precision", "recall"} <= set(series):
                    continue  # curves.parquet holds precision/recall curves; others stay in the metric's extras
                n_points = len(series["precision"])
                for i in range(n_points):
                    writer.curves.append({"method": p.method, "dataset": p.dataset, "metric": metric, "curve": curve,
                                          "point": i, **{c: float(series[c][i]) if c in series else float("nan")
                                                         for c in ("threshold", "precision", "recall")}})
    incomplete = any(row["status"] == "failed" for row in writer.summary)
    return EXIT_PARTIAL if writer.failures or incomplete else EXIT_OK
