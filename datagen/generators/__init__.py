"""Registry of corpus generators: ``kind -> "module:Class"``, imported only when used.

Third-party generators register through the ``defocusbench.generators`` entry-point group
with the same ``"module:Class"`` form, or, without installing anything, through the environment
variable ``DEFOCUSBENCH_GENERATORS="kind=module:Class,..."`` (inherited by local Dask workers; remote
workers need it too).  A new corpus is then one such module plus one manifest.
"""
from __future__ import annotations

from ..registry import Registry
from .base import Field, Generator, SourceItem, StrictModel

__all__ = ["Field", "Generator", "SourceItem", "StrictModel", "get_generator", "list_generators"]

_BUILTIN = {
    "gauss20": "datagen.generators.gauss20:Gauss20",
    "disk23_edges": "datagen.generators.disk23_edges:Disk23Edges",
    "depth_edges": "datagen.generators.depth_edges:DepthEdges",
    "svpsf39": "datagen.generators.svpsf39:SVPSF39",
}


_REGISTRY = Registry("generator", _BUILTIN, group="defocusbench.generators", env_var="DEFOCUSBENCH_GENERATORS")


def list_generators() -> list[str]:
    return _REGISTRY.names()


def get_generator(kind: str) -> type[Generator]:
    """The generator class registered as ``kind``; ``KeyError`` with close names otherwise."""
    return _REGISTRY.get(kind)
