"""Cost of the content-based up-to-date check: ``make_plan`` (list, header-check and hash the
sources, compute the dataset id) on N DIV2K-sized PNGs, with and without the hash cache.

The six DIV2K validation PNGs (~2.8-3.9 MB) in ``../shared/data/div2k_valid_hr`` are laid out
as a DIV2K root, ``DIV2K_train_HR/0001.png .. NNNN.png``, by hard links (default) or copies
(``--copies``, times preserved; N x ~3.4 MB of disk).  Measured, best of ``--trials``:

* ``list``: listing and header checks only (what the size-based id of format v2 cost);
* ``cold``: ``make_plan`` with an empty hash cache (every file hashed, cache written);
* ``warm``: ``make_plan`` again, every digest from the cache (stat signatures unchanged);
* ``hash``: plain SHA-256 of all files (no cache) with 1 thread and the default thread count,
  in MB/s.  Files come from the page cache: a cold disk is slower (its read rate bounds it).

Hard links share one inode, but the cache is keyed by path, so a cold run still hashes N files.

    .venv/bin/python benchmarks/bench_uptodate.py                 # 800 hard links, 3 trials
    .venv/bin/python benchmarks/bench_uptodate.py --copies --json uptodate.json

Measured on 2 shared cores (SHA-NI; other jobs running, load 2.5-7), 800 files = 2.78 GB,
best of 3 per run, over 4 runs (3 hard links, 1 copies):

    list + header checks     0.07-0.09 s
    cold (no cache)          2.2-4.0 s     hashing dominates
    warm (cache hits)        0.12-0.17 s   of which list + header checks 0.07-0.09 s
    SHA-256, 1 thread        755-1298 MB/s
    SHA-256, 6 threads       1156-1981 MB/s
    cache file               154 kB (~190 bytes per file)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datagen.filehash import CACHE_NAME, sha256_files
from datagen.manifest import parse_manifest
from datagen.plan import make_plan
from datagen.sources import list_source


def layout(data: Path, root: Path, n: int, *, copies: bool) -> list[Path]:
    """``root/DIV2K_train_HR/0001.png ..``: the PNGs of ``data`` in turn, linked or copied."""
    pngs = sorted(data.glob("*.png"))
    if not pngs:
        sys.exit(f"no PNGs in {data}")
    sub = root / "DIV2K_train_HR"
    sub.mkdir(parents=True)
    out = []
    for i in range(n):
        dst = sub / f"{i + 1:04d}.png"
        if copies:
            shutil.copy2(pngs[i % len(pngs)], dst)   # keeps the mtime: not "racy", cacheable at once
        else:
            os.link(pngs[i % len(pngs)], dst)
        out.append(dst)
    return out


def best(fn, trials: int, setup=lambda: None) -> float:
    times = []
    for _ in range(trials):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "div2k_valid_hr")
    ap.add_argument("--n", type=int, default=800, help="files in the DIV2K root")
    ap.add_argument("--copies", action="store_true", help="copy the files instead of hard-linking them")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-uptodate-") as tmp:
        tmp = Path(tmp)
        files = layout(args.data, tmp / "div2k", args.n, copies=args.copies)
        total_mb = sum(p.stat().st_size for p in files) / 1e6
        cache = tmp / "cache"
        os.environ["DEFOCUSBENCH_CACHE"] = str(cache)
        manifest = parse_manifest({
            "name": "bench_uptodate", "seed": 1, "generator": {"kind": "gauss20"},
            "sources": [{"kind": "div2k", "root": str(tmp / "div2k"), "subset": "train",
                         "split": {"train": 0.8, "val": 0.2}}]})

        def fresh_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        def plan() -> None:
            make_plan(manifest)

        make_plan(manifest)   # warm the page cache and imports
        res = {"files": args.n, "megabytes": round(total_mb, 1), "links": not args.copies,
               "threads_default": min(32, (os.cpu_count() or 1) + 4)}
        res["list_s"] = best(lambda: list_source(manifest, 0), args.trials)
        res["cold_s"] = best(plan, args.trials, setup=fresh_cache)
        assert (cache / CACHE_NAME).exists(), "the cold run stored no digests"
        res["warm_s"] = best(plan, args.trials)
        for threads in (1, res["threads_default"]):
            seconds = best(lambda t=threads: sha256_files(files, use_cache=False, threads=t), args.trials)
            res[f"hash_{threads}t_mb_s"] = round(total_mb / seconds)
        res["cache_bytes"] = (cache / CACHE_NAME).stat().st_size

    print(f"{res['files']} files, {res['megabytes']} MB ({'hard links' if res['links'] else 'copies'}), "
          f"best of {args.trials}")
    print(f"  list + header checks        {res['list_s']:.3f} s")
    print(f"  up-to-date check, cold      {res['cold_s']:.3f} s   (no cache: hash everything)")
    print(f"  up-to-date check, warm      {res['warm_s']:.3f} s   (cache hits)")
    print(f"  plain SHA-256, 1 thread     {res['hash_1t_mb_s']} MB/s")
    many = res["threads_default"]
    print(f"  plain SHA-256, {many} threads    {res[f'hash_{many}t_mb_s']} MB/s")
    print(f"  cache file                  {res['cache_bytes'] / 1e3:.0f} kB")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
