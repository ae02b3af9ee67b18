"""Training throughput of a recipe (patches/s) on this machine: the figure the ``cpu`` profile is
sized on.  ``python benchmarks/bench_training.py [--method galetto2022] [--batch 128] [--steps 20]
[--threads N]`` prints train patches/s (forward + backward + Adam step, after 3 warm-up steps) and
eval patches/s (forward only, batch 512), with random uint8 patches (no corpus needed)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from methods.recipes import get_recipe
from methods.training import default_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="galetto2022")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    r = get_recipe(a.method)
    dev = torch.device(a.device)
    model = r.make_model(seed=0, **r.arch).to(dev)
    opt = r.optimizer(model.parameters(), r.hparams("full"))
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (a.batch, 32, 32), dtype=torch.uint8, generator=g).to(dev)
    labels = torch.randint(0, 20, (a.batch,), generator=g).to(dev)

    def step():
        x, y = r.batch(imgs, labels)
        loss = r.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    for _ in range(3):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train_rate = a.steps * a.batch / (time.perf_counter() - t)
    model.eval()
    ev = torch.randint(0, 256, (512, 32, 32), dtype=torch.uint8, generator=g).to(dev)
    with torch.no_grad():
        model(r.batch(ev, labels[:1])[0])
        sync()
        t = time.perf_counter()
        n = max(1, a.steps // 4)
        for _ in range(n):
            model(r.batch(ev, labels[:1])[0])
        sync()
        eval_rate = n * 512 / (time.perf_counter() - t)
    print(f"{a.method} on {a.device} ({a.threads} threads), batch {a.batch}: train {train_rate:.0f} patches/s, "
          f"eval {eval_rate:.0f} patches/s")


if __name__ == "__main__":
    main()
