"""Benchmark: ``kf_layered`` (Krishnan-Fergus deconvolution per disk level, layered by a radius map).

    .venv/bin/python benchmarks/bench_kf_layered.py [--image PATH] [--workers 2] [--repeat 3] [--w-step]

On a real photo (default: Kodak ``kodim01``, 768x512, from ``../shared/data/kodak24``; ``--image``
for another) blurred by a horizontal ramp map (disk radius 0.5 at the left edge to 6.0 px at the right,
quantised to the 23 levels: every level present, 0.5 = sharp copy) it prints, best of ``--repeat``
after a warm-up, with ``scipy.fft`` on ``--workers`` threads:

  * the levels present (and pixels per level) and seconds per level (the best run's),
  * the total: seconds and seconds per megapixel,
  * the same with ``w_solver="exact"`` (closed-form quartic instead of the table),
  * with ``--w-step``: the w-step alone (table vs closed form) on the sharp photo's horizontal
    differences, ns per value, per beta of the schedule and summed.

Measured 2026-12-02 on the shared 2-core EPYC (load average 2.3-3.0 from other jobs), kodim01 as
stored here (500x500, 0.25 MP), 2 fft threads, best of 3: 22 levels deconvolved (0.12-0.25 s each,
larger disks slower: wider extension), 3.64 s in all = 14.6 s/MP with the table, 4.49 s = 18.0 s/MP
with the closed-form w-step; the w-step alone over the six betas: 20.6 ns (table) vs 37.9 ns
(closed form) per value.  Figures depend on the machine's load: quote ``uptime`` with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from datagen import psf
from datagen.blur_maps import quantize_to_levels
from datagen.imageio import read_rgb
from methods.classical import kf_deconv
from methods.classical.kf_deconv import KF_LEVELS, KFLayered, kf_layered

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared/data/kodak24/kodim01.png"


def _best(fn, repeat: int):
    fn()
    best, best_out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        if dt < best:
            best, best_out = dt, out
    return best, best_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--workers", type=int, default=2, help="scipy.fft threads")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--w-step", action="store_true", help="also time the w-step alone")
    a = ap.parse_args()
    if not a.image.is_file():
        raise SystemExit(f"missing {a.image} (give --image)")
    sharp = read_rgb(a.image)
    h, w = sharp.shape[:2]
    mp = h * w / 1e6
    ramp = np.broadcast_to(np.linspace(0.5, 6.0, w), (h, w))
    idx = quantize_to_levels(ramp, levels=KF_LEVELS)
    rmap = np.asarray((0.0,) + KF_LEVELS)[idx]
    blurred = (np.round(psf.varying_disk_blur(sharp, rmap) * 255) / 255).astype(np.float32)
    p = KFLayered.Params()
    opts = {"lam": p.lam, "alpha": p.alpha, "levels": p.levels, "boundary": p.boundary, "pad": p.pad,
            "taper_passes": p.taper_passes, "workers": a.workers}
    levels, counts = np.unique(np.where(rmap <= 0.5, 0, idx), return_counts=True)
    print(f"{a.image.name}: {w}x{h} ({mp:.3f} MP), ramp map 0.5..6 px, {len(levels) - (levels[0] == 0)} "
          f"levels to deconvolve + sharp; "
          f"lam {p.lam:g}, boundary {p.boundary}, {a.workers} fft threads, best of {a.repeat}")
    for solver in ("lut", "exact"):
        t, (_, timings) = _best(lambda s=solver: kf_layered(blurred, rmap, w_solver=s, return_timings=True, **opts),
                                a.repeat)
        if solver == "lut":
            print(f"{'level r':>8s} {'pixels':>8s} {'s':>7s}")
            for i, n in zip(levels, counts):
                if i == 0:
                    print(f"{'<= 0.5':>8s} {n:8d} {0.0:7.3f}  (sharp: copied)")
                else:
                    r = KF_LEVELS[i - 1]
                    print(f"{r:8.2f} {n:8d} {timings[r]:7.3f}")
        n_deconv = len(timings)
        print(f"w_solver={solver}: {t:.2f} s total, {t / mp:.2f} s/MP, {t / max(n_deconv, 1):.3f} s per level "
              f"({n_deconv} deconvolutions)")
    if a.w_step:
        x = np.moveaxis(sharp, -1, 0).copy()       # late iterates approach the sharp image
        g = kf_deconv._forward_diff(x, -1)
        print(f"w-step on the sharp photo's {g.size} horizontal differences (float32), alpha {p.alpha:.4g}:")
        total = {"lut": 0.0, "exact": 0.0}
        beta = p.beta_start
        while beta < p.beta_max:
            row = []
            for m in total:
                dt, _ = _best(lambda b=beta, m=m: kf_deconv.solve_w(g, b, p.alpha, method=m), max(a.repeat, 5))
                total[m] += dt / g.size * 1e9
                row.append(f"{m} {dt / g.size * 1e9:5.1f} ns")
            tau = kf_deconv.w_threshold(beta, p.alpha)[0]
            print(f"  beta {beta:6.1f} ({np.mean(np.abs(g) > tau):5.1%} above tau): " + ", ".join(row))
            beta *= p.beta_rate
        print("  schedule total per value: " + ", ".join(f"{m} {t:.1f} ns" for m, t in total.items()))


if __name__ == "__main__":
    main()
