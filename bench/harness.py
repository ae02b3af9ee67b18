"""``bench run``: plan method x dataset x metric, predict and score on Dask, store, report.

The phases live in their own modules -- :mod:`bench.plan` (what meets what), :mod:`bench.execute`
(the Dask tasks), :mod:`bench.reduce` (states to rows) -- with the task table in :mod:`bench.tasks`;
this module runs them in order (:func:`run`) and owns weights resolution and storing.

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

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import ValidationError

from datagen.errors import UserError, describe_validation_error, unknown_name

from . import chains
from . import datasets as ds_mod
from .execute import (  # noqa: F401 - the run API
    Job,
    Stage,
    _chunks,
    _execute,
    _one_line,
    _result_problem,
    job_key,
    run_job,
)
from .exits import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, EXIT_REGRESSION  # noqa: F401 - the run API
from .metrics import get_metric
from .plan import (  # noqa: F401 - the run API
    Pair,
    metric_spec_dict,
    parse_roots,
    parse_weights,
    plan,
    select_methods,
    select_metrics,
)
from .reduce import _reduce, _summary_row
from .stats import comparison_rule
from .store import (
    FORMAT,
    FORMAT_VERSION,
    RunWriter,
    git_info,
    machine_info,
    new_run_id,
)
from .tasks import DEFAULT_METRICS, FITS, PROFILE_DATASETS  # noqa: F401 - the run API


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``bench run``; ``str()`` says where the finished tasks are and how to resume."""


PREVIEWS_PER_DATASET = 3


_VERSIONED = ("defocus-bench", "numpy", "scipy", "opencv-python", "scikit-image", "torch", "pyiqa", "dask",
              "distributed", "pandas", "pyarrow", "h5py", "pillow")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in _VERSIONED:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


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


