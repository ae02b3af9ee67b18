"""Lazy name -> class registries (generators, methods, metrics): one implementation.

A registry maps names to ``"module:Attr"`` strings and imports a module only when its name is
used (pyiqa-style), so one broken or heavy plug-in never slows or breaks the others.  Plug-ins
add names through an entry-point group and, optionally, an environment variable
``NAME=module:Attr,...`` (inherited by local worker processes; it may replace a built-in name).
"""
from __future__ import annotations

import fnmatch
import functools
import importlib
import os
from importlib.metadata import entry_points

from .errors import unknown_name


@functools.cache
def _plugins(group: str) -> tuple[tuple[str, str], ...]:
    """``(name, "module:Attr")`` of an entry-point group, scanned once per process: the scan reads
    every installed distribution's metadata (milliseconds), and lookups happen per task and row."""
    return tuple((ep.name, ep.value) for ep in entry_points(group=group))


class Registry:
    def __init__(self, kind: str, builtin: dict[str, str], *, group: str, env_var: str | None = None):
        self.kind, self.builtin, self.group, self.env_var = kind, dict(builtin), group, env_var

    def table(self) -> dict[str, str]:
        """Every registered ``name -> "module:Attr"`` (built-ins, entry points, then the environment)."""
        table = dict(self.builtin)
        for name, target in _plugins(self.group):
            table.setdefault(name, target)
        if self.env_var:
            for item in os.environ.get(self.env_var, "").split(","):
                name, sep, target = item.strip().partition("=")
                if sep and name and ":" in target:
                    table[name] = target
        return table

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names; ``pattern`` is ``"all"``, a glob, or comma-separated globs."""
        names = sorted(self.table())
        if not pattern or pattern == "all":
            return names
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        return [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]

    def select(self, spec: str, *, option: str) -> list[str]:
        """Names matched by ``spec`` (``"all"``, names, globs, comma-separated); a part that matches
        nothing raises ``KeyError`` with one line (did-you-mean for a plain name)."""
        for part in (g.strip() for g in spec.split(",")):
            if part and part != "all" and not self.names(part):
                if any(c in part for c in "*?["):
                    raise KeyError(f"{option} {part!r} matches no {self.kind}")
                raise KeyError(unknown_name(self.kind, part, self.table()))
        return self.names(spec)

    def get(self, name: str):
        """The object registered as ``name``; ``KeyError`` with a one-line did-you-mean otherwise."""
        table = self.table()
        if name not in table:
            raise KeyError(unknown_name(self.kind, name, table))
        module, _, attr = table[name].partition(":")
        return getattr(importlib.import_module(module), attr)
