"""Registry of methods: ``name -> "module:Class"``, imported only when used (pyiqa-style).

Third-party methods register through the ``defocusbench.methods`` entry-point group with the
same ``"module:Class"`` form, or, without installing anything, through the environment variable
``DEFOCUSBENCH_METHODS="name=module:Class,..."`` (inherited by local Dask workers; it may also
replace a built-in name, e.g. to test a patched version).  ``list_methods("zhuo*")`` filters by glob.

In a notebook, ``register_method(MyMethod)`` registers a class under its ``NAME`` for this process
(and, through :func:`datagen.registry.share_registrations`, its Dask workers); a name already taken
is a one-line error.

Every name, whatever registered it, matches :data:`datagen.registry.NAME_PATTERN`: names become file
names (previews), HTML anchors, plot labels and the ``METHOD`` of ``--set METHOD.KEY=VALUE``.  A name
that does not is a one-line :class:`~datagen.errors.UserError` as soon as the registry is read.
"""
from __future__ import annotations

from datagen.registry import NAME_PATTERN, Registry  # noqa: F401 - NAME_PATTERN: the names' rule, for callers

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

_REGISTRY = Registry("method", _BUILTIN, group="defocusbench.methods", env_var="DEFOCUSBENCH_METHODS", base=Method)


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


def register_method(cls: type[Method], *, replace: bool = False) -> type[Method]:
    """Register method class ``cls`` under ``cls.NAME`` in this process (a notebook): it then works
    wherever a built-in does (``create_method``, ``bench.harness.run(methods=...)``, ``list_methods``).
    Returns ``cls`` (usable as a decorator).  A taken name is a one-line :class:`~datagen.errors.UserError`
    unless ``replace=True``."""
    return _REGISTRY.register(cls, replace=replace)
