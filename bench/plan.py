"""``bench run``, phase 1: **plan** -- which methods (and chains) meet which datasets under which
metrics, decided before any pixel is read.

Every selected method meets every selected dataset.  A pair fits when the method's output suits
one of the dataset's tasks (:data:`bench.tasks.FITS`); pairs that do not fit, and metrics that
cannot read a method's output (a sharpness score has no radius), are recorded as ``n/a`` with the
reason; metrics whose weights are missing as ``unavailable``.

Chains (``svbr2022@karaali2022``, :mod:`bench.chains`) are planned like methods, with the
consumer's output; a chain whose source cannot feed it (no ground-truth map in the dataset for
``@gt``, nor a propagated one for ``@dt`` / ``@matting``; a map in score units) is ``n/a`` with the
reason.  On a dataset with a ground-truth
``radius_map``, a chain from a map method (or a propagated map) is also scored with ``mae_radius`` *on its input map*
(:attr:`Pair.map_metrics`): the report puts each map's own error beside what it restored.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datagen.errors import UserError

from . import chains
from .metrics import PredInfo, create_metric, get_metric
from .tasks import DEFAULT_METRICS, FITS

#: What a chain's input map is scored with (beside the restoration metrics of its output).
MAP_METRIC = "mae_radius"


def select_methods(spec: str) -> list[str]:
    """Method and chain names for ``--methods`` (all / names / globs / ``CONSUMER@SOURCE``, comma-separated;
    a map consumer alone stands for ``CONSUMER@`` its ``DEFAULT_MAP_SOURCE``, e.g. ``svbr2022@gt``,
    ``galetto2022_um@galetto2022``); one-line :class:`UserError` otherwise."""
    from methods.registry import get_method
    from methods.registry import select_methods as select

    out: list[str] = []
    for item in (part.strip() for part in str(spec).split(",")):
        if not item:
            continue
        if chains.SEP in item:
            names = chains.expand(item)
        else:
            try:
                names = select(item, option="--methods")
            except KeyError as err:
                raise UserError(f"{err.args[0]}; see bench list methods") from None
            names = [chains.Chain(n, get_method(n).DEFAULT_MAP_SOURCE).name if get_method(n).NEEDS_MAP else n
                     for n in names]
        out += [n for n in names if n not in out]
    if not out:
        raise UserError("--methods selects nothing; see bench list methods")
    return out


def select_metrics(spec: str | None) -> list[str] | None:
    """Metric names for ``--metrics``; ``None`` = each dataset task's defaults."""
    from .metrics import select_metrics as select
    if not spec or spec == "all":
        return None
    try:
        return select(spec, option="--metrics")
    except KeyError as err:
        raise UserError(f"{err.args[0]}; see bench list metrics") from None


def parse_roots(items: list[str] | dict | None) -> dict[str, str]:
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    roots = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--root {item!r}: expected NAME=DIR, e.g. --root cuhk=/data/CUHK")
        roots[name] = path
    return roots


@dataclass
class Pair:
    method: str
    dataset: str
    metrics: list[str]
    na: dict[str, str] = field(default_factory=dict)           # metric -> why n/a
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why unavailable
    reason: str = ""                                           # whole pair n/a
    info: PredInfo = field(default_factory=PredInfo)           # how to read the method's output
    task: str = ""                                             # the dataset task it is scored under
    map_metrics: list[str] = field(default_factory=list)       # chains: metrics of the input map (in metrics too)


