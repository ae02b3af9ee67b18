"""Choose ``kf_layered``'s data weight ``lam`` on our own synthetic data (``METHODS.md`` 2.7, ambiguity 24).

    .venv/bin/python scripts/tune_kf_lambda.py [--data ../shared/data/kodak24] [--lams 500,1000,...]
                                               [--size 256] [--noise S] [--compare-boundaries]

Data: the centre ``--size`` x ``--size`` crops of six Kodak photos (:data:`IMAGES`), each blurred

* uniformly with the disk of radius 1, 2.5, 4 and 5.5 px (:func:`datagen.psf.disk_blur`, reflect
  border), and
* spatially varying (:func:`datagen.psf.varying_disk_blur`) by four SVBR-style maps
  (:func:`datagen.blur_maps.family_map`: family 1 horizontal ramp, 2 vertical ramp, 6 horizontal steps
  down, 11 the product of two ramps, with sharp regions; one generator seeded 0 per image), quantised to
  the 23 levels 0.5..6 first,

then rounded to uint8 (``round(255 y) / 255``, like a real 8-bit image; ``--noise S`` adds Gaussian
noise of std S/255 first).  Each blurred image is deblurred by
:func:`methods.classical.kf_deconv.kf_layered` with its *true* map (constant for the uniform blurs),
the other parameters at :class:`~methods.classical.kf_deconv.KFLayered`'s defaults, for every ``lam``
of the grid; the score is PSNR against the sharp crop (:func:`bench.metrics.fidelity.psnr`, RGB in
[0, 1]).  The chosen ``lam`` is the largest of the grid whose mean PSNR beats the blurry input on
*every* kind of blur (each uniform radius and each map family): larger values keep gaining on uniform
blur but ring across the level boundaries of spatially varying maps.

Measured 2026-12-02 (2-core EPYC shared with other jobs, load 1.5-3.7; 4 min; PSNR dB, mean over the
six images; ``unif`` / ``vary`` = mean of the uniform / varying columns):

         lam     r=1   r=2.5     r=4   r=5.5  ramp-r  ramp-d   steps    prod    unif    vary    mean
      blurry   30.32   24.20   22.51   21.64   23.98   24.16   22.39   25.88   24.67   24.10   24.39
         500   32.65   26.05   24.10   23.14   25.60   25.95   24.00   27.08   26.49   25.66   26.07
        1000   34.50   26.85   24.66   23.65   26.21   26.63   24.57   26.83   27.41   26.06   26.74
        2000   36.30   27.85   25.40   24.29   26.93   27.40   25.34   26.04   28.46   26.43   27.44  <- chosen
        3000   37.30   28.55   25.93   24.74   27.36   27.88   25.86   25.27   29.13   26.59   27.86
        4000   37.98   29.09   26.33   25.09   27.62   28.22   26.26   24.64   29.62   26.68   28.15
        6000   38.88   29.91   26.95   25.61   27.73   28.53   26.83   23.61   30.34   26.68   28.51
        8000   39.48   30.51   27.39   26.01   27.44   28.37   27.23   22.69   30.85   26.43   28.64  <- best mean
       11000   40.09   31.18   27.89   26.46   26.74   27.52   27.65   21.45   31.41   25.84   28.62
       16000   40.72   31.94   28.49   27.01   25.32   25.65   28.04   19.73   32.04   24.69   28.36

Caveats read off the table: uniform blur keeps gaining with ``lam`` (almost noise-free data); the
varying maps peak at 4000-6000, and on the ``prod`` maps (many level boundaries next to sharp regions)
every ``lam`` >= 3000 ends *below* the blurry input (25.88 dB) -- the layered method deconvolves each level over
regions blurred by other kernels, and that ringing grows with ``lam``.  With ``--noise 1`` (std 1/255)
the mean peaks at 6000 (28.09 dB; 8000: 28.04; 2000: 27.35).

The default ``lam`` of ``KFLayered.Params`` is the one printed on the ``chosen lam`` line: 2000 (the KF
demo's value too).  On ``synth_defocus`` (three vertical bands of radius 0.5-6 px, the quick profile's
160-px photos) the mean PSNR with the true map is 23.71 / 23.28 / 22.64 / 22.02 / 21.42 dB at lam 1000 /
2000 / 4000 / 6000 / 8000 against 22.03 blurry: the same lesson.
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

from bench.metrics.fidelity import psnr
from datagen import psf
from datagen.blur_maps import family_map, quantize_to_levels
from datagen.imageio import read_rgb
from methods.classical.kf_deconv import KF_LEVELS, KFLayered, kf_layered

IMAGES = ("kodim01", "kodim03", "kodim05", "kodim08", "kodim13", "kodim23")
UNIFORM_RADII = (1.0, 2.5, 4.0, 5.5)
SV_FAMILIES = {"ramp-r": 1, "ramp-d": 2, "steps": 6, "prod": 11}
DEFAULT_LAMS = (500, 1000, 2000, 3000, 4000, 6000, 8000, 11000, 16000)


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise SystemExit(f"image {h}x{w} is smaller than --size {size}")
    t, l = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[t:t + size, l:l + size])


def _round_u8(img: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(img, 0, 1) * 255.0) / 255.0).astype(np.float32)


def make_cases(data: Path, size: int, noise: float = 0.0) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(image, case, sharp, blurred_uint8, true_radius_map)`` for every image and blur; ``noise``: the
    std of Gaussian noise added before the uint8 rounding, in 8-bit levels (seeded)."""
    cases = []
    noise_rng = np.random.default_rng(1)

    def _u8(img: np.ndarray) -> np.ndarray:
        if noise:
            img = img + noise_rng.normal(0.0, noise / 255.0, img.shape)
        return _round_u8(img)

    for name in IMAGES:
        path = data / f"{name}.png"
        if not path.is_file():
            raise SystemExit(f"missing {path} (give --data)")
        sharp = _crop(read_rgb(path), size)
        for r in UNIFORM_RADII:
            cases.append((name, f"r={r:g}", sharp, _u8(psf.disk_blur(sharp, r)), np.full((size, size), r)))
        rng = np.random.default_rng(0)
        for case, fam in SV_FAMILIES.items():
            idx = quantize_to_levels(family_map(fam, rng, height=size, width=size), levels=KF_LEVELS)
            rmap = np.where(idx > 0, np.asarray((0.0,) + KF_LEVELS)[idx], 0.0)
            cases.append((name, case, sharp, _u8(psf.varying_disk_blur(sharp, rmap)), rmap))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak24")
    ap.add_argument("--lams", default=",".join(str(v) for v in DEFAULT_LAMS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1, help="scipy.fft threads")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="Gaussian noise std (8-bit levels) added before the uint8 rounding (default 0)")
    ap.add_argument("--compare-boundaries", action="store_true",
                    help="also print the PSNR of the boundary options at the chosen lam")
    a = ap.parse_args()
    lams = [float(v) for v in a.lams.split(",")]
    defaults = KFLayered.Params().model_dump()
    opts = {k: defaults[k] for k in ("alpha", "beta_start", "beta_rate", "beta_max", "inner_iterations",
                                     "boundary", "pad", "taper_passes", "w_solver")}
    t0 = time.perf_counter()
    cases = make_cases(a.data, a.size, a.noise)
    labels = list(dict.fromkeys(c for _, c, *_ in cases))
    print(f"{len(IMAGES)} images x {len(labels)} blurs = {len(cases)} cases, {a.size}x{a.size}; "
          f"noise {a.noise:g}/255; defaults {opts}")

    def row(scores: dict[str, list[float]]) -> str:
        uni = [s for c in labels if c.startswith("r=") for s in scores[c]]
        var = [s for c in labels if not c.startswith("r=") for s in scores[c]]
        return " ".join(f"{np.mean(scores[c]):7.2f}" for c in labels) + \
            f" {np.mean(uni):7.2f} {np.mean(var):7.2f} {np.mean(uni + var):7.2f}"

    head = " ".join(f"{c:>7s}" for c in labels)
    print(f"{'lam':>8s} {head} {'unif':>7s} {'vary':>7s} {'mean':>7s}   (PSNR dB)")
    blurry = {c: [psnr(s, b) for _, cc, s, b, _ in cases if cc == c] for c in labels}
    print(f"{'blurry':>8s} " + row(blurry))
    means, safe = {}, []
    for lam in lams:
        scores = {c: [] for c in labels}
        for _, case, sharp, blurred, rmap in cases:
            out = kf_layered(blurred, rmap, lam=lam, workers=a.workers, **opts)
            scores[case].append(psnr(sharp, out))
        means[lam] = float(np.mean([s for c in labels for s in scores[c]]))
        if all(np.mean(scores[c]) > np.mean(blurry[c]) for c in labels):
            safe.append(lam)
        print(f"{lam:8g} " + row(scores), flush=True)
    # the rule: the largest lam that improves on the blurry input for every kind of blur (uniform and
    # each map family); larger ones win on uniform blur but ring across level boundaries
    best = max(safe) if safe else max(means, key=means.get)
    blurry_mean = np.mean([v for x in blurry.values() for v in x])
    print(f"chosen lam = {best:g}: the largest that beats the blurry input on every kind of blur (mean PSNR "
          f"{means[best]:.2f} dB; blurry {blurry_mean:.2f} dB; the best mean: {max(means, key=means.get):g}); "
          f"{time.perf_counter() - t0:.0f} s")
    if a.compare_boundaries:
        variants = {"default": {}, "reflect": {"boundary": "reflect"}, "no taper": {"taper_passes": 0},
                    "taper 4": {"taper_passes": 4}, "pad 2x kernel": {"pad": 2.0}, "pad 8x kernel": {"pad": 8.0},
                    "circular": {"boundary": "circular"}}
        print(f"boundary options at lam = {best:g}: mean PSNR uniform / varying / all")
        for label, change in variants.items():
            o = dict(opts, **change)
            scores = {c: [] for c in labels}
            for _, case, sharp, blurred, rmap in cases:
                scores[case].append(psnr(sharp, _layered(blurred, rmap, best, o, a.workers)))
            uni = [s for c in labels if c.startswith("r=") for s in scores[c]]
            var = [s for c in labels if not c.startswith("r=") for s in scores[c]]
            print(f"  {label:14s} {np.mean(uni):7.2f} {np.mean(var):7.2f} {np.mean(uni + var):7.2f}", flush=True)


def _layered(blurred, rmap, lam, opts, workers):
    """kf_layered, with a float ``pad`` read as a multiple of each level's kernel side."""
    if not isinstance(opts.get("pad"), float):
        return kf_layered(blurred, rmap, lam=lam, workers=workers, **opts)
    idx = quantize_to_levels(rmap, levels=KF_LEVELS)
    out = blurred.copy()
    for i in np.unique(idx):
        r = KF_LEVELS[i - 1] if i > 0 else 0.0
        if r <= 0.5:
            continue
        o = dict(opts, pad=int(opts["pad"] * psf.disk_kernel(r).shape[0]))
        res = kf_layered(blurred, np.full(rmap.shape, r), lam=lam, workers=workers, **o)
        out[idx == i] = res[idx == i]
    return out


if __name__ == "__main__":
    main()
