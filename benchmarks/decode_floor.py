"""The floor of every corpus builder: the time to only decode its source files, in a warmed-up
spawn ``Pool(workers)`` (imported by the corpus benchmarks; not a benchmark itself)."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from functools import partial


def _decode(path: str, mode: str | None) -> None:
    from PIL import Image
    with Image.open(path) as im:
        (im.convert(mode) if mode else im).load()


def _warm(_: int) -> int:
    import PIL.Image  # noqa: F401 - import cost out of the timing
    return os.getpid()


def time_decode(files, workers: int, trials: int, *, mode: str | None = None) -> float:
    """Best of ``trials`` wall seconds to decode every file of ``files`` (paths) in ``workers``
    processes, converted to the PIL ``mode`` (``"RGB"``) or as stored (``None``)."""
    ctx = mp.get_context("spawn")
    best = float("inf")
    with ctx.Pool(workers) as pool:
        pool.map(_warm, range(workers), chunksize=1)
        for _ in range(trials):
            t0 = time.perf_counter()
            pool.map(partial(_decode, mode=mode), [str(f) for f in files], chunksize=1)
            best = min(best, time.perf_counter() - t0)
    return best
