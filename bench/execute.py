"""``bench run``, phase 2: **execute** -- one Dask task per (method, dataset, chunk of samples).

:func:`run_job` loads, predicts, times, computes each metric's per-sample state and renders preview
thumbnails.  A crash is recorded with its traceback (stage ``load``, ``predict`` or ``score``) and the
run goes on (``--keep-going``, default) or stops (``--fail-fast``).  Local runs use a
:func:`datagen.runner.connect` cluster of single-threaded worker processes, one per core;
``scheduler=`` runs on an existing cluster.  Each finished task's result is saved as data in the work
folder (:meth:`bench.store.RunWriter.save_result`); a rerun reuses the results whose structure fits
its task (:func:`job_key`, :func:`_result_problem`) and recomputes the others.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .metrics import PredInfo, create_metric, get_metric
from .store import TIMING_COLUMNS, RunWriter


@dataclass
class Stage:
    """The map source of a chain (:mod:`bench.chains`): a method, its parameters and weights."""

    name: str
    params: dict
    weights: str | None = None
    weights_sha256: dict[str, str] = field(default_factory=dict)


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
    source: Stage | None = None                                 # a chain's map method (None: plain, or @gt/dt/...)
    map_metrics: list[str] = field(default_factory=list)        # of metrics: scored on a chain's input map


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
    """One Dask task: predict and score ``job.keys``; never raises for method/data errors.  A chain
    (``job.method`` ``CONSUMER@SOURCE``) gets each sample's map from ``job.source`` (or the
    dataset's stored map, ``@gt`` / ``@dt`` / ``@matting``), converts it (:func:`bench.chains.input_map`) and restores with it; its
    ``map_metrics`` score that map (in radius px), the other metrics the restored image."""
    from methods import create_method

    from . import chains, previews

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

    chain = chains.parse(job.method)
    source = None
    try:
        if job.weights is not None:
            _check_weights(job.weights, job.weights_sha256)
        method = create_method(chain.consumer if chain else job.method, job.params, device=job.device,
                               weights=job.weights)
        if job.source is not None:
            if job.source.weights is not None:
                _check_weights(job.source.weights, job.source.weights_sha256)
            source = create_method(job.source.name, job.source.params, device=job.device, weights=job.source.weights)
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
            if chain is None:
                pred, radius = method.predict(sample.image), None
            else:
                use, radius = chains.input_map(sample, source, needs=method.NEEDS_MAP,
                                               source_cls=type(source) if source is not None else None,
                                               dataset_map=chain.source if chain.on_dataset else chains.GT)
                pred = method.predict_with_map(sample.image, use)
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
                if name in job.map_metrics:
                    out["states"][name][key] = metric.per_sample(radius, sample, chains.MAP_INFO)
                else:
                    out["states"][name][key] = metric.per_sample(pred, sample, job.info)
            except Exception as err:  # noqa: BLE001
                fail(key, "score", err)
        if key in job.preview_keys:
            out["previews"][key] = {"input": previews.image_png(sample.image), "target": previews.target_png(sample.targets),
                                    "output": previews.output_png(pred)}
    return out


def _check_weights(path: str, shas: dict[str, str]) -> None:
    """The weights file (or source folder) ``path`` still has the sha256 the driver resolved (``shas``:
    weight name -> sha256; recorded in run.json and the job key)."""
    from datagen.safe_read import read_regular_file

    from .weights import MAX_METHOD_WEIGHT_BYTES, weights_digest
    want = next(iter(shas.values()), None)
    if Path(path).is_dir() and shas:   # a source folder (e.g. the authors' release)
        got = weights_digest(next(iter(shas)), path)
    else:
        got = hashlib.sha256(read_regular_file(path, limit=MAX_METHOD_WEIGHT_BYTES, what="weight files")).hexdigest()
    if want is not None and got != want:
        raise RuntimeError(f"weights file {path} changed during the run (sha256 {want[:12]} -> {got[:12]})")


def _chunks(keys: list[str], workers: int) -> list[list[str]]:
    n = max(1, math.ceil(len(keys) / max(1, 2 * workers)))
    return [keys[i:i + n] for i in range(0, len(keys), n)]


def job_key(job: Job) -> str:
    """What a task computes, hashed: method (name, version, parameters, weights sha256; a chain's map
    method too), device, dataset id, keys, metrics (name, version), previews.  Equal keys give equal results; a rerun
    reuses them, never a result computed with other weights."""
    from methods import get_method

    from .chains import parse
    chain = parse(job.method)
    payload = {"method": job.method, "version": get_method(chain.consumer if chain else job.method).VERSION,
               "params": job.params,
               "device": job.device, "dataset": job.dataset_name, "dataset_id": job.dataset.dataset_id,
               "keys": job.keys, "metrics": {m: get_metric(m).spec.version for m in job.metrics},
               "previews": job.preview_keys, "info": asdict(job.info)}
    if job.weights_sha256:      # only methods with weights: the keys of the others stay as they were
        payload["weights_sha256"] = job.weights_sha256
    if job.metric_weights_sha256:   # only tasks scoring a metric with weights (NIQE, BRISQUE)
        payload["metric_weights_sha256"] = job.metric_weights_sha256
    if job.source is not None:      # a chain's map method: its version, parameters and weights too
        payload["source"] = {"name": job.source.name, "version": get_method(job.source.name).VERSION,
                             "params": job.source.params, "weights_sha256": job.source.weights_sha256}
        payload["map_metrics"] = job.map_metrics
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _execute(jobs: list[Job], writer: RunWriter, *, scheduler, workers, fail_fast, log, header: str,
             progress: bool | None = None) -> list[dict]:
    """Run the tasks not saved by an interrupted run; ``header`` is logged once the cluster is there
    (so that a bad ``--scheduler`` is the only line on stderr).  ``progress``: the finished tasks as a
    bar with an ETA (True), a line every ~10 % (False) or a bar on a terminal (None;
    :class:`datagen.progress.Progress`)."""
    from distributed import as_completed

    from datagen.progress import Progress
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
    bar = Progress(len(todo), log=log, unit="tasks", desc="bench run", bar=progress)
    try:
        futures = {client.submit(run_job, j, pure=False): k for k, j in todo}
        for fut in as_completed(list(futures), loop=client.loop):
            res = fut.result()
            try:
                writer.save_result(futures[fut], res)
            except TypeError as err:   # a plug-in's metric state that is not data: the run goes on, unsaved
                log(f"note: the result of task {futures[fut]} cannot be saved for resuming ({err})")
            results.append(res)
            bar.update(1)
            if fail_fast and res["failures"]:
                first = res["failures"][0]
                log(f"--fail-fast: stopping after {first['method']} failed on {first['dataset']}/{first['key']}")
                for other in futures:
                    other.cancel()
                break
    finally:
        bar.close()
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