def parse_weights(items: list[str] | dict | None, methods: list[str]) -> dict[str, str]:
    """``--weights [NAME=]PATH`` items -> ``{weight name: path}``.  A bare ``PATH`` stands for the one
    weight the selected ``methods`` use (e.g. galetto2022, shared by galetto2022_um / _sdof)."""
    from methods import get_method
    if isinstance(items, dict):
        items = [f"{k}={v}" for k, v in items.items()]
    if not items:
        return {}
    used: dict[str, list[str]] = {}
    for m in methods:
        for w in get_method(m).WEIGHTS or {}:
            used.setdefault(w, []).append(m)
    out = {}
    for item in map(str, items):
        name, sep, path = item.partition("=")
        if not (sep and path and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name)) or Path(item).exists():
            name, path = "", item             # a bare PATH
        if not name:
            if not used:
                raise UserError(f"--weights {item}: no selected method uses weights")
            if len(used) > 1:
                raise UserError(f"--weights {item}: the selected methods use the weights {', '.join(sorted(used))}; "
                                "give NAME=PATH")
            name = next(iter(used))
        if name not in used:
            raise UserError(f"--weights {item}: no selected method uses weights {name!r} "
                            f"(they use: {', '.join(sorted(used)) or 'none'})")
        out[name] = path
    return out


def _wanted_metrics(task: str, metric_names: list[str] | None) -> list[str]:
    """The task's default metrics, or the selected ones that score this task."""
    if metric_names is None:
        return list(DEFAULT_METRICS[task])
    wanted = [m for m in DEFAULT_METRICS[task] if m in metric_names]
    return wanted + [m for m in metric_names if m not in wanted and get_metric(m).spec.task == task]


def _task(dset, provides: str) -> str | None:
    """The first of the dataset's tasks that scores ``provides``."""
    return next((t for t in dset.tasks() if provides in FITS[t]), None)


def _chain_problem(chain: chains.Chain, dname: str, dset) -> str:
    """Why ``chain`` cannot run on ``dset`` (empty: it can)."""
    from methods import get_method
    from methods.map_units import why_not_convertible

    if chain.on_dataset:
        return "" if chains.map_targets(dset.TARGETS, chain.source) else chains.missing_map(chain.source, dname)
    src = get_method(chain.source)
    why = why_not_convertible(src.UNITS, src.HIGHER)
    return f"{chain.source} cannot feed {chain.consumer}: {why}" if why else ""


def plan(methods: list[str], datasets: dict[str, object], metric_names: list[str] | None) -> list[Pair]:
    from methods import get_method
    pairs = []
    metric_objs = {}
    for mname in methods:
        chain = chains.parse(mname)
        cls = get_method(chain.consumer if chain else mname)
        info = PredInfo(provides=cls.PROVIDES, units=cls.UNITS, higher=cls.HIGHER)
        for dname, dset in datasets.items():
            task = _task(dset, cls.PROVIDES)
            wanted = _wanted_metrics(task or dset.TASK, metric_names)
            pair = Pair(mname, dname, [], info=info, task=task or dset.TASK)
            if task is None:
                tasks = " / ".join(f"{t}: {' / '.join(FITS[t])}" for t in dset.tasks())
                pair.reason = f"{mname} provides {cls.PROVIDES}; {dname} scores {tasks}"
            elif chain is not None:
                pair.reason = _chain_problem(chain, dname, dset)
            if pair.reason:
                pair.na = dict.fromkeys(wanted, pair.reason)
                pairs.append(pair)
                continue
            for m in wanted:
                metric = metric_objs.setdefault(m, create_metric(m))
                why = metric.applicable(info)
                missing = [t for t in metric.spec.needs if t not in dset.TARGETS]
                if missing:
                    why = f"{dname} has no {', '.join(missing)}"
                if why:
                    pair.na[m] = why
                    continue
                gone = metric.unavailable()
                if gone:
                    pair.unavailable[m] = gone
                    continue
                pair.metrics.append(m)
            if chain is not None and not chain.on_gt and "radius_map" in dset.TARGETS and \
                    (metric_names is None or MAP_METRIC in metric_names):
                pair.metrics.append(MAP_METRIC)
                pair.map_metrics.append(MAP_METRIC)
            pairs.append(pair)
    return pairs


def metric_spec_dict(name: str) -> dict:
    """A metric's spec as JSON-ready data (run.json, ``bench list metrics``)."""
    d = asdict(get_metric(name).spec)
    d["needs"], d["accepts"], d["weights"] = list(d["needs"]), list(d["accepts"]), list(d["weights"])
    return d
