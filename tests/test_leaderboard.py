"""The leaderboard ``bench run`` prints: best per metric in the metric's direction, statuses, groups, text = JSON."""
from __future__ import annotations

import json
import math

import pandas as pd

from bench.leaderboard import format_leaderboard, leaderboard
from bench.store import SUMMARY_COLUMNS

SPECS = {"acc": {"higher_is_better": True, "unit": "fraction", "task": "detection"},
         "mae": {"higher_is_better": False, "unit": "px", "task": "detection"},
         "psnr": {"higher_is_better": True, "unit": "dB", "task": "restoration"}}


def _summary(rows: list[tuple]) -> pd.DataFrame:
    """``(method, dataset, metric, value, status)`` rows -> a summary table as bench run stores it."""
    out = []
    for method, dataset, metric, value, status in rows:
        spec = SPECS.get(metric, {"higher_is_better": True, "unit": "?"})
        out.append({"method": method, "dataset": dataset, "metric": metric, "value": value,
                    "n": 4 if status == "ok" else 0, "status": status, "reason": "" if status == "ok" else f"why {status}",
                    "extras": "{}", "higher_is_better": spec["higher_is_better"], "unit": spec["unit"]})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _cells(board: dict, table: int = 0) -> dict[tuple[str, str], dict]:
    return {(r["method"], m): c for r in board["tables"][table]["rows"] for m, c in r["cells"].items()}


def test_best_follows_each_metrics_direction():
    summary = _summary([("a", "d", "acc", 0.9, "ok"), ("a", "d", "mae", 2.0, "ok"),
                        ("b", "d", "acc", 0.7, "ok"), ("b", "d", "mae", 0.5, "ok"),
                        ("c", "d", "acc", 0.8, "ok"), ("c", "d", "mae", 1.0, "ok")])
    (board,) = leaderboard(summary, SPECS)
    cells = _cells(board)
    assert [m for (m, metric), c in cells.items() if c["best"]] == ["a", "b"]
    assert cells[("a", "acc")]["best"] and not cells[("a", "mae")]["best"]      # higher is better
    assert cells[("b", "mae")]["best"] and not cells[("b", "acc")]["best"]      # lower is better
    table = board["tables"][0]
    assert table["n"] == 4 and [m["name"] for m in table["metrics"]] == ["acc", "mae"]
    assert [m["higher_is_better"] for m in table["metrics"]] == [True, False]
    text = format_leaderboard([board])
    assert "0.9000*" in text and "0.5000*" in text and "2.0000*" not in text and "0.7000*" not in text
    lines = [line.split() for line in text.splitlines() if line.startswith("  ")]
    assert lines[:2] == [["method", "acc", "mae"], ["higher", "lower"]]
    assert lines[2:5] == [["a", "0.9000*", "2.0000"], ["b", "0.7000", "0.5000*"], ["c", "0.8000", "1.0000"]]


def test_the_spec_decides_the_direction_and_the_summary_column_stands_in_for_a_missing_spec():
    summary = _summary([("a", "d", "mae", 1.0, "ok"), ("b", "d", "mae", 2.0, "ok")])
    assert _cells(leaderboard(summary, SPECS)[0])[("a", "mae")]["best"]
    flipped = {"mae": {**SPECS["mae"], "higher_is_better": True}}
    assert _cells(leaderboard(summary, flipped)[0])[("b", "mae")]["best"]
    assert _cells(leaderboard(summary, {})[0])[("a", "mae")]["best"]      # higher_is_better column: False


def test_ties_are_all_marked_and_a_lone_value_is_not():
    summary = _summary([("a", "d", "acc", 0.5, "ok"), ("b", "d", "acc", 0.5, "ok"), ("c", "d", "acc", 0.1, "ok"),
                        ("a", "e", "acc", 0.9, "ok"), ("b", "e", "acc", math.nan, "failed")])
    d, e = leaderboard(summary, SPECS)
    assert [m for (m, _), c in _cells(d).items() if c["best"]] == ["a", "b"]
    assert not any(c["best"] for c in _cells(e).values())     # nothing to compare with


def test_na_unavailable_and_failed_are_shown_as_such_and_never_best():
    summary = _summary([("a", "d", "acc", 0.9, "ok"), ("a", "d", "mae", math.nan, "n/a"),
                        ("b", "d", "acc", math.nan, "unavailable"), ("b", "d", "mae", 3.0, "ok"),
                        ("c", "d", "acc", math.nan, "failed"), ("c", "d", "mae", 1.0, "ok"),
                        ("x", "d", "acc", math.nan, "n/a"), ("x", "d", "mae", math.nan, "n/a")])
    (board,) = leaderboard(summary, SPECS)
    cells = _cells(board)
    assert board["not_applicable"] == ["x"] and [r["method"] for r in board["tables"][0]["rows"]] == ["a", "b", "c"]
    assert cells[("a", "mae")] == {"value": None, "status": "n/a", "best": False, "reason": "why n/a"}
    assert cells[("b", "acc")]["status"] == "unavailable" and cells[("c", "acc")]["status"] == "failed"
    assert cells[("c", "mae")]["best"] and not cells[("a", "acc")]["best"]   # 0.9 stands alone in its column
    text = format_leaderboard([board])
    row = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ")}
    assert row["a"] == ["0.9000", "n/a"] and row["b"] == ["unavailable", "3.0000"] and row["c"] == ["failed", "1.0000*"]
    assert "d: no metric applies to x" in text
    assert "unavailable: the metric's weights are missing" in text and "n/a: the metric does not apply" in text
    json.dumps(board, allow_nan=False)      # JSON-ready: no NaN


def test_tasks_scored_by_other_methods_get_their_own_table():
    summary = _summary([("a", "d", "acc", 0.9, "ok"), ("a", "d", "mae", 1.0, "ok"), ("a", "d", "psnr", math.nan, "n/a"),
                        ("b", "d", "acc", 0.8, "ok"), ("b", "d", "mae", 2.0, "ok"), ("b", "d", "psnr", math.nan, "n/a"),
                        ("r", "d", "acc", math.nan, "n/a"), ("r", "d", "mae", math.nan, "n/a"),
                        ("r", "d", "psnr", 30.0, "ok")])
    (board,) = leaderboard(summary, SPECS)
    assert [([m["name"] for m in t["metrics"]], [r["method"] for r in t["rows"]], t["tasks"])
            for t in board["tables"]] == [(["acc", "mae"], ["a", "b"], ["detection"]), (["psnr"], ["r"], ["restoration"])]
    assert board["not_applicable"] == []
    text = format_leaderboard([board])
    assert "d: detection, 4 samples" in text and "d: restoration, 4 samples" in text and "30.0000" in text
