"""Versions recorded in every corpus file (what produced these bytes)."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_PACKAGES = ("defocus-bench", "numpy", "h5py", "pillow", "opencv-python", "pydantic", "dask", "distributed")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    import h5py

    out["hdf5"] = h5py.version.hdf5_version
    return out