def run(*, methods: str = "all", datasets: list[str] | None = None, metrics: str | None = None, profile: str = "quick",
        roots: dict[str, str] | None = None, out: str | os.PathLike | None = None, device: str = "cpu",
        fail_fast: bool = False, scheduler: str | None = None, workers: int | None = None, report: bool = True,
        baseline: str | os.PathLike | None = None, params: dict[str, dict] | None = None,
        weights: list[str] | dict[str, str] | None = None, subset: str | None = None, progress: bool | None = None,
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
    ``subset``: the subset of the datasets that have subsets (:data:`bench.scoring.SUBSET_DATASETS`:
    CUHK ``test``, ``defocus``, ``motion``, ``all``), as ``bench score --subset``; a one-line
    :class:`UserError` when none of the selected datasets has one.
    ``progress``: the tasks' progress on stderr (:class:`datagen.progress.Progress`): a bar with an
    ETA (True), a line every ~10 % to ``log`` (False) or a bar when stderr is a terminal (None).
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
    names = list(datasets) if datasets else [d for d in PROFILE_DATASETS[profile] if not ds_mod.needs_root(d) or d in roots]
    for name in roots:
        if name not in names:
            if name not in ds_mod.DATASETS:
                raise UserError(unknown_name("dataset", name, ds_mod.DATASETS) + " (in --root)")
            names.append(name)
    options = _subset_options(subset, names)
    opened = {}
    for name in names:
        opened[name] = ds_mod.open_dataset(name, root=roots.get(name), profile=profile, **options.get(name, {}))
        note = getattr(opened[name], "check_polarity", lambda: None)()
        if note:
            log(f"note: {note}")
    params = params or {}
    parts = chains.components(method_names)
    user_weights = parse_weights(weights, parts)
    stage_info, method_weights, weight_errors = {}, {}, {}
    for m in parts:      # every method once, chains' stages included
        cls = get_method(m)
        try:
            p = cls.Params.model_validate(params.get(m, {}))
        except ValidationError as err:
            raise UserError(f"--set for {m}: {describe_validation_error(err)}") from None
        stage_info[m] = dict(cls.info(), params=p.model_dump(mode="json"))
        method_weights[m], weight_errors[m], stage_info[m]["weights"] = _resolve_weights(m, cls, user_weights)
        if weight_errors[m]:
            log(f"note: {m}: {weight_errors[m]}")
    method_info = {}
    for m in method_names:
        c = chains.parse(m)
        if c is None:
            method_info[m] = stage_info[m]
            continue
        # run.json identifies both stages of a chain: versions, parameters, weights
        method_info[m] = dict(stage_info[c.consumer], name=m,
                              chain={"consumer": c.consumer, "source": c.source,
                                     "source_info": None if c.on_dataset else stage_info[c.source]})
        weight_errors[m] = weight_errors[c.consumer] or ("" if c.on_dataset else weight_errors[c.source])
    pairs = plan(method_names, opened, metric_names)
    used_metrics = sorted({m for p in pairs for m in (*p.metrics, *p.na, *p.unavailable)})
    run_id = new_run_id()
    out = Path(out) if out else Path("reports") / "runs" / run_id
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "profile": profile, "device": device,
            "git": git_info(), "machine": machine_info(), "versions": _versions(), "methods": method_info,
            "datasets": {n: {"dataset_id": d.dataset_id, "version": d.VERSION, "task": d.TASK, "n": len(d.keys()),
                             "description": getattr(d, "description", d.DESCRIPTION)} for n, d in opened.items()},
            "metrics": {m: metric_spec_dict(m) for m in used_metrics},
            "comparison_rule": comparison_rule()}
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
            chain = chains.parse(p.method)
            resolved = method_weights[chain.consumer if chain else p.method]
            path = str(next(iter(resolved.values())).path) if resolved else None
            shas = {w: r.sha256 for w, r in resolved.items()}
            source = None
            if chain is not None and not chain.on_dataset:
                src = method_weights[chain.source]
                source = Stage(chain.source, stage_info[chain.source]["params"],
                               str(next(iter(src.values())).path) if src else None,
                               {w: r.sha256 for w, r in src.items()})
            for chunk in _chunks(keys, n_workers):
                jobs.append(Job(p.method, method_info[p.method]["params"], device, dset, p.dataset, chunk, p.metrics,
                                [k for k in chunk if k in keys[:PREVIEWS_PER_DATASET]], p.info,
                                weights=path, weights_sha256=shas,
                                metric_weights_sha256={w: metric_shas[w] for m in p.metrics
                                                       for w in get_metric(m).spec.weights if w in metric_shas},
                                source=source, map_metrics=list(p.map_metrics)))
        if not jobs and unresolved:
            exit_code = _reduce(writer, runnable, opened, unresolved)
        elif not jobs:
            log("nothing to run: no method fits the selected datasets")
            exit_code = EXIT_NOTHING
        else:
            header = f"bench run {run_id}: {len(method_names)} method(s) x {len(opened)} dataset(s), {len(jobs)} task(s) -> {out}"
            try:
                results = _execute(jobs, writer, scheduler=scheduler, workers=n_workers, fail_fast=fail_fast, log=log,
                                   header=header, progress=progress)
            except KeyboardInterrupt:
                kept = f"finished tasks are kept in {writer.work}; " if writer.work.is_dir() else ""
                raise RunInterrupted(f"{kept}rerun with --out {out} to resume") from None
            exit_code = _reduce(writer, runnable, opened, results + unresolved)
        return _store(writer, exit_code, report=report, baseline=baseline, t0=t0, log=log)


def _subset_options(subset: str | None, names: list[str]) -> dict[str, dict]:
    """``{dataset: {"subset": subset}}`` for the selected datasets that have subsets."""
    from .scoring import SUBSET_DATASETS

    if subset is None:
        return {}
    takers = [n for n in names if n in SUBSET_DATASETS]
    if not takers:
        raise UserError(f"--subset {subset}: none of the selected datasets ({', '.join(names) or 'none'}) has subsets; "
                        f"--subset applies to {', '.join(SUBSET_DATASETS)} (e.g. --root cuhk=DIR)")
    return {n: {"subset": subset} for n in takers}


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
