"""bench.report: a self-contained HTML report from a synthetic run directory (and headless Chromium)."""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
import types
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image

from bench.compare import CompareRow
from bench.report import render_report, write_report

from .browser import render_in_chromium

METHODS = ["sharpnet", "blurmap<x>", "brokenmethod"]
DATASETS = ["cuhk_det", "gauss20"]
EVIL = "<b>bold</b> & \"quoted\""

METRICS = {
    "f_max": {"task": "detection", "higher_is_better": True, "unit": ""},
    "auc_pr": {"task": "detection", "higher_is_better": True, "unit": ""},
    "mae": {"task": "detection", "higher_is_better": False, "unit": ""},
    "mae_sigma": {"task": "estimation", "higher_is_better": False, "unit": "px"},
    "spearman": {"task": "estimation", "higher_is_better": True, "unit": ""},
    "level_accuracy": {"task": "estimation", "higher_is_better": True, "unit": "fraction"},
}
# (dataset, metric) -> {method: value}; brokenmethod fails everywhere
VALUES = {
    ("cuhk_det", "f_max"): {"sharpnet": 0.81, "blurmap<x>": 0.74},
    ("cuhk_det", "auc_pr"): {"sharpnet": 0.70},          # blurmap<x>: unavailable
    ("cuhk_det", "mae"): {"sharpnet": 0.21, "blurmap<x>": 0.12},
    ("gauss20", "mae_sigma"): {"sharpnet": 1.9, "blurmap<x>": 1.4},
    ("gauss20", "spearman"): {"sharpnet": 0.66},         # blurmap<x>: n/a
    ("gauss20", "level_accuracy"): {"sharpnet": 0.5, "blurmap<x>": 0.75},
}
# level_accuracy's confusion matrices (rows = true level, columns = predicted; proposed summary extras)
CONFUSIONS = {"sharpnet": [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]],      # 4 of 8 right
              "blurmap<x>": [[2, 0, 0, 0], [1, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]}    # 6 of 8 right
#: Ground-truth sigma of the gauss20 previews (constant per patch), by key.
PATCH_SIGMA = {"img0": 3.0, "img1": 0.0}
#: The colour scale recorded in sharpnet's map previews (blurmap<x>'s record none: a run from before).
SHARPNET_SCALE = {"cmap": "viridis", "vmin": 0.5, "vmax": 4.25, "unit": ""}
_CONF = (np.eye(4, dtype=int) * 8 + 1).tolist()     # accuracy 36 / 48 (the plot's, from the matrix)
CARD = {"method": "sharpnet", "recipe_version": "1", "architecture": {"name": "Net", "blocks": 3},
        "corpus": {"name": f"corpus {EVIL}", "dataset_id": "cafe0123", "content_sha256": "cd" * 32,
                   "counts": {"train": 1000, "val": 200, "test": 0}},
        "profile": "cpu", "hyperparameters": {"lr": 0.001}, "epochs_run": 3, "seed": 0,
        "val": {"best": {"epoch": 3, "loss": 0.5, "acc": 0.75}, "n": 200},
        "test": {"acc": 0.625, "n": 48, "confusion": _CONF, "corpus": {"name": "testcorpus", "dataset_id": "beef"}},
        "history": [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.2 * e, "val_acc": 0.25 * e}
                    for e in (1, 2, 3)],
        "wall_seconds": 1800.0, "hardware": {"cpu": "TestCPU", "cores": 2, "torch_threads": 2, "device": "cpu"},
        "git": {"sha": "f" * 40, "dirty": False}, "versions": {"torch": "2.x"},
        "weights": {"file": "model.pt", "sha256": "ab" * 32}}
NA_REASON = "method provides relative blur only"
UNAVAILABLE_REASON = "needs scikit-learn"
FAIL_ERROR = f"RuntimeError: CUDA kernel exploded {EVIL}"


def _png(path: Path, seed: int, size=(48, 32), *, kind: str = "photo", scale: dict | None = None) -> None:
    """A preview: random ``photo`` pixels, a black-and-white ``mask``, or a viridis ``map``; ``scale``
    recorded as :data:`bench.report.scales.SCALE_KEY` text chunk, as previews write it."""
    from matplotlib import colormaps
    from PIL.PngImagePlugin import PngInfo

    from bench.report.scales import SCALE_KEY

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "mask":
        pixels = np.repeat(((rng.random((size[1], size[0])) > 0.5) * 255).astype(np.uint8)[..., None], 3, axis=2)
    elif kind == "map":
        pixels = (colormaps["viridis"](rng.random((size[1], size[0])))[..., :3] * 255).round().astype(np.uint8)
    else:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    info = None
    if scale is not None:
        info = PngInfo()
        info.add_text(SCALE_KEY, json.dumps(scale))
    Image.fromarray(pixels).save(path, pnginfo=info)


