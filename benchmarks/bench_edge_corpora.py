"""Benchmark: build the Karaali 2022 corpora (disk23_edges, depth_edges) from their real manifests.

Run from the repository root (needs ``../shared/data``)::

    .venv/bin/python benchmarks/bench_edge_corpora.py                    # 40 images each, 2 workers
    .venv/bin/python benchmarks/bench_edge_corpora.py --limit 100 --workers 1,2 --json out.json

For each manifest (``manifests/coco_imagenet_disk23.yaml``, ``manifests/sod_depth_edges.yaml``) and
worker count w, with ``--limit N`` primary images (a seeded subset, as ``datagen build --limit``):

build s      wall clock of ``datagen.runner.build(..., workers=w, overwrite=True)``: planning, the Dask
             LocalCluster start and stop, the workers' imports, generation and consolidation.
samples/s    samples written per second of build.
decode s     wall clock to only decode the same source files to RGB pixels (the objects, their masks
             and the backgrounds they draw) in a warmed-up spawn Pool(w): the floor for any builder.
ratio        build s / decode s.
per image    build s x w / images: the generator's cost per primary image on one core.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from decode_floor import time_decode  # benchmarks/ is the script's folder

MANIFESTS = ("coco_imagenet_disk23", "sod_depth_edges")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=40, help="primary images per corpus (seeded subset)")
    ap.add_argument("--workers", default="2", help="comma-separated worker counts")
    ap.add_argument("--manifests", default=",".join(MANIFESTS))
    ap.add_argument("--trials", type=int, default=2, help="decode trials (best of)")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    from datagen.manifest import load_manifest
    from datagen.plan import make_plan
    from datagen.runner import build

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_edges_") as tmp:
        for name in args.manifests.split(","):
            manifest = load_manifest(REPO / "manifests" / f"{name}.yaml")
            plan = make_plan(manifest, limit=args.limit)
            primaries = [im for im in plan.images if im.role == "primary"]
            files = [im.path for im in plan.images] + [im.mask for im in primaries if im.mask]
            for w in (int(x) for x in args.workers.split(",")):
                t0 = time.perf_counter()
                res = build(manifest, out=Path(tmp) / f"{name}-{w}.h5", workers=w, overwrite=True, limit=args.limit,
                            progress=False, log=lambda m: None)
                seconds = time.perf_counter() - t0
                decode = time_decode(files, w, args.trials, mode="RGB")
                n = sum(c["samples"] for c in res.counts.values())
                per_class = {s: c["per_class"] for s, c in res.counts.items() if c["samples"]}
                rows.append({"corpus": name, "images": len(primaries), "files_decoded": len(files), "workers": w,
                             "build_s": round(seconds, 2), "samples": n, "samples_per_s": round(n / seconds, 1),
                             "decode_s": round(decode, 3), "ratio": round(seconds / decode, 1),
                             "per_image_core_s": round(seconds * w / len(primaries), 3),
                             "size_mb": round(res.path.stat().st_size / 1e6, 1), "per_class": per_class})
                r = rows[-1]
                print(f"{name:22s} {r['images']:4d} img  w={w}  build {r['build_s']:7.2f} s  {r['samples']:7d} samples "
                      f"{r['samples_per_s']:8.1f}/s  decode {r['decode_s']:6.3f} s  ratio {r['ratio']:6.1f}  "
                      f"{r['per_image_core_s']:.2f} core-s/img  {r['size_mb']} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
