"""Registry of corpus generators: ``kind -> "module:Class"``, imported only when used.

Third-party generators register through the ``defocusbench.generators`` entry-point group
with the same ``"module:Class"`` form.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import unknown_name
from .base import Field, Generator, StrictModel

__all__ = ["Field", "Generator", "StrictModel", "get_generator", "list_generators"]

_BUILTIN = {
    "gauss20": "datagen.generators.gauss20:Gauss20",
}


def _table() -> dict[str, str]:
    table = dict(_BUILTIN)
    for ep in entry_points(group="defocusbench.generators"):
        table.setdefault(ep.name, ep.value)
    return table


def list_generators() -> list[str]:
    return sorted(_table())


def get_generator(kind: str) -> type[Generator]:
    """The generator class registered as ``kind``; ``KeyError`` with close names otherwise."""
    table = _table()
    if kind not in table:
        raise KeyError(unknown_name("generator", kind, table))
    module, _, attr = table[kind].partition(":")
    return getattr(importlib.import_module(module), attr)