def make_run(root: Path, run_id: str = "run-current", *, shift: float = 0.0, cards: bool = True) -> Path:
    """A run directory following the runner's schema: 2 datasets, 3 methods (one failing)."""
    root.mkdir(parents=True, exist_ok=True)
    methods = {m: {"name": m, "version": "1.0", "provides": "blur_map", "units": "sigma_px",
                   "higher": "blurrier", "description": f"method {m}", "reference": "https://example.org/paper",
                   "params": {"k": 3}} for m in METHODS}
    methods["sharpnet"]["description"] = f"Sharpness net {EVIL}"
    for m in ("sharpnet", "blurmap<x>") if cards else ():   # two methods sharing one weights file with a card
        methods[m]["weights"] = {"netw": {"origin": "shipped", "path": "/pkg/netw.pt", "sha256": "ab" * 32,
                                          "description": "test weights", "card": CARD}}
    info = {
        "format": "defocusbench-run", "format_version": 1, "run_id": run_id,
        "created": "2024-05-01T12:00:00+00:00", "profile": "quick", "device": "cpu",
        "git": {"sha": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
        "machine": {"hostname": "box", "platform": "Linux-6.1", "cpu_count": 2, "python": "3.11.7"},
        "versions": {"numpy": "2.0.0", "defocus-bench": "0.1.0"},
        "methods": methods,
        "datasets": {"cuhk_det": {"dataset_id": "cuhk", "version": "1", "task": "detection", "n": 4,
                                  "description": "CUHK blur detection"},
                     "gauss20": {"dataset_id": "gauss20", "version": "2", "task": "estimation", "n": 3,
                                 "description": "synthetic Gaussian blur"}},
        "metrics": {name: {"name": name, "task": m["task"], "needs": ["blur_map"], "accepts": ["sigma_px"],
                           "higher_is_better": m["higher_is_better"], "unit": m["unit"], "version": "1",
                           "threshold": None, "conventions": {"border": "8 px ignored", "resize": "bilinear"},
                           "description": f"{name} metric"} for name, m in METRICS.items()},
        "status": "partial", "exit_code": 1, "seconds": 12.5,
    }
    (root / "run.json").write_text(json.dumps(info, indent=1))

    rows = []
    for (dataset, metric), values in VALUES.items():
        meta = METRICS[metric]
        for method in METHODS:
            row = {"method": method, "dataset": dataset, "metric": metric, "value": float("nan"), "n": 0,
                   "status": "ok", "reason": "", "extras": "{}", "higher_is_better": meta["higher_is_better"],
                   "unit": meta["unit"]}
            if method == "brokenmethod":
                row.update(status="failed", reason=f"predict failed: {FAIL_ERROR}")
            elif method in values:
                extras = {"std": 0.05, "alpha": 0.4, "best_f": 0.8}
                if metric == "level_accuracy":
                    extras = {"confusion": CONFUSIONS[method]}
                row.update(value=values[method] + shift, n=4, extras=json.dumps(extras))
            elif metric == "auc_pr":
                row.update(status="unavailable", reason=UNAVAILABLE_REASON)
            else:
                row.update(status="n/a", reason=NA_REASON)
            rows.append(row)
    pd.DataFrame(rows).to_parquet(root / "summary.parquet")

    samples = [{"method": r["method"], "dataset": r["dataset"], "metric": r["metric"], "key": f"img{i}",
                "value": r["value"]} for r in rows if r["status"] == "ok" for i in range(2)]
    pd.DataFrame(samples).to_parquet(root / "samples.parquet")

    curves = []
    for method, top in (("sharpnet", 0.95), ("blurmap<x>", 0.85)):
        for point, thr in enumerate(np.linspace(0, 1, 11)):
            recall = 1 - thr
            curves.append({"method": method, "dataset": "cuhk_det", "metric": "f_max", "curve": "pr",
                           "point": point, "threshold": float(thr), "precision": float(top - 0.4 * recall ** 2),
                           "recall": float(recall)})
    pd.DataFrame(curves).to_parquet(root / "curves.parquet")

    timings = [{"method": m, "dataset": d, "key": f"img{i}", "seconds": 0.5 * (j + 1), "megapixels": 0.25}
               for j, m in enumerate(METHODS[:2]) for d in DATASETS for i in range(3)]
    pd.DataFrame(timings).to_parquet(root / "timings.parquet")

    failures = [{"method": "brokenmethod", "dataset": d, "key": "img0" if d == "gauss20" else None,
                 "stage": "predict", "error": FAIL_ERROR,
                 "traceback": f"Traceback (most recent call last):\n  File \"m.py\", line 3\n{FAIL_ERROR}\n"}
                for d in DATASETS]
    (root / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures))

    index = []
    for d_i, dataset in enumerate(DATASETS):
        for k in range(2):
            key = f"img{k}"
            entry = {"dataset": dataset, "key": key, "input": f"{dataset}/{key}_input.png",
                     "target": f"{dataset}/{key}_target.png",
                     "methods": {m: f"{dataset}/{key}_{m}.png" for m in METHODS[:2]}}
            _png(root / "previews" / entry["input"], 10 * d_i + k)
            if dataset == "cuhk_det":      # a blur mask, its scale not recorded (derived from the pixels)
                _png(root / "previews" / entry["target"], 100 + k, kind="mask")
            else:                          # a patch's constant sigma, recorded with its value
                sigma = PATCH_SIGMA[key]
                _png(root / "previews" / entry["target"], 100 + k, (32, 32), kind="map",
                     scale={"cmap": "viridis", "vmin": 0.0, "vmax": max(sigma, 1.0), "unit": "px (sigma)",
                            "value": sigma})
            for j, (m, rel) in enumerate(entry["methods"].items()):
                _png(root / "previews" / rel, 200 + 10 * j + k, kind="map",
                     scale=SHARPNET_SCALE if m == "sharpnet" else None)
            index.append(entry)
    (root / "previews" / "index.json").write_text(json.dumps(index))
    return root


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path / "current")


