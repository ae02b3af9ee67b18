"""Build orchestration: plan -> (resume) -> Dask tasks -> consolidate -> rename.

Dask distributed is the only execution engine: a :class:`distributed.LocalCluster` of
single-threaded worker processes by default, or an existing cluster given by its
scheduler address (its workers must see the output folder at the same path, e.g. on a
shared filesystem).  Work in progress lives in ``<out>.incomplete/``; complete shards in
it are reused by the next run (``--resume``, the default) after a crash or Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import SPLITS
from .errors import OutputError, UserError, writable_dir
from .generators import get_generator
from .manifest import Manifest
from .plan import Plan, make_plan
from .provenance import versions
from .shard import SHARD_VERSION, ShardTask, run_shard
from .writer import consolidate, read_shard_attrs, remove_stale_temporaries, shard_path

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


def _prepare_output(out: Path, plan: Plan, overwrite: bool) -> dict | None:
    """Check ``out``; return the existing corpus' summary when it is already this build."""
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a file path such as {out / (plan.manifest.name + '.h5')}")
    if out.exists() and not overwrite:
        existing = _existing_corpus(out)
        if existing is None:
            raise OutputError(f"{out} exists and is not a complete DefocusBench corpus; pass --overwrite or choose another --out")
        if existing["dataset_id"] == plan.dataset_id:
            return existing
        raise OutputError(f"{out} holds another corpus (dataset_id {existing['dataset_id']}, this manifest gives "
                          f"{plan.dataset_id}); pass --overwrite to replace it or choose another --out")
    writable_dir(out.parent, hint="choose another --out")
    return None


def _prepare_workdir(workdir: Path, plan: Plan, overwrite: bool, log: Log) -> None:
    if overwrite and workdir.exists():
        shutil.rmtree(workdir)
    stamp = workdir / "plan.json"
    if stamp.exists():
        try:
            previous = json.loads(stamp.read_text())["layout_id"]
        except (OSError, ValueError, KeyError):
            previous = None
        if previous != plan.layout_id:
            log(f"discarding partial build {previous} in {workdir} (the manifest or sources changed)")
            shutil.rmtree(workdir)
    try:
        (workdir / "shards").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {workdir} ({err.strerror or err}); choose another --out") from None
    if not stamp.exists():
        tmp = stamp.with_name("plan.json.tmp")
        tmp.write_text(json.dumps({"layout_id": plan.layout_id, "dataset_id": plan.dataset_id,
                                   "shards": len(plan.shards)}))
        os.replace(tmp, stamp)
    remove_stale_temporaries(workdir / "shards")
    remove_stale_temporaries(workdir)


def _complete_shards(workdir: Path, plan: Plan) -> dict[int, dict]:
    done = {}
    for shard in plan.shards:
        attrs = read_shard_attrs(shard_path(workdir, shard.index))
        if (attrs and attrs.get("layout_id") == plan.layout_id and attrs.get("shard_version") == SHARD_VERSION
                and int(attrs.get("shard_index", -1)) == shard.index):
            done[shard.index] = attrs
    return done


class _Progress:
    """A tqdm bar on a terminal; otherwise a log line every ~10 % of images."""

    def __init__(self, total: int, log: Log, bar: bool | None):
        self.total, self.done, self.log, self.t0, self.next_pct = total, 0, log, time.perf_counter(), 10
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        if use_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="img", desc="datagen build", file=sys.stderr, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        pct = 100 * self.done // max(self.total, 1)
        if pct >= self.next_pct:
            self.log(f"{pct:3d}% ({self.done}/{self.total} images, {time.perf_counter() - self.t0:.1f} s)")
            self.next_pct = (pct // 10 + 1) * 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


#: Environment of local worker processes.  One thread per native library (one task per worker),
#: and glibc kept from handing memory back between images: setting any trim threshold (Dask sets
#: 64 KiB) disables the adaptive mmap threshold, so every array over 128 KiB was mmap'ed and
#: page-faulted afresh (2.3x slower); a 64 MiB mmap threshold fixes that, and a 512 MiB trim
#: threshold keeps freed heap pages for the next image instead of faulting them in again (-6 %
#: with one worker; on virtual machines that return idle memory to the host, page faults on
#: returned pages are slow).  Remote workers want the same (README).
_WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
                   "MALLOC_TRIM_THRESHOLD_": 512 * 2**20, "MALLOC_MMAP_THRESHOLD_": 64 * 2**20}


