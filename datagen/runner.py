"""Build orchestration: plan -> (resume) -> Dask tasks -> consolidate -> rename.

Dask distributed is the only execution engine: a :class:`distributed.LocalCluster` of
single-threaded worker processes by default, or an existing cluster given by its
scheduler address (its workers must see the output folder at the same path, e.g. on a
shared filesystem).  Work in progress lives in ``<out>.incomplete/``; complete shards in
it are reused by the next run (``--resume``, the default) after a crash or Ctrl-C, once their
data is re-hashed against the digests their worker stored (a shard that fails is rebuilt).

One build per output at a time: :func:`build` holds :func:`datagen.lock.output_lock` on
``out`` from the up-to-date check to the removal of the work folder, so it may delete
temporaries of our naming beside ``out`` that a killed build left.  Test hook: the points of
:func:`datagen.writer.pause_point`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import SPLITS
from .atomic import atomic_write_bytes
from .errors import OutputError, UserError, writable_dir
from .generators import get_generator
from .lock import output_lock
from .manifest import PRIMARY, Manifest
from .plan import Plan, make_plan
from .progress import Progress
from .provenance import versions
from .shard import (
    Companion,
    ShardMeta,
    ShardTask,
    TaskImage,
    UnusableShard,
    check_shard,
    run_shard,
)
from .writer import (
    consolidate,
    image_digests,
    pause_point,
    remove_stale_temporaries,
    shard_path,
    work_dir,
    write_failed,
)

Log = Callable[[str], None]


@dataclass
class BuildResult:
    path: Path
    dataset_id: str
    content_sha256: str
    counts: dict
    status: str                 # "built" or "up-to-date"
    shards_built: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    images: int = 0
    samples: int = 0
    stats: list = field(default_factory=list)


def default_output(manifest: Manifest) -> Path:
    return Path(manifest.output.path or Path("corpora") / f"{manifest.name}.h5")


def _stderr(msg: str) -> None:
    print(f"datagen: {msg}", file=sys.stderr, flush=True)


def _existing_corpus(out: Path) -> dict | None:
    try:
        with h5py.File(out, "r") as f:
            if f.attrs.get("complete") and "dataset_id" in f.attrs:
                return {"dataset_id": str(f.attrs["dataset_id"]), "content_sha256": str(f.attrs["content_sha256"]),
                        "counts": json.loads(f.attrs["counts"])}
    except (OSError, KeyError, ValueError):
        pass
    return None


def _up_to_date(out: Path, plan: Plan, overwrite: bool) -> dict | None:
    """The summary of the corpus at ``out`` when it is already this build; ``None`` when there
    is none (or ``overwrite``); a one-line :class:`OutputError` when ``out`` holds anything else."""
    if not out.exists() or overwrite:
        return None
    existing = _existing_corpus(out)
    if existing is None:
        raise OutputError(f"{out} exists and is not a complete DefocusBench corpus; pass --overwrite or choose another --out")
    if existing["dataset_id"] == plan.dataset_id:
        return existing
    raise OutputError(f"{out} holds another corpus (dataset_id {existing['dataset_id']}, this manifest gives "
                      f"{plan.dataset_id}); pass --overwrite to replace it or choose another --out")


def _stamped_layout(workdir: Path) -> str | None:
    """The ``layout_id`` that the work folder's ``plan.json`` was written for, if readable."""
    try:
        return str(json.loads((workdir / "plan.json").read_text())["layout_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _prepare_workdir(workdir: Path, out: Path, plan: Plan, overwrite: bool, log: Log) -> None:
    if overwrite and workdir.exists():
        shutil.rmtree(workdir)
    stamp = workdir / "plan.json"
    if stamp.exists():
        previous = _stamped_layout(workdir)
        if previous != plan.layout_id:
            log(f"discarding partial build {previous} in {workdir} (the manifest or sources changed)")
            shutil.rmtree(workdir)
    try:
        (workdir / "shards").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {workdir} ({err.strerror or err}); choose another --out") from None
    try:
        if not stamp.exists():
            atomic_write_bytes(stamp, json.dumps({"layout_id": plan.layout_id, "dataset_id": plan.dataset_id,
                                                  "shards": len(plan.shards)}).encode())
    except OSError as err:
        raise write_failed(out, err) from None
    remove_stale_temporaries(workdir / "shards")
    remove_stale_temporaries(workdir)


def shard_tasks(plan: Plan, out: Path) -> list[ShardTask]:
    """One :class:`ShardTask` per shard of ``plan``, for the build of ``out``."""
    params = plan.manifest.generator.model_dump(mode="json")

    def task_image(im) -> TaskImage:
        comps = tuple(Companion(c.role, c.key, c.path, c.sha256) for c in (plan.images[j] for j in im.companions))
        return TaskImage(im.index, im.key, im.path, im.sha256, im.mask, comps)

    return [ShardTask(s.index, s.split, tuple(task_image(im) for im in plan.shard_images(s)),
                      params, plan.manifest.seed, plan.layout_id, str(out)) for s in plan.shards]


def _reusable_shards(tasks: list[ShardTask], log: Log) -> tuple[dict[int, ShardMeta], list[ShardTask]]:
    """Split ``tasks`` into the shards an earlier run completed, re-hashed and found intact
    (reused), and those to build.  A shard file that fails the check is deleted and rebuilt,
    with a log line saying why."""
    done, todo = {}, []
    for task in tasks:
        try:
            done[task.index] = check_shard(task)
        except UnusableShard as why:
            if task.path.exists():
                log(f"rebuilding shard {task.index} ({task.path.name}): {why}")
                task.path.unlink(missing_ok=True)
            todo.append(task)
    return done, todo


def _built_shard(task: ShardTask) -> ShardMeta:
    """The attributes of a shard this run has just built (its worker hashed it: no re-hash)."""
    try:
        return check_shard(task, verify=False)
    except UnusableShard as why:
        raise RuntimeError(f"shard {task.path} is unusable right after it was built: {why}") from None


#: Environment of local worker processes.  One thread per native library (one task per worker),
#: and glibc kept from handing memory back between images: setting any trim threshold (Dask sets
#: 64 KiB) disables the adaptive mmap threshold, so every array over 128 KiB was mmap'ed and
#: page-faulted afresh (2.3x slower); a 64 MiB mmap threshold fixes that, and a 512 MiB trim
#: threshold keeps freed heap pages for the next image instead of faulting them in again (-6 %
#: with one worker; on virtual machines that return idle memory to the host, page faults on
#: returned pages are slow).  Remote workers want the same (README).
_WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
                   "MALLOC_TRIM_THRESHOLD_": 512 * 2**20, "MALLOC_MMAP_THRESHOLD_": 64 * 2**20}


#: Most local worker processes per core that ``--workers`` accepts: more only thrashes (and a
#: typo such as 100000 would try to start that many processes).
MAX_WORKERS_PER_CORE = 4


def check_workers(workers: int | None, *, flag: str = "--workers") -> int:
    """The number of local worker processes to start: ``workers``, or one per core when ``None``.

    Raises a one-line :class:`UserError` outside ``1 .. MAX_WORKERS_PER_CORE x cores``.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers is None:
        return cores
    top = MAX_WORKERS_PER_CORE * cores
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= top:
        raise UserError(f"{flag} must be a whole number from 1 to {top} ({MAX_WORKERS_PER_CORE} per core on this "
                        f"machine's {cores} cores), got {workers!r}")
    return workers


#: Seconds to wait for a ``--scheduler`` to answer.
_CONNECT_TIMEOUT = 15.0


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _scheduler_error(address: str, why: str) -> UserError:
    return UserError(f"--scheduler {address}: {why}; start one with `dask scheduler` or drop --scheduler")


def check_scheduler(address: str, *, timeout: float = _CONNECT_TIMEOUT) -> None:
    """Raise a one-line :class:`UserError` unless ``address`` (``tcp://HOST:PORT`` or ``tls://``)
    is well formed and a Dask server completes the connection handshake there within
    ``timeout`` seconds.

    Done before creating a :class:`distributed.Client`: a Client whose constructor fails on a
    bad address or a server that is not Dask's lingers, and its ``__del__`` waits 30 s and
    prints a traceback at exit; a port where nothing listens fails here at once instead of
    being retried until the timeout.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect as comm_connect
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.security import Security

    try:
        scheme, location = parse_address(address, strict=True)
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"unsupported scheme {scheme!r}")
        host, port = parse_host_port(location)
        if not host:
            raise ValueError("no host")
        if not 1 <= int(port) <= 65535:
            raise ValueError("the port must be 1..65535")
    except (ValueError, TypeError) as err:
        raise _scheduler_error(address, f"not an address like tcp://HOST:PORT ({_first_line(err)})") from None
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise _scheduler_error(address, f"cannot connect ({err.strerror or _first_line(err)})") from None

    async def handshake() -> None:
        comm = await comm_connect(address, timeout=timeout, **Security().get_connection_args("client"))
        await comm.close()

    try:   # in a thread of its own: the caller may be running an event loop (e.g. Jupyter)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, asyncio.wait_for(handshake(), timeout)).result()
    except TimeoutError:
        raise _scheduler_error(address, f"no Dask scheduler answered within {timeout:g} s") from None
    except Exception as err:  # noqa: BLE001 - whatever went wrong, no Dask server answers there
        raise _scheduler_error(address, f"no Dask scheduler answers there ({type(err).__name__}: "
                                        f"{_first_line(err)})") from None


def connect(scheduler: str | None, workers: int | None):
    """A Dask client: to ``scheduler`` (``tcp://host:port``) or to a new local cluster of
    ``workers`` single-threaded processes (``None``: one per core; checked by
    :func:`check_workers`); returns ``(client, cluster or None)``.  Bad input is a one-line
    :class:`UserError`."""
    from distributed import Client, LocalCluster

    from .registry import share_registrations

    if scheduler:
        check_scheduler(scheduler)
        try:
            client = Client(scheduler, timeout=f"{_CONNECT_TIMEOUT}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise _scheduler_error(scheduler, f"cannot connect ({_first_line(err)})") from None
        share_registrations(client)      # what a notebook registered in-process reaches the workers
        return client, None
    workers = check_workers(workers)
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": _WORKER_ENVIRON}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                               preload=["datagen._worker_setup"])
    client = Client(cluster, set_as_default=False)
    share_registrations(client)
    return client, cluster


def _run_tasks(tasks: list[ShardTask], *, workers: int | None, scheduler: str | None, log: Log,
               progress: bool | None) -> threading.Thread:
    """Run the shard tasks; returns the thread that is closing the client and cluster.

    After a success the close (~0.3 s for a local cluster) overlaps the consolidation; on any
    error it completes before the error propagates.
    """
    from distributed import as_completed

    logging.getLogger("distributed").setLevel(logging.ERROR)
    client, cluster = connect(scheduler, workers)

    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    bar = Progress(sum(len(t.images) for t in tasks), log=log, unit="images", desc="build", bar=progress)
    try:
        futures = [client.submit(run_shard, t, key=f"datagen-shard-{t.layout_id}-{t.index:05d}", pure=False) for t in tasks]
        for k, fut in enumerate(as_completed(futures, loop=client.loop), start=1):
            if fut.status == "error":
                err = fut.exception()
                for other in futures:
                    other.cancel()
                raise err
            bar.update(fut.result()["images"])
            pause_point(f"built-shard-{k}")
    except BaseException:
        bar.close()
        close()
        raise
    bar.close()
    closer = threading.Thread(target=close, name="datagen-close-cluster", daemon=True)
    closer.start()
    return closer


def build(manifest: Manifest, *, out: str | os.PathLike | None = None, workers: int | None = None,
          scheduler: str | None = None, overwrite: bool = False, limit: int | None = None,
          log: Log = _stderr, progress: bool | None = None) -> BuildResult:
    """Build ``manifest`` into one HDF5 corpus file; resumable, deterministic, atomic.

    Parameters
    ----------
    out : path, keyword-only
        Output file (default ``output.path`` or ``corpora/<name>.h5``).  Locked for the whole
        build (``<out>.lock``): a second build of the same ``out`` fails in one line.
    workers : int, keyword-only
        Local worker processes, 1 .. 4 per core (default: one per core).  Ignored with
        ``scheduler``, but checked.
    scheduler : str, keyword-only
        Address of an existing Dask scheduler (``tcp://host:port``).
    overwrite : bool, keyword-only
        Rebuild from scratch and replace ``out``; by default complete shards are reused (once
        re-hashed) and an up-to-date ``out`` is left alone.
    limit : int, keyword-only
        Use only this many source images (a seeded subset; part of the dataset id).
    """
    t0 = time.perf_counter()
    workers = check_workers(workers)
    if scheduler:
        check_scheduler(scheduler)   # before anything is written
    plan = make_plan(manifest, limit=limit)
    out = Path(out or default_output(manifest)).absolute()
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a file path such as {out / (plan.manifest.name + '.h5')}")
    if out.exists() and not overwrite and not os.access(out.parent, os.W_OK):
        # a read-only folder: nothing can be building there, so the check needs no lock
        existing = _up_to_date(out, plan, overwrite)
        if existing:
            log(f"{out} is up to date (dataset_id {plan.dataset_id})")
            return BuildResult(out, plan.dataset_id, existing["content_sha256"], existing["counts"], "up-to-date")
    writable_dir(out.parent, hint="choose another --out")
    with output_lock(out):
        result = _build_locked(plan, out, workers=workers, scheduler=scheduler, overwrite=overwrite, log=log,
                               progress=progress)
    result.seconds = time.perf_counter() - t0
    return result


def _build_locked(plan: Plan, out: Path, *, workers: int, scheduler: str | None, overwrite: bool, log: Log,
                  progress: bool | None) -> BuildResult:
    """:func:`build` once the output lock is held."""
    stale = remove_stale_temporaries(out.parent, of=out.name)
    if stale:
        log(f"removed {stale} temporary file(s) left beside {out} by an interrupted build")
    workdir = work_dir(out)
    existing = _up_to_date(out, plan, overwrite)
    if existing:
        if workdir.exists() and _stamped_layout(workdir) == plan.layout_id:   # killed after the final rename
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"{out} is up to date (dataset_id {plan.dataset_id})")
        return BuildResult(out, plan.dataset_id, existing["content_sha256"], existing["counts"], "up-to-date")
    _prepare_workdir(workdir, out, plan, overwrite, log)
    done, todo = _reusable_shards(shard_tasks(plan, out), log)
    if done:
        log(f"resuming: {len(done)} of {len(plan.shards)} shards already complete (data verified)")
    closer = None
    if todo:
        closer = _run_tasks(todo, workers=workers, scheduler=scheduler, log=log, progress=progress)
    try:
        metas = done | {task.index: _built_shard(task) for task in todo}
        result = _finalize(plan, workdir, out, metas)
    except OSError as err:   # disk full, quota, I/O error: the shards stay for --resume
        raise write_failed(out, err) from None
    finally:
        if closer is not None:
            closer.join()
    pause_point("renamed")
    shutil.rmtree(workdir, ignore_errors=True)
    result.shards_built, result.shards_reused = len(todo), len(done)
    return result


def _companion_rows(plan: Plan, stats: list[dict], digests: dict, fields: dict) -> list[dict]:
    """``/sources`` rows of the companion images (no samples of their own), and a ``role`` column
    for every row; adds their digests (of no rows) to ``digests``.  Nothing for a plan without
    companions (so the table of such a corpus is as before)."""
    companions = [im for im in plan.images if im.role != PRIMARY]
    if not companions:
        return []
    columns = {k: v for row in stats for k, v in row.items()}
    empty = image_digests({name: np.empty((0, *shape), dtype) for name, (dtype, shape) in fields.items()})
    rows = []
    for row in stats:
        row["role"] = PRIMARY
    for im in companions:
        row = {k: "" if isinstance(v, str) else 0 for k, v in columns.items()}
        row.update(index=im.index, key=im.key, sha256=im.sha256, samples=0, role=im.role)
        rows.append(row)
        digests[im.index] = empty
    return rows


def _finalize(plan: Plan, workdir: Path, out: Path, metas: dict[int, ShardMeta]) -> BuildResult:
    """Consolidate the checked shards (``metas``: their attributes, by shard index) into ``out``."""
    cls = get_generator(plan.manifest.generator.kind)
    gen = cls(plan.manifest.generator)
    fields = {name: (f.dtype, f.shape) for name, f in gen.fields().items()}
    fields["source"] = ("int32", ())
    classes = gen.classes()
    shards, stats, digests = [], [], {}
    per_class = {s: np.zeros(len(classes), np.int64) for s in SPLITS}
    for shard in plan.shards:
        meta = metas[shard.index]
        shards.append((shard_path(workdir, shard.index), shard.split, meta.n_samples))
        stats.extend(meta.sources)
        digests.update((row["index"], d) for row, d in zip(meta.sources, meta.digests, strict=True))
        per_class[shard.split] += np.asarray(meta.label_counts, np.int64)
    stats += _companion_rows(plan, stats, digests, fields)
    stats.sort(key=lambda s: s["index"])
    split_of = {im.index: im.split for im in plan.images}
    sources = [{"key": s["key"], "split": split_of[s["index"]], **{k: v for k, v in s.items() if k not in ("key", "index")}}
               for s in stats]
    counts = {s: {"samples": int(sum(r["samples"] for r in sources if r["split"] == s)),
                  "images": sum(1 for r in sources if r["split"] == s and r.get("role", PRIMARY) == PRIMARY),
                  "per_class": [int(c) for c in per_class[s]]} for s in SPLITS}
    m = plan.manifest
    attrs = {
        "dataset_id": plan.dataset_id,
        "name": m.name,
        "generator": m.generator.kind,
        "generator_version": cls.VERSION,
        "manifest": {"name": m.name, "description": m.description, **m.content(),
                     "output": m.output.model_dump(mode="json", exclude={"path"}), "limit": plan.limit},
        "fields": {k: {"dtype": f.dtype, "shape": list(f.shape), "doc": f.doc} | ({"units": f.units} if f.units else {})
                   for k, f in gen.fields().items()}
                  | {"source": {"dtype": "int32", "shape": [], "doc": "row of /sources"}},
        "classes": classes,
        "counts": counts,
        "versions": versions(),
    }
    digest = consolidate(out, shards, fields, sources=sources, digests=digests, attrs=attrs,
                         compression=m.output.compression,
                         chunks={k: f.chunk for k, f in gen.fields().items() if f.chunk is not None})
    return BuildResult(out, plan.dataset_id, digest, counts, "built", images=len(sources),
                       samples=sum(c["samples"] for c in counts.values()), stats=sources)
