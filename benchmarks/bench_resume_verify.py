"""Benchmark: the cost of re-hashing reused shards when a build resumes.

Run from the repository root::

    .venv/bin/python benchmarks/bench_resume_verify.py                 # R = 8 (48 images)
    .venv/bin/python benchmarks/bench_resume_verify.py --repeat 32 --trials 3

The six DIV2K PNGs under ``--data`` are laid out as a DIV2K root and repeated R times with
hard links (as ``bench_gauss20.py`` does), and every shard of the ``div2k_gauss20`` manifest is
written into the work folder of an output, as a killed build would have left them.  Then:

verify s      wall clock of the resume check the build runs on those shards
              (``datagen.runner._reusable_shards``: attributes parsed and checked, every dataset
              re-hashed image by image against the digests the workers stored, labels recounted),
              best of ``--trials`` (warm page cache, as right after a crash).
parse s       the same check without the re-hash (``check_shard(verify=False)``): what resume
              cost before shards were verified.
MB, MB/s      bytes of shard data re-hashed, and their rate through ``verify s``.
sha256 MB/s   hashlib's SHA-256 on one 64 MB buffer in this process: the ceiling of the rate.
resume s      wall clock of ``build()`` on the complete work folder (verify + consolidation, no
              Dask cluster: nothing is left to build), once, and the share of it spent verifying.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gauss20 import TRAIN, VALID, layout


def _best(fn, trials: int) -> float:
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sha256_rate() -> float:
    buf = os.urandom(1 << 20) * 64
    t0 = time.perf_counter()
    hashlib.sha256(buf).digest()
    return len(buf) / 1e6 / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "div2k_valid_hr")
    ap.add_argument("--manifest", type=Path, default=REPO / "manifests" / "div2k_gauss20.yaml")
    ap.add_argument("--repeat", type=int, default=8, help="copies of each image (hard links)")
    ap.add_argument("--trials", type=int, default=3, help="repeat the verification, keep the best")
    args = ap.parse_args()
    data = args.data.resolve()
    missing = [s for s in TRAIN + VALID if not (data / f"{s}.png").is_file()]
    if missing:
        print(f"bench_resume_verify: {data} lacks {', '.join(m + '.png' for m in missing)}; "
              "pass --data DIR holding the six DIV2K PNGs", file=sys.stderr)
        return 2

    import h5py

    from datagen.manifest import load_manifest
    from datagen.plan import make_plan
    from datagen.runner import _reusable_shards, build, shard_tasks
    from datagen.shard import check_shard, run_shard

    with tempfile.TemporaryDirectory(prefix="bench_resume_verify_") as tmp:
        root = Path(tmp) / "div2k"
        layout(data, root, args.repeat)
        os.environ["DIV2K_ROOT"] = str(root)
        manifest = load_manifest(args.manifest)
        plan = make_plan(manifest)
        out = Path(tmp) / "corpus.h5"
        tasks = shard_tasks(plan, out)
        tasks[0].path.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        for task in tasks:                      # what a killed build leaves: every shard complete
            run_shard(task)
        make_s = time.perf_counter() - t0
        nbytes = 0
        for task in tasks:
            with h5py.File(task.path, "r") as f:
                nbytes += sum(f[name].id.get_storage_size() for name in f)
        for task in tasks:                      # warm page cache, as right after the crash
            task.path.read_bytes()

        def check_all() -> None:
            done, todo = _reusable_shards(tasks, log=print)
            assert len(done) == len(tasks) and not todo

        verify_s = _best(check_all, args.trials)
        parse_s = _best(lambda: [check_shard(t, verify=False) for t in tasks], args.trials)
        rate = _sha256_rate()
        t0 = time.perf_counter()
        res = build(manifest, out=out, progress=False, log=lambda m: None)
        resume_s = time.perf_counter() - t0
        assert res.shards_reused == len(tasks) and res.shards_built == 0

    mb = nbytes / 1e6
    print(f"bench_resume_verify: {args.manifest.name}, data {data}, R={args.repeat}: {len(plan.images)} images, "
          f"{len(tasks)} shards, {res.samples} samples, {mb:.1f} MB of shard data "
          f"(written serially in {make_s:.1f} s); best of {args.trials}")
    print(f"  verify s {verify_s:.3f}  ({mb / verify_s:.0f} MB/s; {1e3 * verify_s / len(tasks):.1f} ms per shard)")
    print(f"  parse s  {parse_s:.3f}  (attributes only: the check before shards were re-hashed)")
    print(f"  sha256 MB/s in this process: {rate:.0f}")
    print(f"  resume s {resume_s:.3f}  (build() on the complete work folder: verify + consolidate; "
          f"verify is {100 * verify_s / resume_s:.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
