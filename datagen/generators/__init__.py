"""Registry of corpus generators: ``kind -> "module:Class"``, imported only when used.

Third-party generators register through the ``defocusbench.generators`` entry-point group
with the same ``"module:Class"`` form.
"""
from __future__ import annotations

from ..registry import Registry
from .base import Field, Generator, StrictModel

__all__ = ["Field", "Generator", "StrictModel", "get_generator", "list_generators"]

_BUILTIN = {
    "gauss20": "datagen.generators.gauss20:Gauss20",
}


_REGISTRY = Registry("generator", _BUILTIN, group="defocusbench.generators")


def list_generators() -> list[str]:
    return _REGISTRY.names()


def get_generator(kind: str) -> type[Generator]:
    """The generator class registered as ``kind``; ``KeyError`` with close names otherwise."""
    return _REGISTRY.get(kind)