class _Cells(HTMLParser):
    """Collects tags with attributes, and leaderboard cells (data-method/data-metric) with their text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.cells: dict[tuple[str, str, str], dict] = {}
        self._table_id = 0
        self._section = ""
        self._cur: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "h3" and a.get("id", "").startswith("lb-"):
            self._section = a["id"][3:]
        if tag == "td" and "data-metric" in a:
            self._cur = {"class": a.get("class", ""), "title": a.get("title", ""),
                         "status": a.get("data-status"), "text": ""}
            self.cells[(self._section, a["data-method"], a["data-metric"])] = self._cur

    def handle_endtag(self, tag):
        if tag == "td":
            self._cur = None

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data


def parse(html: str) -> _Cells:
    p = _Cells()
    p.feed(html)
    return p


def test_report_is_self_contained(run_dir):
    html = render_report(run_dir)
    tags = parse(html).tags
    for tag, attrs in tags:
        for name in ("src", "href", "srcset", "action", "poster", "data"):
            value = (attrs.get(name) or "").strip()
            if value:
                assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:60]!r}> is not inline"
    assert not [a for t, a in tags if t == "script"], "no JavaScript expected"
    assert not [a for t, a in tags if t == "link"], "no external stylesheets/icons"
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)
    assert "@import" not in html
    # plots are inline SVG without namespace URLs; images are data URIs
    assert html.count("<svg") >= 2
    assert "http://www.w3.org" not in html
    assert sum(1 for t, a in tags if t == "img" and a.get("src", "").startswith("data:image/png;base64,")) == 14
    # the method reference (a URL in the data) is text only, never a link
    assert "https://example.org/paper" in html


def test_report_mentions_everything_and_escapes(run_dir):
    html = render_report(run_dir)
    for name in [*METHODS, *DATASETS, *METRICS]:
        assert _escaped(name) in html, name
    assert "<b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in html
    assert "blurmap&lt;x&gt;" in html and "blurmap<x>" not in html
    # header
    for text in ("run-current", "2024-05-01T12:00:00+00:00", "quick", "0123456789ab", "dirty", "partial",
                 "box", "3.11.7"):
        assert text in html
    # direction arrows and units in leaderboard headers
    assert re.search(r"f_max <span class=\"dir\">↑</span>", html)
    assert re.search(r"mae_sigma <span class=\"dir\">↓</span> <span class=\"unit\">\[px\]</span>", html)
    # failures: error, stage and a collapsible traceback; footer conventions and versions
    assert html.count("<summary>traceback</summary>") == 2
    assert "Traceback (most recent call last)" in html
    assert "8 px ignored" in html and "numpy" in html and "defocus-bench" in html
    # timings: (0.5 s * 3) / (0.25 MP * 3) = 2 s/MP for sharpnet, 4 s/MP for blurmap<x>
    assert re.search(r'data-method="sharpnet" data-dataset="gauss20"[^>]*>2 <span class="unit">s/MP', html)
    assert re.search(r'data-method="blurmap&lt;x&gt;" data-dataset="\*"[^>]*>4 <span class="unit">s/MP', html)


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_best_per_column_both_directions(run_dir):
    cells = parse(render_report(run_dir)).cells

    def best(dataset, metric):
        return sorted(m for (d, m, k), c in cells.items()
                      if d == dataset and k == metric and "best" in c["class"].split())

    assert best("cuhk_det", "f_max") == ["sharpnet"]          # higher is better
    assert best("cuhk_det", "mae") == ["blurmap<x>"]          # lower is better
    assert best("gauss20", "mae_sigma") == ["blurmap<x>"]
    assert best("cuhk_det", "auc_pr") == []                   # only one value: nothing to beat
    assert best("gauss20", "spearman") == []
    f_cell = cells[("cuhk_det", "sharpnet", "f_max")]
    assert f_cell["text"].startswith("0.81") and "★" in f_cell["text"]
    assert "★" not in cells[("cuhk_det", "blurmap<x>", "f_max")]["text"]
    assert cells[("gauss20", "blurmap<x>", "mae_sigma")]["text"].startswith("1.4 px")
    # n/a, unavailable and failed cells: short visible text, reason in the title of the status span
    html = render_report(run_dir)
    assert cells[("gauss20", "blurmap<x>", "spearman")]["status"] == "n/a"
    assert cells[("gauss20", "blurmap<x>", "spearman")]["text"].strip() == "n/a"
    assert f'title="{NA_REASON}">n/a</span>' in html
    assert cells[("cuhk_det", "blurmap<x>", "auc_pr")]["text"].strip() == "unavailable"
    assert f'title="{UNAVAILABLE_REASON}">unavailable</span>' in html
    for metric in ("f_max", "auc_pr", "mae"):
        cell = cells[("cuhk_det", "brokenmethod", metric)]
        assert cell["status"] == "failed" and cell["text"].strip() == "failed"


STAND_IN_SYMBOLS = {"worse": "+", "better": "-", "unchanged": " ", "not comparable": "x",
                    "newly failing": "!", "fixed": "*", "new": "n", "missing": "m"}


def test_comparison_section_with_stand_in(tmp_path, monkeypatch):
    base = make_run(tmp_path / "base", "run-base")
    current = make_run(tmp_path / "current", shift=0.1)
    calls = []

    def compare_runs(base_dir, current_dir):
        calls.append((Path(base_dir), Path(current_dir)))
        return [
            CompareRow("sharpnet", "cuhk_det", "f_max", 0.81, 0.91, 0.10, 0.05, 0.15, "better", ""),
            CompareRow("blurmap<x>", "cuhk_det", "mae", 0.12, 0.22, 0.10, 0.02, 0.18, "worse", f"slower {EVIL}"),
            CompareRow("brokenmethod", "gauss20", "mae_sigma", 1.0, None, None, None, None, "newly failing", "crash"),
            CompareRow("sharpnet", "gauss20", "spearman", 0.66, 0.76, 0.1, -0.2, 0.3, "unchanged", "CI spans 0"),
            # a state this report does not know: shown as it is, with its reason
            CompareRow("sharpnet", "cuhk_det", "auc_pr", 0.70, 0.71, 0.01, None, None, "too few samples to decide",
                       "n = 2: an exact test cannot reach p < 0.05"),
        ]

    fake = types.ModuleType("bench.compare")
    fake.compare_runs, fake.MARK_SYMBOLS = compare_runs, STAND_IN_SYMBOLS
    monkeypatch.setitem(sys.modules, "bench.compare", fake)

    assert 'id="comparison"' not in render_report(current)
    html = render_report(current, baseline=base)
    assert calls == [(base, current)]
    section = html[html.index('id="comparison"'):html.index('id="methods"')]
    assert "run-base" in section and "run-current" in section
    marks = re.findall(r'data-mark="([^"]+)"', section)
    assert marks == ["newly failing", "worse", "better", "too few samples to decide", "unchanged"]  # most severe first
    unknown = re.search(r'<tr class="([^"]+)" data-mark="too few samples to decide">(.*?)</tr>', section).groups()
    assert "mark-other" in unknown[0] and "n = 2: an exact test cannot reach p &lt; 0.05" in unknown[1]
    assert '<td class="sym"></td>' in unknown[1] and "+0.01" in unknown[1]
    assert '<td class="sym">!</td>' in section and '<td class="sym">+</td>' in section
    assert "+0.1" in section and "[+0.02, +0.18]" in section
    assert "slower &lt;b&gt;bold&lt;/b&gt;" in section and "<b>" not in html
    assert 'href="#comparison"' in html


def test_comparison_with_real_compare_module(tmp_path):
    compare = pytest.importorskip("bench.compare", reason="bench/compare.py not written yet")
    base = make_run(tmp_path / "base", "run-base")
    current = make_run(tmp_path / "current", shift=0.1)
    html = render_report(current, baseline=base)
    section = html[html.index('id="comparison"'):html.index('id="methods"')]
    rows = compare.compare_runs(base, current)
    assert len(re.findall(r"data-mark=", section)) == len(rows)
    for mark in {r.mark for r in rows}:
        assert f'data-mark="{mark}"' in section


def test_write_report_atomic_and_default_path(run_dir, tmp_path):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    assert path.read_text(encoding="utf-8") == render_report(run_dir)
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    other = write_report(run_dir, out=tmp_path / "out" / "r.html")
    assert other.is_file() and other.stat().st_size == path.stat().st_size
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_empty_and_partial_run(tmp_path):
    """Zero-row parquet files, no failures/previews, a missing curves file: still a report."""
    root = make_run(tmp_path / "empty", cards=False)
    for name, cols in (("summary", ["method", "dataset", "metric", "value", "n", "status", "reason", "extras",
                                    "higher_is_better", "unit"]),
                       ("samples", ["method", "dataset", "metric", "key", "value"]),
                       ("timings", ["method", "dataset", "key", "seconds", "megapixels"])):
        pd.DataFrame({c: [] for c in cols}).to_parquet(root / f"{name}.parquet")
    (root / "curves.parquet").unlink()
    (root / "failures.jsonl").unlink()
    shutil.rmtree(root / "previews")
    html = render_report(root)
    assert "No results were recorded." in html
    assert "No precision–recall curves" in html and "No previews" in html
    assert "No failures recorded." in html and "No timings recorded." in html
    assert "curves.parquet is missing" in html
    assert "<svg" not in html


@pytest.mark.slow
def test_browser_helper_reports_console_errors(tmp_path):
    """The helper itself must catch errors, or 'no console errors' below would prove nothing."""
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"></head><body><p>hello ↑</p>'
                    '<img src="missing.png"><script>console.error("boom"); throw new Error("kaput");</script>'
                    "</body></html>")
    result = render_in_chromium(page)
    errors = "\n".join(result["console_errors"])
    assert "boom" in errors and "kaput" in errors and "missing.png" in errors
    assert "hello ↑" in result["text"]
    assert result["broken_images"] == ["missing.png"]


@pytest.mark.slow
def test_report_in_headless_chromium(run_dir, tmp_path):
    report = write_report(run_dir)
    shot = tmp_path / "report.png"
    start = time.monotonic()
    result = render_in_chromium(report, screenshot=shot)
    print(f"\nrendered in {time.monotonic() - start:.1f} s; screenshot: {shot}")
    assert result["console_errors"] == []
    assert result["requests"] == []
    assert result["broken_images"] == []  # all 14 thumbnails decoded (none lazy or corrupt)
    for name in [*METHODS, *DATASETS]:
        assert name in result["text"], name
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.width >= 1000 and img.height > 1500


def test_names_with_dollar_signs_are_plain_text_not_mathtext(tmp_path):
    """Matplotlib parses ``$...$`` in labels as mathtext: ``$x^$`` raised, ``$\\alpha$`` became a glyph."""
    root = make_run(tmp_path / "dollars")
    _rename(root, {"sharpnet": "$x^$", "blurmap<x>": "$\\alpha$ 50%", "gauss20": "$g_{20"})
    html = render_report(root)
    svgs = "".join(re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL))
    assert "$x^$" in svgs and "$\\alpha$ 50%" in svgs and "$g_{20" in svgs


def test_model_cards_section(run_dir):
    """One card per weights file (shared by two methods): facts, training curve, confusion matrix."""
    html = render_report(run_dir)
    start = html.index('<section id="model-cards">')
    section = html[start:html.index("</section>", start)]
    assert section.count("<h3>") == 1 and ">netw<" in section
    assert f"corpus {escape(EVIL)}" in section and EVIL not in section      # escaped, never raw HTML
    for fact in ("sharpnet, blurmap&lt;x&gt;", "cafe0123", "best accuracy 75.00 % at epoch 3",
                 "accuracy 62.50 %, within one level 87.50 % on 48 samples of testcorpus", "30.0 min on TestCPU", "f" * 40):
        assert fact in section, fact
    assert section.count("<svg") == 2 and "training curve" in section and "test confusion (accuracy 0.750" in section


def test_model_cards_section_without_cards(tmp_path):
    from bench.report.cards import cards_section

    assert "No method of this run used weights with a model card" in cards_section({"m": {"weights": {}}})
    assert "<svg" not in cards_section({"m": {"weights": {"w": {"sha256": "x", "card": {"history": []}}}}})


# ---------------------------------------------------------------------------------------------
# at a glance: charts for every metric task, colour bars, patch ground truth, confusion matrices


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index("</section>", start)]


def _rename(root: Path, names: dict[str, str]) -> None:
    """Rename methods and datasets everywhere in a run made by :func:`make_run`."""
    meta = json.loads((root / "run.json").read_text())
    for section in ("methods", "datasets"):
        meta[section] = {names.get(k, k): v for k, v in meta[section].items()}
    (root / "run.json").write_text(json.dumps(meta))
    for name in ("summary", "curves", "timings", "samples"):
        df = pd.read_parquet(root / f"{name}.parquet")
        df[["method", "dataset"]] = df[["method", "dataset"]].replace(names)
        df.to_parquet(root / f"{name}.parquet")
    index = json.loads((root / "previews" / "index.json").read_text())
    for entry in index:
        entry["dataset"] = names.get(entry["dataset"], entry["dataset"])
        entry["methods"] = {names.get(m, m): rel for m, rel in entry["methods"].items()}
    (root / "previews" / "index.json").write_text(json.dumps(index))


ENHANCE = {  # metric -> (task, higher_is_better, unit, {method: value}) on a third dataset, synth_enhance
    "psnr": ("restoration", True, "dB", {"sharpnet": 24.4, "blurmap<x>": 26.2}),
    "ssim": ("restoration", True, "fraction", {"sharpnet": 0.766, "blurmap<x>": 0.836}),
    "niqe": ("nr_iqa", False, "score", {"sharpnet": 10.5, "blurmap<x>": 9.93}),
    "brisque": ("nr_iqa", False, "score", {"sharpnet": 50.8, "blurmap<x>": 44.5}),
}


def _add_enhancement(root: Path) -> None:
    """Full-reference (PSNR / SSIM) and no-reference IQA results on a third dataset."""
    meta = json.loads((root / "run.json").read_text())
    meta["datasets"]["synth_enhance"] = {"dataset_id": "enh", "version": "1", "task": "enhancement", "n": 4}
    rows = []
    for metric, (task, hib, unit, values) in ENHANCE.items():
        meta["metrics"][metric] = {"name": metric, "task": task, "higher_is_better": hib, "unit": unit}
        rows += [{"method": m, "dataset": "synth_enhance", "metric": metric, "value": v, "n": 4, "status": "ok",
                  "reason": "", "extras": json.dumps({"std": 0.01 * v}), "higher_is_better": hib, "unit": unit}
                 for m, v in values.items()]
    (root / "run.json").write_text(json.dumps(meta))
    summary = pd.read_parquet(root / "summary.parquet")
    pd.concat([summary, pd.DataFrame(rows)], ignore_index=True).to_parquet(root / "summary.parquet")


def test_charts_for_fidelity_iqa_and_map_metrics(tmp_path):
    """A bar chart per metric, grouped by task, its direction and unit in the title, values at the bars;
    a metric whose spec says ``plot: none`` gets none."""
    root = make_run(tmp_path / "run")
    _add_enhancement(root)
    meta = json.loads((root / "run.json").read_text())
    meta["metrics"]["spearman"]["plot"] = "none"
    (root / "run.json").write_text(json.dumps(meta))
    section = _section(render_report(root), "charts")
    headings = re.findall(r"<h3[^>]*>([^<]+)</h3>", section)
    assert headings == ["Blur detection", "Restoration and enhancement (full reference)", "No-reference image quality",
                        "estimation"]   # known tasks in their order, then the others by name
    titles = {"psnr [dB] ↑ higher is better", "ssim [fraction] ↑ higher is better",
              "niqe [score] ↓ lower is better", "brisque [score] ↓ lower is better",
              "mae_sigma [px] ↓ lower is better", "f_max ↑ higher is better", "mae ↓ lower is better",
              "auc_pr ↑ higher is better", "level_accuracy [fraction] ↑ higher is better"}
    svgs = re.findall(r"<svg.*?</svg>", section, flags=re.DOTALL)
    shown = {t for t in titles for svg in svgs if f">{t}<" in svg}
    assert shown == titles
    assert not any(">spearman" in svg for svg in svgs)          # plot: none
    assert section.count("<figure") == len(titles) + len(CONFUSIONS)
    iqa = next(svg for svg in svgs if ">niqe [score]" in svg)
    # bars: both methods with their values, the best (lower niqe: blurmap<x>) starred
    assert ">10.5<" in iqa and ">9.93 ★<" in iqa and ">blurmap&lt;x&gt;<" in iqa
    psnr = next(svg for svg in svgs if ">psnr [dB]" in svg)
    assert ">26.2 ★<" in psnr and ">24.4<" in psnr and ">dB<" in psnr


def test_every_gallery_map_has_a_colour_bar_and_unit(run_dir):
    """Maps: a colour bar in the cell, or once in the column's header when the whole column shares it;
    numbers where the preview recorded its range, min/max (relative) where it did not."""
    gallery = _section(render_report(run_dir), "galleries")
    tables = re.findall(r'<h3 id="gal-([^"]+)">.*?<table class="gallery">(.*?)</table>', gallery, flags=re.DOTALL)
    assert [t[0] for t in tables] == ["cuhk_det", "gauss20"]
    for dataset, table in tables:
        heads = re.findall(r"<th>(.*?)</th>", table.split("</thead>")[0], flags=re.DOTALL)
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.DOTALL) for r in table.split("<tbody>")[1].split("</tr>")
                if "<td" in r]
        for j, head in enumerate(heads[1:], start=1):
            cells = [r[j] for r in rows]
            if head.startswith("input"):
                assert "cbar" not in head and not any("cbar" in c for c in cells)
                continue
            has_bar = "cbar" in head or all("cbar" in c for c in cells)
            assert has_bar, (dataset, head)
    cuhk = tables[0][1]
    # the blur mask (scale not recorded: derived from its black-and-white pixels): one bar in the header
    assert re.search(r"<th>ground truth<div class=\"cbar\"[^>]*>.*?<span>sharp</span><span>blurred</span>", cuhk,
                     flags=re.DOTALL)
    # sharpnet recorded 0.5..4.25 for both maps (one bar, in its header); blurmap<x> recorded nothing
    # (a relative bar per map); both in the method's unit
    assert re.search(r"<th>sharpnet<div class=\"cbar\"[^>]*>.*?<span>0.5</span><span>2.38</span><span>4.25</span>", cuhk,
                     flags=re.DOTALL)
    assert cuhk.count("<span>min</span><span>max</span>") == 2
    assert cuhk.count('class="cunit">px (Gaussian sigma)<') == 3 and "range not recorded by this run" in cuhk


def test_patch_dataset_ground_truth_is_shown(run_dir):
    """gauss20's ground truth is one sigma per patch: its value and a swatch on the column's colour bar."""
    gallery = _section(render_report(run_dir), "galleries")
    gauss = gallery[gallery.index('id="gal-gauss20"'):]
    cells = re.findall(r'<td class="gt-value" title="([^"]*)"><div class="swatch" style="background: (#[0-9a-f]{6})">'
                       r'</div><span class="gtval">([^<]*) <span class="unit">([^<]*)</span>', gauss)
    assert [(c[2], c[3]) for c in cells] == [("3", "px (sigma)"), ("0", "px (sigma)")]
    assert cells[0][1] != cells[1][1]                        # 3 px and 0 px: two colours of one scale
    assert "constant 3 px (sigma)" in cells[0][0]
    head = re.search(r"<th>ground truth(.*?)</th>", gauss, flags=re.DOTALL).group(1)
    assert "<span>0</span><span>1.5</span><span>3</span>" in head and "px (sigma)" in head


def test_confusion_matrices_of_level_classifiers(run_dir):
    """A gauss20 run whose level_accuracy rows carry their confusion matrix: one plot per method."""
    html = render_report(run_dir)
    section = _section(html, "charts")
    assert "Confusion matrices" in section
    block = section[section.index('data-dataset="gauss20"'):]
    svgs = re.findall(r"<svg.*?</svg>", block, flags=re.DOTALL)
    assert len(svgs) == 2
    assert ">sharpnet (accuracy 0.500, n 8)<" in svgs[0] and ">blurmap&lt;x&gt; (accuracy 0.750, n 8)<" in svgs[1]
    assert ">true level<" in svgs[0] and ">predicted level<" in svgs[0]
    assert "level_accuracy: sharpnet on gauss20" in block
    # the matrix is data for the plot, not text for the leaderboard's tooltip
    cell = parse(html).cells[("gauss20", "sharpnet", "level_accuracy")]
    assert "confusion" not in cell["title"] and cell["text"].startswith("0.5")


def test_no_confusion_matrix_without_one_in_the_run(tmp_path):
    root = make_run(tmp_path / "run")
    summary = pd.read_parquet(root / "summary.parquet")
    summary.loc[summary["metric"] == "level_accuracy", "extras"] = "{}"
    summary.to_parquet(root / "summary.parquet")
    assert "Confusion matrices" not in render_report(root)


SCRIPT = '<script>console.error("xss")</script>'


def test_names_with_script_tags_are_escaped_everywhere(tmp_path):
    """Autoescaping: a method and a dataset named with a <script> element are text in every section."""
    root = make_run(tmp_path / "run")
    _rename(root, {"blurmap<x>": f"m{SCRIPT}", "gauss20": f"d{SCRIPT}"})
    html = render_report(root)
    assert "<script" not in html.lower() and not [t for t, _ in parse(html).tags if t == "script"]
    escaped = "&lt;script&gt;console.error(&#34;xss&#34;)&lt;/script&gt;"
    for anchor in ("leaderboards", "charts", "galleries", "timings", "methods"):
        assert escaped in _section(html, anchor) or _escaped(SCRIPT) in _section(html, anchor), anchor


@pytest.mark.slow
def test_names_with_script_tags_do_not_run_in_chromium(tmp_path):
    root = make_run(tmp_path / "run")
    _rename(root, {"blurmap<x>": f"m{SCRIPT}", "gauss20": f"d{SCRIPT}"})
    result = render_in_chromium(write_report(root))
    assert result["console_errors"] == [] and result["requests"] == []
    assert f"m{SCRIPT}" in result["text"] and f"d{SCRIPT}" in result["text"]


def test_scale_of_previews_without_a_record(tmp_path):
    """Runs from before previews recorded their scale: masks and viridis radius maps are recognised;
    a recorded scale wins; a method's map takes its unit and polarity from run.json."""
    from bench.report.scales import LEGACY_RADIUS, preview_scale

    def png(kind: str, scale=None) -> bytes:
        path = tmp_path / f"{kind}{len(list(tmp_path.iterdir()))}.png"
        _png(path, 7, kind=kind, scale=scale)
        return path.read_bytes()

    mask, radius, photo = png("mask"), png("map"), png("photo")
    assert preview_scale("target", mask).ticks == ["sharp", "blurred"]
    s = preview_scale("target", radius)
    assert (s.vmin, s.vmax) == LEGACY_RADIUS and s.unit == "px (disk radius)" and s.ticks == ["0", "3", "6"]
    assert preview_scale("target", photo) is None and preview_scale("input", radius) is None
    s = preview_scale("target", png("map", {"cmap": "magma", "vmin": 1, "vmax": 2, "unit": "px (x)"}))
    assert (s.cmap, s.vmin, s.vmax, s.unit) == ("magma", 1.0, 2.0, "px (x)")
    assert s.gradient.startswith("linear-gradient(to right, #000004 0%")
    s = preview_scale("method", photo, method_meta={"provides": "blur_map", "units": "radius_px", "higher": "sharp"})
    assert s.ticks == ["min", "max"] and s.caption == "px (disk radius) · high = sharp"
    assert preview_scale("method", photo, method_meta={"provides": "restored_image"}) is None


def test_report_templates_are_package_data():
    """Every template is matched by pyproject's package-data globs (an installed package has them)."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = root / "bench" / "report"
    globs = data.get("bench.report", [])
    files = [p.relative_to(package).as_posix() for p in (package / "templates").rglob("*") if p.is_file()]
    assert files and "templates/report.html.j2" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert missing == []
