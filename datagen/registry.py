"""Lazy name -> class registries (generators, methods, metrics, datasets): one implementation.

A registry maps names to ``"module:Attr"`` strings and imports a module only when its name is
used (pyiqa-style), so one broken or heavy plug-in never slows or breaks the others.  Names come
from, in this order (a later source may replace an earlier one's name only where said):

1. the built-in table;
2. the registry's entry-point group (``[project.entry-points."defocusbench.<kinds>"]`` of an
   installed distribution); a name already built in keeps its built-in;
3. optionally, an environment variable ``NAME=module:Attr,...`` (inherited by local worker
   processes; it may replace a built-in name, e.g. to test a patched version);
4. :meth:`Registry.register`: a class registered in this process (a notebook); a name taken by
   1-3 is an error unless ``replace=True``.  :func:`share_registrations` makes these known to the
   workers of a Dask client.

Every name, whatever registered it, matches :data:`NAME_PATTERN`: names become file names
(previews), HTML anchors, plot labels and the ``METHOD`` of ``--set METHOD.KEY=VALUE``.  A name
that does not is a one-line :class:`~datagen.errors.UserError` as soon as the registry is read.
"""
from __future__ import annotations

import fnmatch
import functools
import importlib
import operator
import os
import re
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points

from .errors import UserError, unknown_name

#: What a registered name may be: a letter, then letters, digits, ``_`` or ``-``; at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_NAME_RULE = "use a letter, then letters, digits, _ or -, at most 64 characters"

#: Objects registered in this process (:meth:`Registry.register`): entry-point group -> name -> object.
#: The one store of in-process registrations, copied into Dask workers by :func:`share_registrations`.
_REGISTERED: dict[str, dict[str, object]] = {}


@functools.cache
def _plugins(group: str) -> tuple[tuple[str, str], ...]:
    """``(name, "module:Attr")`` of an entry-point group, scanned once per process: the scan reads
    every installed distribution's metadata (milliseconds), and lookups happen per task and row."""
    return tuple((ep.name, ep.value) for ep in entry_points(group=group))


def _where(target) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


class Registry:
    """One registry of ``kind`` (``"method"``, ``"metric"``, ...).

    ``base``: the class every registered object subclasses (checked by :meth:`register`);
    ``name_attr``: the attribute path that holds an object's name (``"NAME"``, ``"KIND"``,
    ``"spec.name"``).
    """

    def __init__(self, kind: str, builtin: dict[str, str], *, group: str, env_var: str | None = None,
                 base: type | None = None, name_attr: str = "NAME"):
        self.kind, self.builtin, self.group, self.env_var = kind, dict(builtin), group, env_var
        self.base, self.name_attr = base, name_attr

    def table(self) -> dict[str, str | object]:
        """Every registered name -> ``"module:Attr"`` (or the object registered in this process)."""
        table: dict[str, str | object] = dict(self.builtin)
        for name, target in _plugins(self.group):
            table.setdefault(name, target)
        if self.env_var:
            for item in os.environ.get(self.env_var, "").split(","):
                name, sep, target = item.strip().partition("=")
                if sep and name and ":" in target:
                    table[name] = target
        table.update(_REGISTERED.get(self.group, {}))
        for name, target in table.items():
            if not NAME_PATTERN.fullmatch(name):
                origin = f"{self.env_var} or a {self.group} entry point" if self.env_var else \
                    f"a {self.group} entry point"
                raise UserError(f"{self.kind} name {name!r} (-> {_where(target)}, from {origin}) is invalid: "
                                f"{_NAME_RULE}")
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
        target = table[name]
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def register(self, obj, *, replace: bool = False):
        """Register class ``obj`` in this process under its own name (``name_attr``); returns ``obj``
        (so it also works as a decorator).  A name that is already registered (built in, an entry
        point, the environment, or an earlier call) is a one-line :class:`UserError` unless
        ``replace=True``; so is an object that is not a ``base`` subclass or has no name."""
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise UserError(f"register_{self.kind}: {obj!r} is not a subclass of {self.base.__name__}")
        try:
            name = operator.attrgetter(self.name_attr)(obj)
        except AttributeError:
            raise UserError(f"register_{self.kind}: {_where(obj)} has no {self.name_attr}") from None
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise UserError(f"register_{self.kind}: {self.kind} name {name!r} of {_where(obj)} is invalid: "
                            f"{_NAME_RULE}")
        table = self.table()
        if name in table and not replace and table[name] is not obj:
            raise UserError(f"{self.kind} {name!r} is already registered (-> {_where(table[name])}); "
                            "give yours another name, or pass replace=True to replace it")
        _REGISTERED.setdefault(self.group, {})[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Forget a registration made by :meth:`register` in this process (``KeyError`` if none)."""
        del _REGISTERED.get(self.group, {})[name]

    def mapping(self) -> Mapping:
        """A read-only ``name -> object`` view of the registry: membership, iteration and ``len``
        read names only; ``view[name]`` imports what it returns."""
        return _View(self)


class _View(Mapping):
    def __init__(self, registry: Registry):
        self._registry = registry

    def __getitem__(self, name: str):
        return self._registry.get(name)

    def __contains__(self, name) -> bool:
        return name in self._registry.table()

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.table())


def registrations() -> dict[str, dict[str, object]]:
    """A copy of this process's :meth:`Registry.register` registrations (group -> name -> object)."""
    return {group: dict(names) for group, names in _REGISTERED.items() if names}


def install_registrations(snapshot: dict[str, dict[str, object]]) -> None:
    """Add a :func:`registrations` snapshot to this process's registrations (in a worker)."""
    for group, names in snapshot.items():
        _REGISTERED.setdefault(group, {}).update(names)


def share_registrations(client) -> None:
    """Make this process's in-process registrations known to every worker of Dask ``client``, now
    and after a restart (a worker plugin; classes defined in ``__main__``, e.g. a notebook, travel
    by value).  A no-op when nothing was registered."""
    snapshot = registrations()
    if not snapshot:
        return
    from distributed.diagnostics.plugin import WorkerPlugin

    class Registrations(WorkerPlugin):
        def __init__(self, snapshot):
            self.snapshot = snapshot

        def setup(self, worker) -> None:
            install_registrations(self.snapshot)

    client.register_plugin(Registrations(snapshot), name="defocusbench-registrations")
