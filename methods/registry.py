"""Registry of methods: ``name -> "module:Class"``, imported only when used (pyiqa-style).

Third-party methods register through the ``defocusbench.methods`` entry-point group with the
same ``"module:Class"`` form, or, without installing anything, through the environment variable
``DEFOCUSBENCH_METHODS="name=module:Class,..."`` (inherited by local Dask workers; it may also
replace a built-in name, e.g. to test a patched version).  ``list_methods("zhuo*")`` filters by glob.
"""
from __future__ import annotations

from datagen.registry import Registry

from .base import Method

_BUILTIN = {
    "zhuo_sim2011": "methods.classical.zhuo_sim:ZhuoSim",
    "var_laplacian": "methods.classical.local_stats:VarLaplacian",
    "local_entropy": "methods.classical.local_stats:LocalEntropy",
    "local_std": "methods.classical.local_stats:LocalStd",
    "unsharp_mask": "methods.classical.unsharp:UnsharpMask",
    "identity": "methods.classical.reference:Identity",
}


_REGISTRY = Registry("method", _BUILTIN, group="defocusbench.methods", env_var="DEFOCUSBENCH_METHODS")


def list_methods(pattern: str | None = None) -> list[str]:
    """Registered method names, sorted; ``pattern`` is a glob (``"local_*"``) or comma-separated globs."""
    return _REGISTRY.names(pattern)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; ``KeyError`` (one line, did-you-mean) otherwise."""
    return _REGISTRY.get(name)


def create_method(name: str, params: dict | None = None, *, device: str = "cpu", weights: str | None = None) -> Method:
    """A ready-to-use method instance: ``create_method("local_std", {"window": 16})``."""
    cls = get_method(name)
    return cls(cls.Params.model_validate(params or {}), device=device, weights=weights)
