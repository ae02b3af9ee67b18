"""datagen: reproducible, Dask-parallel synthetic corpora for defocus-blur research.

This package imports nothing from the rest of DefocusBench (``methods`` and ``bench`` build
on it, never the reverse).  Heavy modules (Dask, torch) are imported only by the verbs
that need them.
"""
__version__ = "0.1.0"

FORMAT = "defocusbench-corpus"
FORMAT_VERSION = 3   # 3: provenance_sha256 over attributes + /sources; 2: content_sha256 over per-image
                     # digests (1: one stream per field)
SPLITS = ("train", "val", "test")
