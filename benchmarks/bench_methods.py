"""Seconds per megapixel of every registered method, one process, one thread per library.

    .venv/bin/python benchmarks/bench_methods.py                 # built-in photos at 512 px
    .venv/bin/python benchmarks/bench_methods.py --images ../shared/data/cuhk/images/*.jpg

Each method runs once on every image to warm up (imports, caches), then ``--repeat`` times;
the figure is the best total wall time / total megapixels.  The harness's own timings
(``timings.parquet``, report "Timings") are per prediction inside Dask workers, so they also
carry the contention of the other worker on the same cores.
"""
from __future__ import annotations

import argparse
import os
import time

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from datagen.imageio import read_rgb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="*", help="image files (default: 4 built-in photos at 512 px)")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from methods import create_method, list_methods
    if args.images:
        images = [(os.path.basename(p), read_rgb(p)) for p in args.images]
    else:
        from bench.datasets.synthetic import load_builtin
        images = [(n, load_builtin(n, 512)) for n in ("astronaut", "coffee", "rocket", "motorcycle")]
    mp = sum(im.shape[0] * im.shape[1] for _, im in images) / 1e6
    print(f"{len(images)} images, {mp:.2f} MP in all; best of {args.repeat}")
    print(f"{'method':16s} {'s/MP':>9s} {'s/image':>9s}")
    for name in list_methods(args.methods):
        method = create_method(name)
        if method.NEEDS_MAP:       # a deblurring method: timed on a horizontal ramp of radii 0.5..6 px

            def run(im, method=method):
                ramp = np.broadcast_to(np.linspace(0.5, 6.0, im.shape[1], dtype=np.float32), im.shape[:2])
                return method.predict_with_map(im, np.ascontiguousarray(ramp))
        else:
            run = method.predict
        for _, im in images:
            run(im)
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _, im in images:
                run(im)
            best = min(best, time.perf_counter() - t0)
        print(f"{name:16s} {best / mp:9.3f} {best / len(images):9.3f}")


if __name__ == "__main__":
    main()
