"""Chains: a method that needs a blur map (``NEEDS_MAP``, e.g. ``svbr2022``, ``kf_layered``) run after
the method or ground truth that gives it one.

A chain is named ``CONSUMER@SOURCE``: ``svbr2022@karaali2022`` deblurs with karaali2022's map,
``svbr2022@gt`` with the dataset's ground-truth map (``radius_map``, else ``sigma_map``).  A dataset
may store other maps for chains (:data:`DATASET_MAPS`): an ``svpsf39`` split holds SVBR-Net's
"estimated-like" maps, the ground truth sampled at edges and propagated by the domain transform
(``@dt``) or the matting Laplacian (``@matting``), the maps its second training stage learns from.
In ``--methods``:

* ``CONSUMER@SOURCE`` with globs on either side: ``'svbr2022@*'`` is svbr2022 after every blur-map
  method whose map can be converted (``radius_px``, ``sigma_px``, ``relative``; higher = blurred)
  and after every dataset map (``gt``, ``dt``, ``matting``; ``n/a`` on datasets that lack it);
  ``'*@gt'`` every consumer on the ground truth;
* a consumer alone (``svbr2022``, or through ``all``) stands for ``CONSUMER@`` its
  ``DEFAULT_MAP_SOURCE``: ``svbr2022@gt``, ``kf_layered@gt``, ``galetto2022_um@galetto2022``;
* an unknown name on either side, a consumer that takes no map, or a source that gives no blur map
  is a one-line error; a source named explicitly whose map cannot be converted (``score`` units,
  or higher = sharp) is planned and reported ``n/a`` with the reason.

Units are converted on the way (:func:`methods.map_units.convert_map`): sigma <-> radius by the
RTF table, a relative map x 6 px.  A chain is identified everywhere (job key, ``run.json``,
``bench compare``) by its name and by both stages' versions, parameters and weights; ``--set
METHOD.key=value`` and ``--weights`` address the stages by their own names.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from datagen.errors import UserError

from .metrics import PredInfo

__all__ = ["DATASET_MAPS", "GT", "MAP_INFO", "SEP", "Chain", "components", "expand", "input_map", "map_targets",
           "missing_map", "parse"]

SEP = "@"
GT = "gt"
#: Ground-truth map targets a dataset may hold, in order of preference, and their units.
GT_TARGETS = (("radius_map", "radius_px"), ("sigma_map", "sigma_px"))
#: Chain sources a dataset gives instead of a method: name -> (what it is, the targets that hold
#: it in order of preference, with their units).
DATASET_MAPS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    GT: ("ground-truth", GT_TARGETS),
    "dt": ("domain-transform-propagated", (("dt_radius_map", "radius_px"),)),
    "matting": ("matting-propagated", (("matting_radius_map", "radius_px"),)),
}
#: How the metrics of a chain's input map read it (:func:`input_map` gives it in radius px).
MAP_INFO = PredInfo(provides="blur_map", units="radius_px", higher="blurred")


@dataclass(frozen=True)
class Chain:
    consumer: str
    source: str          # a method name, or a dataset map (DATASET_MAPS: gt, dt, matting)

    @property
    def name(self) -> str:
        return f"{self.consumer}{SEP}{self.source}"

    @property
    def on_gt(self) -> bool:
        return self.source == GT

    @property
    def on_dataset(self) -> bool:
        """The map comes from the dataset (gt, dt, matting), not from a method."""
        return self.source in DATASET_MAPS


def parse(name: str) -> Chain | None:
    """The chain named ``name`` (``None`` for a plain method name)."""
    consumer, sep, source = name.partition(SEP)
    return Chain(consumer, source) if sep else None


def components(names: list[str]) -> list[str]:
    """The plain method names a selection runs: chains give their consumer and (unless a dataset map)
    their source."""
    out: list[str] = []
    for name in names:
        c = parse(name)
        for part in ((c.consumer, c.source) if c else (name,)):
            if part not in DATASET_MAPS and part not in out:
                out.append(part)
    return out


def _consumers(pattern: str) -> list[str]:
    from methods.registry import get_method, select_methods

    try:
        names = select_methods(pattern, option="--methods")
    except KeyError as err:
        raise UserError(f"{err.args[0]}; see bench list methods") from None
    takers = [n for n in names if get_method(n).NEEDS_MAP]
    if not takers:
        raise UserError(f"--methods {pattern}{SEP}...: {', '.join(names)} take(s) no blur map; the left of {SEP} is a "
                        f"method that needs one ({', '.join(map_consumers()) or 'none registered'})")
    return takers


def map_consumers() -> list[str]:
    """Registered methods that need a blur map."""
    from methods.registry import get_method, list_methods
    return [n for n in list_methods() if get_method(n).NEEDS_MAP]


def _sources(pattern: str) -> list[str]:
    from methods.map_units import why_not_convertible
    from methods.registry import get_method, list_methods, select_methods

    if pattern in DATASET_MAPS:
        return [pattern]
    stored = " / ".join(DATASET_MAPS)
    if any(ch in pattern for ch in "*?["):
        producers = [n for n in list_methods() if get_method(n).PROVIDES == "blur_map"
                     and why_not_convertible(get_method(n).UNITS, get_method(n).HIGHER) is None]
        found = [n for n in [*DATASET_MAPS, *producers] if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            raise UserError(f"--methods ...{SEP}{pattern}: matches no blur-map method (nor {stored})")
        return found
    try:
        (name,) = select_methods(pattern, option="--methods")
    except KeyError as err:
        raise UserError(f"{err.args[0]} (after {SEP}: a blur-map method or a dataset map, {stored}); "
                        "see bench list methods") from None
    cls = get_method(name)
    if cls.PROVIDES != "blur_map":
        raise UserError(f"--methods ...{SEP}{name}: {name} provides {cls.PROVIDES}, not a blur map; after {SEP} name a "
                        f"blur-map method or a dataset map ({stored})")
    return [name]


def expand(item: str) -> list[str]:
    """Chain names of one ``--methods`` item ``CONSUMER@SOURCE`` (globs allowed on both sides)."""
    consumer, _, source = item.partition(SEP)
    if not consumer or not source or SEP in source:
        raise UserError(f"--methods {item}: a chain is CONSUMER{SEP}SOURCE, e.g. svbr2022{SEP}karaali2022 or "
                        f"svbr2022{SEP}gt")
    return [Chain(c, s).name for c in _consumers(consumer) for s in _sources(source)]


def map_targets(targets, source: str = GT) -> str | None:
    """The target of a dataset with ``targets`` that holds the dataset map ``source`` (``gt``, ``dt``,
    ``matting``; None: it has none)."""
    return next((t for t, _ in DATASET_MAPS[source][1] if t in targets), None)


def missing_map(source: str, dataset: str) -> str:
    """Why a chain on the dataset map ``source`` cannot run on ``dataset`` (which lacks it)."""
    return f"{dataset} has no {DATASET_MAPS[source][0]} blur map (@{source})"


def input_map(sample, source, *, needs: str, source_cls=None, dataset_map: str = GT) -> tuple[np.ndarray, np.ndarray]:
    """``(map for the consumer in its ``needs`` units, the same map in radius px)`` for one sample:
    the sample's stored map ``dataset_map`` (:data:`DATASET_MAPS`) when ``source`` is None, else
    ``source.predict(image)`` read in ``source_cls``'s units.  :class:`methods.map_units.MapUnitsError`
    (one line) when it cannot be used (wrong size, NaN, units)."""
    from methods.map_units import convert_map

    shape = sample.image.shape[:2]
    if source is None:
        target = map_targets(sample.targets, dataset_map)
        if target is None:
            raise UserError(missing_map(dataset_map, "the sample"))
        units, higher, raw = dict(DATASET_MAPS[dataset_map][1])[target], "blurred", sample.targets[target]
    else:
        units, higher, raw = source_cls.UNITS, source_cls.HIGHER, source.predict(sample.image)
    use = convert_map(raw, units=units, higher=higher, to=needs, shape=shape)
    radius = use if needs == "radius_px" else convert_map(raw, units=units, higher=higher, to="radius_px", shape=shape)
    return use, radius
