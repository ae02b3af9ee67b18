"""``bench run``, phase 3: **reduce** -- per-sample metric states into the summary, sample and
curve rows of the run (:mod:`bench.store`), and the previews.  A pair with any failed sample, or
whose reduction fails, is reported as ``failed`` (never a mean over the survivors)."""
from __future__ import annotations

import json
import traceback

from .execute import _one_line
from .exits import EXIT_OK, EXIT_PARTIAL
from .metrics import get_metric
from .plan import Pair
from .store import RunWriter, preview_name


def _summary_row(writer: RunWriter, method: str, dataset: str, metric: str, status: str, reason: str = "",
                 value: float = float("nan"), n: int = 0, extras: dict | None = None) -> None:
    spec = get_metric(metric).spec
    writer.summary.append({"method": method, "dataset": dataset, "metric": metric, "value": value, "n": n,
                           "status": status, "reason": reason, "extras": json.dumps(extras or {}, sort_keys=True),
                           "higher_is_better": spec.higher_is_better, "unit": spec.unit})


def _reduce(writer: RunWriter, pairs: list[Pair], opened: dict, results: list[dict]) -> int:
    """Reduce per-sample states into summary/sample/curve rows; write previews; return the exit code."""
    states: dict[tuple[str, str, str], dict] = {}
    failures: dict[tuple[str, str], list[dict]] = {}
    index: dict[tuple[str, str], dict] = {}
    for res in results:
        m, d = res["method"], res["dataset"]
        writer.timings.extend(res["timings"])
        writer.failures.extend(res["failures"])
        failures.setdefault((m, d), []).extend(res["failures"])
        for metric, per_key in res["states"].items():
            states.setdefault((m, d, metric), {}).update(per_key)
        for key, png in res["previews"].items():
            entry = index.setdefault((d, key), {"dataset": d, "key": key, "input": None, "target": None, "methods": {}})
            for kind in ("input", "target"):
                if png[kind] is not None and entry[kind] is None:
                    entry[kind] = preview_name(d, key, kind)
                    writer.files[f"previews/{entry[kind]}"] = png[kind]
            entry["methods"][m] = preview_name(d, key, f"method-{m}")
            writer.files[f"previews/{entry['methods'][m]}"] = png["output"]
    writer.files["previews/index.json"] = json.dumps([index[k] for k in sorted(index)], indent=1).encode()
    for p in pairs:
        n_total = len(opened[p.dataset].keys())
        fails = failures.get((p.method, p.dataset), [])
        for metric in p.metrics:
            st = states.get((p.method, p.dataset, metric), {})
            if len(st) < n_total:
                scored = set(st)
                first = next((f for f in fails if f["key"] not in scored), None)
                why = first["error"] if first else "not run (--fail-fast stopped the run)"
                _summary_row(writer, p.method, p.dataset, metric, "failed",
                             f"{n_total - len(st)} of {n_total} samples failed: {why}")
                continue
            try:
                result = get_metric(metric)().reduce(st)
                value, per_sample = float(result.value), {k: float(v) for k, v in sorted(result.per_sample.items())}
            except Exception as err:  # noqa: BLE001 - a failing reduction is data for the report, like a failing predict
                writer.failures.append({"method": p.method, "dataset": p.dataset, "key": None, "stage": "reduce",
                                        "error": _one_line(err), "traceback": traceback.format_exc()})
                _summary_row(writer, p.method, p.dataset, metric, "failed", f"{metric} reduce failed: {_one_line(err)}")
                continue
            _summary_row(writer, p.method, p.dataset, metric, "ok", value=value, n=len(st), extras=result.extras)
            writer.samples.extend({"method": p.method, "dataset": p.dataset, "metric": metric, "key": k, "value": v}
                                  for k, v in per_sample.items())
            for curve, series in result.curves.items():
                if not {"precision", "recall"} <= set(series):
                    continue  # curves.parquet holds precision/recall curves; others stay in the metric's extras
                n_points = len(series["precision"])
                for i in range(n_points):
                    writer.curves.append({"method": p.method, "dataset": p.dataset, "metric": metric, "curve": curve,
                                          "point": i, **{c: float(series[c][i]) if c in series else float("nan")
                                                         for c in ("threshold", "precision", "recall")}})
    incomplete = any(row["status"] == "failed" for row in writer.summary)
    return EXIT_PARTIAL if writer.failures or incomplete else EXIT_OK
