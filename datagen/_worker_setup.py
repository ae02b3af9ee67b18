"""Preloaded into the local Dask workers that ``datagen build`` starts.

Ctrl-C reaches the whole process group; the driver handles it (closes the cluster, exits 130,
keeps complete shards), so its workers ignore SIGINT instead of printing tracebacks.
"""
import signal


def dask_setup(worker) -> None:  # called by Dask in the worker's main thread at start-up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
