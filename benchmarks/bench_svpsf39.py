"""Benchmark: the svpsf39 corpus (SVBR-Net, Karaali & Jung 2022) -- per-map stages on one core, and
whole builds from the real manifest.

Run from the repository root (needs ``../shared/data``)::

    .venv/bin/python benchmarks/bench_svpsf39.py                         # stages + 8 images, 2 workers
    .venv/bin/python benchmarks/bench_svpsf39.py --limit 20 --workers 1,2 --json out.json
    .venv/bin/python benchmarks/bench_svpsf39.py --stages-only

**Stages** (one 360 x 340 map of a real photo, ``coco_imagenet_sharp`` first COCO file resized as
the train split is; one thread: ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` are set before numpy loads; best
of ``--repeat``), seconds per map:

render      the image under a family-10 map: ``disk_blur_stack`` (22 whole-image blurs; once per
            image, shared by its maps: printed per image) + ``select_levels`` + rounding (per map).
edges       Canny on the blurred image's gray (sigma 1).
dt          the DT "estimated-like" map: the guide's self-filtering (RF 7 / 0.5 / 5) and the
            normalised propagation (sigma_s = min(H, W) / 8, 3.75, 5).  Target (issue 10): <= 0.2 s.
matting     the matting map: the matting Laplacian of the blurred image + the sparse solve.
            Target: **<= 1.0 s** on one core.

**Builds** of ``manifests/coco_imagenet_svpsf39_small.yaml`` (13 maps per image) with ``--limit N``
photos, per worker count w:

build s      wall clock of ``datagen.runner.build(..., workers=w)`` (planning, the Dask LocalCluster,
             the workers' imports, generation, gzip consolidation).
maps/s       blurred images (maps) written per second; ``samples`` are images (one row each).
decode s     the time to only decode the same files to RGB in a warmed-up ``Pool(w)``; ratio = build s
             / decode s (the generator does ~39 sparse solves per image, so it is large by nature).
core-s/img   build s x w / images: the cost of one image (13 maps) on one core.
MB/img       corpus file size per image (gzip).

The full corpus (702 images x 39 maps) is then estimated as ``3 x core-s/img x 702 / cores``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")            # before numpy loads: the stages are timed on one core

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from decode_floor import time_decode  # benchmarks/ is the script's folder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = (REPO / ".." / "shared" / "data").resolve()
MANIFEST = "coco_imagenet_svpsf39_small"


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def stages(repeat: int) -> dict:
    import cv2

    from datagen import psf
    from datagen.blur_maps import SVBR_LEVELS, family_map, quantize_to_levels
    from datagen.domain_transform import dt_propagate, recursive_filter
    from datagen.edges import canny_edges
    from datagen.imageio import read_image
    from datagen.propagate import matting_laplacian, propagate_sparse, solve_propagation

    photo = min((DATA / "coco_imagenet_sharp" / "coco").glob("*.jpg"))
    image, _ = read_image(str(photo), color="rgb")
    sharp = cv2.resize(image, (340, 360), interpolation=cv2.INTER_LINEAR)
    idx = quantize_to_levels(family_map(10, np.random.default_rng(0), height=360, width=340))
    radii = np.concatenate([[0.0], SVBR_LEVELS])
    t_stack, stack = _best(lambda: psf.disk_blur_stack(sharp, SVBR_LEVELS), repeat)
    t_select, blurred = _best(lambda: np.clip(np.rint(psf.select_levels(stack, idx)), 0, 255).astype(np.uint8), repeat)
    t_edges, edges = _best(lambda: canny_edges(blurred, channel="gray", sigma=1.0), repeat)
    img = blurred / 255.0
    gt = radii[idx]

    def dt():
        guide = recursive_filter(img, img, sigma_s=7.0, sigma_r=0.5, iterations=5)
        return dt_propagate(gt, edges, guide, sigma_s=340 / 8.0, sigma_r=3.75, iterations=5)

    t_dt, _ = _best(dt, repeat)
    t_lap, lap = _best(lambda: matting_laplacian(img, epsilon=1e-7), repeat)
    t_solve, _ = _best(lambda: solve_propagation(lap, gt, edges, lam=1e-3), repeat)
    t_matting, _ = _best(lambda: propagate_sparse(gt, edges, img, lam=1e-3, epsilon=1e-7), repeat)
    out = {"photo": photo.name, "edge_fraction": round(float(edges.mean()), 4),
           "stack_per_image_s": round(t_stack, 4), "render_s": round(t_select, 4), "edges_s": round(t_edges, 4),
           "dt_s": round(t_dt, 4), "matting_laplacian_s": round(t_lap, 4), "matting_solve_s": round(t_solve, 4),
           "matting_s": round(t_matting, 4)}
    print(f"stages, one 360x340 map of {photo.name} ({100 * edges.mean():.1f} % edge pixels), 1 thread, best of {repeat}:")
    print(f"  disk_blur_stack {t_stack:.3f} s per image | render {t_select:.3f} s | edges {t_edges:.3f} s | "
          f"dt {t_dt:.3f} s (target <= 0.2) | matting {t_matting:.3f} s = Laplacian {t_lap:.3f} + solve {t_solve:.3f} "
          f"(target <= 1.0)", flush=True)
    return out


def builds(limit: int, workers: list[int], trials: int) -> list[dict]:
    from datagen.generators.svpsf39 import SVPSF39
    from datagen.manifest import load_manifest
    from datagen.plan import make_plan
    from datagen.runner import build

    manifest = load_manifest(REPO / "manifests" / f"{MANIFEST}.yaml")
    gen = SVPSF39(manifest.generator)
    plan = make_plan(manifest, limit=limit)
    files = [im.path for im in plan.images]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_svpsf39_") as tmp:
        for w in workers:
            t0 = time.perf_counter()
            res = build(manifest, out=Path(tmp) / f"svp-{w}.h5", workers=w, overwrite=True, limit=limit,
                        progress=False, log=lambda m: None)
            seconds = time.perf_counter() - t0
            decode = time_decode(files, w, trials, mode="RGB")
            maps = sum(c["samples"] for c in res.counts.values()) * gen.maps_per_image
            per_image = seconds * w / len(files)
            row = {"images": len(files), "workers": w, "build_s": round(seconds, 2), "maps": maps,
                   "maps_per_s": round(maps / seconds, 2), "decode_s": round(decode, 3),
                   "ratio": round(seconds / decode, 1), "core_s_per_image": round(per_image, 2),
                   "mb_per_image": round(res.path.stat().st_size / 1e6 / len(files), 2),
                   "full_corpus_core_h": round(3 * per_image * 702 / 3600, 1)}
            rows.append(row)
            print(f"{MANIFEST} {row['images']} img w={w}: build {row['build_s']:.1f} s, {maps} maps, "
                  f"{row['maps_per_s']:.2f} maps/s, decode {row['decode_s']:.3f} s, ratio {row['ratio']:.0f}, "
                  f"{row['core_s_per_image']:.1f} core-s/img (13 maps), {row['mb_per_image']} MB/img; full corpus "
                  f"(702 x 39 maps) ~{row['full_corpus_core_h']} core-hours", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=8, help="photos per build (seeded subset)")
    ap.add_argument("--workers", default="2", help="comma-separated worker counts")
    ap.add_argument("--repeat", type=int, default=3, help="stage timings: best of")
    ap.add_argument("--trials", type=int, default=2, help="decode trials (best of)")
    ap.add_argument("--stages-only", action="store_true")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if not (DATA / "coco_imagenet_sharp").is_dir():
        sys.exit(f"bench_svpsf39: {DATA / 'coco_imagenet_sharp'} not found (the real photos live in ../shared/data)")
    out = {"load_average": os.getloadavg(), "stages": stages(args.repeat)}
    if not args.stages_only:
        out["builds"] = builds(args.limit, [int(w) for w in args.workers.split(",")], args.trials)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
