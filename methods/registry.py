"""Registry of methods: ``name -> "module:Class"``, imported only when used (pyiqa-style).

Third-party methods register through the ``defocusbench.methods`` entry-point group with the
same ``"module:Class"`` form, or, without installing anything, through the environment variable
``DEFOCUSBENCH_METHODS="name=module:Class,..."`` (inherited by local Dask workers; it may also
replace a built-in name, e.g. to test a patched version).  ``list_methods("zhuo*")`` filters by glob.

Every name, whatever registered it, matches :data:`NAME_PATTERN`: names become file names
(previews), HTML anchors, plot labels and the ``METHOD`` of ``--set METHOD.KEY=VALUE``.  A name
that does not is a one-line :class:`~datagen.errors.UserError` as soon as the registry is read.
"""
from __future__ import annotations

import re

from datagen.errors import UserError
from datagen.registry import Registry

from .base import Method

_BUILTIN = {
    "zhuo_sim2011": "methods.classical.zhuo_sim:ZhuoSim",
    "var_laplacian": "methods.classical.local_stats:VarLaplacian",
    "local_entropy": "methods.classical.local_stats:LocalEntropy",
    "local_std": "methods.classical.local_stats:LocalStd",
    "unsharp_mask": "methods.classical.unsharp:UnsharpMask",
    "gum_deng2011": "methods.classical.gum:GeneralizedUnsharpMask",
    "cas_amd": "methods.classical.cas:ContrastAdaptiveSharpening",
    "identity": "methods.classical.reference:Identity",
    "galetto2022": "methods.galetto2022:Galetto2022",
    "galetto2022_um": "methods.galetto2022:Galetto2022UM",
    "galetto2022_sdof": "methods.galetto2022:Galetto2022SDoF",
    "karaali2022": "methods.karaali2022:Karaali2022",
    "svbr2022": "methods.svbr2022:SVBR2022",
    "kf_layered": "methods.classical.kf_deconv:KFLayered",
}

#: What a method name may be: a letter, then letters, digits, ``_`` or ``-``; at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


class _MethodRegistry(Registry):
    def table(self) -> dict[str, str]:
        table = super().table()
        for name, target in table.items():
            if not NAME_PATTERN.fullmatch(name):
                raise UserError(f"method name {name!r} (-> {target}, from {self.env_var} or a {self.group} entry point) "
                                "is invalid: use a letter, then letters, digits, _ or -, at most 64 characters")
        return table


_REGISTRY = _MethodRegistry("method", _BUILTIN, group="defocusbench.methods", env_var="DEFOCUSBENCH_METHODS")


def list_methods(pattern: str | None = None) -> list[str]:
    """Registered method names, sorted; ``pattern`` is a glob (``"local_*"``) or comma-separated globs."""
    return _REGISTRY.names(pattern)


def select_methods(spec: str, *, option: str = "--methods") -> list[str]:
    """Names matched by ``spec`` (``all``, names, globs, comma-separated); ``KeyError`` with one line
    (did-you-mean) for a part that matches nothing."""
    return _REGISTRY.select(spec, option=option)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; ``KeyError`` (one line, did-you-mean) otherwise."""
    return _REGISTRY.get(name)


def create_method(name: str, params: dict | None = None, *, device: str = "cpu", weights: str | None = None) -> Method:
    """A ready-to-use method instance: ``create_method("local_std", {"window": 16})``."""
    cls = get_method(name)
    return cls(cls.Params.model_validate(params or {}), device=device, weights=weights)
