"""Benchmark: karaali2022 (Karaali, Harte & Jung 2022) on real photos, CPU, seconds per megapixel.

Run from the repository root::

    .venv/bin/python benchmarks/bench_karaali2022.py                        # 3 photos, 2 threads, tile 256
    .venv/bin/python benchmarks/bench_karaali2022.py --tile 256,512 --repeat 3
    .venv/bin/python benchmarks/bench_karaali2022.py --images a.png b.png --weights path/to/models_tf1x

Default photos (``../shared/data``): RTF image 01 (360x360, ``karaali_tip2022/images``), Kodak
``kodim01`` (500x500 centre crop, ``kodak24``) and DIV2K ``0803`` resized to ~1 MP
(``div2k_valid_hr``, area interpolation).  Weights: the authors' release
(``../shared/data/karaali_tip2022/models_tf1x``, converted in memory) when present, else a
randomly initialised network (the cost is the same, except that an untrained net has more
near-ties re-evaluated in float64).  Edges: our default Canny on the HSV value channel (the edge
density drives the per-edge work; printed).  ``torch.set_num_threads(--threads)`` (default 2).

For each photo and tile size it prints the best of ``--repeat`` runs after one warm-up, in s/MP:
``edges`` (Canny), ``networks`` (B-NET + E-NET at every edge pixel: dense trunks over tiles of
the padded image, head tails per edge pixel, float64 re-evaluation of near-ties), ``guide``
(self-guided RF, sigma_s 7) and ``propagation`` (normalised RF with the depth-edge penalty), and
the total.  ``--patch`` also times the authors' per-patch evaluation on the RTF image (slow).
``--bound`` measures this machine's 64->64 3x3 convolution throughput (float32 and bfloat16,
channels-last, a 512x512 map) and prints the lower bound it puts on the networks: the multiply-adds
every pixel needs in dense mode (counted from the layers), at that throughput, before any halo,
head tail, edge detection or propagation.

Where the time goes (arithmetic, per pixel of the padded tile): the three f1 trunks and f2 cost
~416 k multiply-adds (a stride-1 pool plus three dilated 64->64 3x3 convs for br41 and f2, three
64->64 convs for br27 and br15), the dense first head convolutions ~258 k, and each edge pixel's
head tails ~0.9 M.  At ~180 GFLOP/s (this CPU's fp32 oneDNN 3x3 conv throughput on 2 cores,
channels-last) the dense part alone is ~7.5 s/MP, plus ~1 s/MP per 10 % of edge pixels: the
networks cannot reach 3 s/MP in float32 on 2 cores.  The per-patch evaluation needs 78 M
multiply-adds per edge pixel (~12 M per pixel at 16 % edges): ~40x slower.

Measured 2026-12-02 on an idle 2-core AMD EPYC (Zen 4, AVX512-BF16), torch 2.14.1, 2 threads,
tile 256, the authors' weights, our V-channel Canny (``--precision float32,bfloat16 --repeat 1``),
wall s/MP:

  photo                    MP    edges  prec   networks  guide  propagation  total
  RTF image_01 360x360     0.13  14.7 %  fp32   13.9      0.41   0.43         14.9
  kodim01 500x500          0.25  15.2 %  fp32   12.1      0.38   0.35         12.9
  DIV2K 0803 1152x868      1.00   3.3 %  fp32    7.4      0.54   0.39          8.4
  RTF image_01             0.13  14.7 %  bf16    8.2      0.44   0.36          9.1
  kodim01                  0.25  15.2 %  bf16    7.5      0.49   0.37          8.5
  DIV2K 0803               1.00   3.3 %  bf16    4.8      0.63   0.49          6.0

Edges (Canny) ~0.1 s/MP.  ``--bound`` on the same machine: 675 k multiply-adds per pixel (1.35
TFLOP/MP); 64->64 3x3 convolutions at 151-177 GFLOP/s in float32 and 373-426 GFLOP/s in bfloat16
on the 2 cores, so the networks alone need >= 7.6 s/MP in float32 and >= 3.2 s/MP in bfloat16 even
at full convolution throughput, with no halo and no head tails: **the 3 s/MP target is out of reach
of this method on 2 CPU cores** (only int8 convolutions, ~800 GOP/s here through torch's deprecated
quantized-tensor API, could approach it, at a cost in accuracy not measured).  Where the rest goes
(kodim01, bfloat16): trunks ~0.9 s, dense head convolutions ~0.4 s, head tails (float32) ~0.5 s,
gathers ~0.13 s.  Tile 512 was not faster than 256 (cache); shrinking each tile to the bounding box of
its edge pixels saved 28 % on the DIV2K photo.  The per-patch evaluation (``mode="patch"``, the
authors' way) took 77 s for RTF image_01 (~600 s/MP), under load, against 2-9 s dense in the same
conditions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = (ROOT / ".." / "shared" / "data").resolve()
STAGES = ("edges", "networks", "guide", "propagation")


def _photos(paths: list[str] | None) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    from datagen.imageio import read_rgb

    if paths:
        return [(Path(p).name, read_rgb(p)) for p in paths]
    out = []
    rtf = DATA / "karaali_tip2022" / "images" / "image_01.png"
    kodak = DATA / "kodak24" / "kodim01.png"
    div2k = DATA / "div2k_valid_hr" / "0803.png"
    for p in (rtf, kodak):
        if p.is_file():
            out.append((p.name, read_rgb(p)))
    if div2k.is_file():
        with Image.open(div2k) as im:
            im = im.convert("RGB")
            s = (1e6 / (im.width * im.height)) ** 0.5
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BOX)
            out.append((f"0803@{im.width}x{im.height}", np.asarray(im, dtype=np.float32) / 255.0))
    if not out:
        sys.exit(f"no photos found under {DATA}; pass --images FILES")
    return out


def _weights(arg: str | None) -> str:
    if arg:
        return arg
    release = DATA / "karaali_tip2022" / "models_tf1x"
    if release.is_dir():
        return str(release)
    import torch

    from methods.nets.karaali_nets import Karaali2022Net
    path = Path(tempfile.mkdtemp()) / "random.pt"
    torch.save(Karaali2022Net(seed=0).state_dict(), path)
    print("note: authors' weights not found, timing a randomly initialised network", file=sys.stderr)
    return str(path)


def _stages(m, img) -> tuple[dict, dict]:
    """Wall and process-CPU seconds of each stage of one ``predict`` (the same calls, in order)."""
    wall, cpu = {}, {}

    def timed(stage, fn, *a):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a)
        wall[stage], cpu[stage] = time.perf_counter() - t, time.process_time() - c
        return out

    edges = timed("edges", m.edge_map, img)
    ys, xs, radius, depth = timed("networks", m.classify, img, edges)
    guide = timed("guide", m.guide, img)
    timed("propagation", m.propagate, img.shape[:2], ys, xs, radius, depth, guide)
    return wall, cpu


def dense_macs_per_pixel() -> int:
    """Multiply-adds per pixel of the dense part of the networks: every convolution of the f1
    trunks and f2 (each evaluated once per pixel, at stride 1) and the first convolution of both
    heads (evaluated densely too); counted from the layer shapes."""
    from torch import nn

    from methods.nets.karaali_nets import Karaali2022Net

    net = Karaali2022Net()
    convs = [*net.bnet.f1.modules(), *net.enet.f2.modules(), net.bnet.head.conv1, net.enet.head.conv1]
    return sum(m.weight.numel() for m in convs if isinstance(m, nn.Conv2d))


def conv_throughput(dtype, *, size: int = 512, repeat: int = 5) -> float:
    """Best GFLOP/s of a 64->64 3x3 valid convolution of a ``(1, 64, size, size)`` channels-last map."""
    import torch
    from torch.nn import functional as F

    x = torch.rand(1, 64, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(64, 64, 3, 3) * 0.05).to(dtype)
    F.conv2d(x, w)
    best = min(_timed(lambda: F.conv2d(x, w)) for _ in range(repeat))
    return 2 * 64 * 64 * 9 * (size - 2) ** 2 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def print_bound() -> None:
    import torch

    macs = dense_macs_per_pixel()
    print(f"dense part of the networks: {macs / 1e3:.0f} k multiply-adds per pixel "
          f"({2 * macs / 1e6:.2f} TFLOP per megapixel)")
    for dtype in (torch.float32, torch.bfloat16):
        gflops = conv_throughput(dtype)
        print(f"{str(dtype).split('.')[1]:9s} 64->64 3x3 conv: {gflops:5.0f} GFLOP/s on {torch.get_num_threads()} "
              f"threads -> networks >= {2 * macs / gflops / 1e3:.2f} s/MP")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="*")
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", default="256", help="comma-separated tile sizes")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--precision", default="float32", help="float32, bfloat16 or both comma-separated")
    ap.add_argument("--patch", action="store_true", help="also time the per-patch evaluation on the first photo")
    ap.add_argument("--bound", action="store_true", help="print the lower bound this CPU's conv throughput puts on "
                                                         "the networks, and stop")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    if args.bound:
        print_bound()
        return
    from methods import torch_inference
    from methods.karaali2022 import Karaali2022

    torch_inference.configure_threads = lambda n=None: args.threads    # keep --threads (the method asks for all cores)
    weights = _weights(args.weights)
    photos = _photos(args.images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, weights {weights}")
    print("wall s/MP (cpu s/MP / threads: the wall time on an otherwise idle machine, ~)")
    print(f"{'photo':24s} {'MP':>5s} {'tile':>5s} {'prec':>5s} {'edge%':>6s} "
          + " ".join(f"{s:>15s}" for s in STAGES) + f" {'total':>15s}")
    for precision in args.precision.split(","):
        for tile in [int(t) for t in args.tile.split(",")]:
            m = Karaali2022({"tile": tile, "batch": args.batch, "precision": precision}, weights=weights)
            for name, img in photos:
                mp = img.shape[0] * img.shape[1] / 1e6
                _stages(m, img)                                      # warm-up (model load, oneDNN primitives)
                runs = [_stages(m, img) for _ in range(args.repeat)]
                wall, cpu = min(runs, key=lambda r: sum(r[0].values()))
                density = 100.0 * m.edge_map(img).mean()
                cells = [f"{wall[s] / mp:6.2f} ({cpu[s] / mp / args.threads:5.2f})" for s in STAGES]
                tw, tc = sum(wall.values()), sum(cpu.values())
                print(f"{name:24s} {mp:5.2f} {tile:5d} {precision[:5]:>5s} {density:5.1f}% " + " ".join(f"{c:>15s}" for c in cells)
                      + f" {tw / mp:6.2f} ({tc / mp / args.threads:5.2f})")
    if args.patch:
        name, img = photos[0]
        mp = img.shape[0] * img.shape[1] / 1e6
        m = Karaali2022({"mode": "patch", "batch": 256}, weights=weights)
        t0 = time.perf_counter()
        m.predict(img)
        print(f"{name:24s} per-patch networks {m.timings['networks'] / mp:.1f} s/MP "
              f"(total {(time.perf_counter() - t0) / mp:.1f} s/MP)")


if __name__ == "__main__":
    main()