def connect(scheduler: str | None, workers: int | None):
    """A Dask client: to ``scheduler`` (``tcp://host:port``) or to a new local cluster of
    ``workers`` single-threaded processes; returns ``(client, cluster or None)``."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="15s", set_as_default=False), None
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(f"--scheduler {scheduler}: cannot connect ({str(err).splitlines()[0]}); "
                            "start one with `dask scheduler` or drop --scheduler") from None
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": _WORKER_ENVIRON}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                               preload=["datagen._worker_setup"])
    return Client(cluster, set_as_default=False), cluster


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

    bar = _Progress(sum(len(t.images) for t in tasks), log, progress)
    try:
        futures = [client.submit(run_shard, t, key=f"datagen-shard-{t.layout_id}-{t.index:05d}", pure=False) for t in tasks]
        for fut in as_completed(futures, loop=client.loop):
            if fut.status == "error":
                err = fut.exception()
                for other in futures:
                    other.cancel()
                raise err
            bar.update(fut.result()["images"])
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
        Output file (default ``output.path`` or ``corpora/<name>.h5``).
    workers : int, keyword-only
        Local worker processes (default: one per core).  Ignored with ``scheduler``.
    scheduler : str, keyword-only
        Address of an existing Dask scheduler (``tcp://host:port``).
    overwrite : bool, keyword-only
        Rebuild from scratch and replace ``out``; by default complete shards are reused
        and an up-to-date ``out`` is left alone.
    limit : int, keyword-only
        Use only this many source images (a seeded subset; part of the dataset id).
    """
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1 (got {workers})")
    plan = make_plan(manifest, limit=limit)
    out = Path(out or default_output(manifest)).absolute()
    existing = _prepare_output(out, plan, overwrite)
    if existing:
        log(f"{out} is up to date (dataset_id {plan.dataset_id})")
        return BuildResult(out, plan.dataset_id, existing["content_sha256"], existing["counts"], "up-to-date")
    workdir = out.with_name(out.name + ".incomplete")
    _prepare_workdir(workdir, plan, overwrite, log)
    done = _complete_shards(workdir, plan)
    params = manifest.generator.model_dump(mode="json")
    tasks = [ShardTask(s.index, s.split, tuple((im.index, im.key, im.path) for im in plan.shard_images(s)), params,
                       manifest.seed, plan.layout_id, str(workdir)) for s in plan.shards if s.index not in done]
    if done:
        log(f"resuming: {len(done)} of {len(plan.shards)} shards already complete")
    closer = None
    if tasks:
        closer = _run_tasks(tasks, workers=workers or len(os.sched_getaffinity(0)), scheduler=scheduler, log=log,
                            progress=progress)
    try:
        result = _finalize(plan, workdir, out)
    except OSError as err:   # disk full, quota, I/O error: the shards stay for --resume
        raise OutputError(f"cannot write {out} ({err.strerror or err}); free space or choose another --out, "
                          "then rerun: the complete shards are reused") from None
    finally:
        if closer is not None:
            closer.join()
    shutil.rmtree(workdir, ignore_errors=True)
    result.shards_built, result.shards_reused = len(tasks), len(done)
    result.seconds = time.perf_counter() - t0
    return result


def _finalize(plan: Plan, workdir: Path, out: Path) -> BuildResult:
    cls = get_generator(plan.manifest.generator.kind)
    gen = cls(plan.manifest.generator)
    fields = {name: (f.dtype, f.shape) for name, f in gen.fields().items()}
    fields["source"] = ("int32", ())
    classes = gen.classes()
    shards, stats, digests = [], [], {}
    per_class = {s: np.zeros(len(classes), np.int64) for s in SPLITS}
    for shard in plan.shards:
        path = shard_path(workdir, shard.index)
        attrs = read_shard_attrs(path)
        if attrs is None or attrs.get("layout_id") != plan.layout_id:
            raise RuntimeError(f"shard {path} is missing or incomplete after the build")
        shards.append((path, shard.split, int(attrs["n_samples"])))
        rows = json.loads(attrs["sources"])
        stats.extend(rows)
        digests.update((row["index"], d) for row, d in zip(rows, json.loads(attrs["digests"]), strict=True))
        per_class[shard.split] += np.asarray(json.loads(attrs["label_counts"]), np.int64)
    stats.sort(key=lambda s: s["index"])
    split_of = {im.index: im.split for im in plan.images}
    sources = [{"key": s["key"], "split": split_of[s["index"]], **{k: v for k, v in s.items() if k not in ("key", "index")}}
               for s in stats]
    counts = {s: {"samples": int(per_class[s].sum()), "images": sum(1 for r in sources if r["split"] == s),
                  "per_class": [int(c) for c in per_class[s]]} for s in SPLITS}
    m = plan.manifest
    attrs = {
        "dataset_id": plan.dataset_id,
        "name": m.name,
        "generator": m.generator.kind,
        "generator_version": cls.VERSION,
        "manifest": {"name": m.name, "description": m.description, **m.content(),
                     "output": m.output.model_dump(mode="json", exclude={"path"}), "limit": plan.limit},
        "fields": {k: {"dtype": f.dtype, "shape": list(f.shape), "doc": f.doc} for k, f in gen.fields().items()}
                  | {"source": {"dtype": "int32", "shape": [], "doc": "row of /sources"}},
        "classes": classes,
        "counts": counts,
        "versions": versions(),
    }
    digest = consolidate(out, shards, fields, sources=sources, digests=digests, attrs=attrs,
                         compression=m.output.compression)
    return BuildResult(out, plan.dataset_id, digest, counts, "built", images=len(sources),
                       samples=sum(c["samples"] for c in counts.values()), stats=sources)
