"""``bench``: list, run, predict, score, report, compare, nightly, weights.

Every verb is a thin wrapper of a library function.  Results go to stdout (``run``: the leaderboard,
:mod:`bench.leaderboard`; ``--json`` on ``list``, ``run``, ``predict``, ``score``, ``compare``,
``weights``: one JSON document and nothing else), logs and progress (``--progress`` /
``--no-progress``, :mod:`datagen.progress`) to stderr.  Exit codes: 0 ok, 1 regression, 2
usage/config error (one line, no traceback), 3 partial failure, 4 nothing ran, 130 interrupted.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from datagen.errors import UserError, stdout_closed
from datagen.progress import add_progress_flags

from .exits import (  # noqa: F401
    EXIT_INTERRUPTED,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_REGRESSION,
    EXIT_USAGE,
)

VERSION = "defocus-bench 0.1.0"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _parse_sets(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


def _method_params(items: list[str] | None) -> dict[str, dict]:
    """``--set METHOD.key=value`` (bench run) -> {method: {key: value}}."""
    out: dict[str, dict] = {}
    for key, value in _parse_sets(items).items():
        method, dot, name = key.partition(".")
        if not dot or not name:
            raise UserError(f"--set {key}=...: bench run takes METHOD.key=value, e.g. --set local_std.window=32")
        out.setdefault(method, {})[name] = value
    return out


# ----------------------------------------------------------------------------- list
def _emit(rows: list[dict], as_json: bool, line) -> None:
    """Rows as JSON (``--json``) or one ``line(row)`` each."""
    if as_json:
        _print_json(rows)
    else:
        for r in rows:
            print(line(r))


def _method_rows() -> list[dict]:
    from methods import get_method, list_methods

    from .weights import weight_status
    rows = []
    for name in list_methods():
        try:
            info = get_method(name).info()
        except Exception as err:  # noqa: BLE001 - listing must not die on one broken plug-in
            info = {"name": name, "version": "?", "provides": "?", "units": "?", "higher": "n/a", "weights": {},
                    "description": f"cannot be loaded: {' '.join(str(err).split())[:200] or type(err).__name__}"}
        status = {w: weight_status(w) for w in info["weights"]}
        info["weights_state"] = {w: {k: st.get(k) for k in ("state", "origin", "sha256", "path")}
                                 for w, st in status.items()}
        info["weights_present"] = {w: st["state"] == "verified" for w, st in status.items()}
        rows.append(info)
    return rows


def _weight_word(st: dict) -> str:
    if st["state"] == "verified":
        return f"{st['origin']} {st['sha256'][:12]}"
    return "MISSING" if st["state"] == "missing" else "UNVERIFIED (re-import it)"


def _method_line(r: dict) -> str:
    w = ", ".join(f"{k} {_weight_word(st)}" for k, st in r["weights_state"].items()) or "no weights"
    higher = f", higher = {r['higher']}" if r["higher"] != "n/a" else ""
    return f"{r['name']:16s} v{r['version']:4s} {r['provides']} [{r['units']}{higher}]; {w}\n{'':22s}{r['description']}"


def _metric_rows() -> list[dict]:
    from .harness import metric_spec_dict
    from .metrics import get_metric, list_metrics
    rows = []
    for name in list_metrics():
        spec = metric_spec_dict(name)
        try:
            spec["available"] = get_metric(name)().unavailable() or "yes"
        except Exception as err:  # noqa: BLE001 - listing must not die on one metric
            spec["available"] = f"no ({err})"
        rows.append(spec)
    return rows


def _metric_line(r: dict) -> str:
    arrow = "higher is better" if r["higher_is_better"] else "lower is better"
    return (f"{r['name']:16s} {r['task']:12s} needs {','.join(r['needs']) or '-':12s} {arrow:16s} "
            f"[{r['unit']}] {r['available']}")


def _dataset_line(r: dict) -> str:
    root = "needs --root" if r["needs_root"] else "built in"
    return f"{r['name']:16s} {r['task']:12s} {root:13s} {r['description']}"


def cmd_list(args) -> int:
    from .datasets import dataset_table
    rows, line = {"methods": (_method_rows, _method_line), "metrics": (_metric_rows, _metric_line),
                  "datasets": (dataset_table, _dataset_line)}[args.what]
    _emit(rows(), args.json, line)
    return EXIT_OK


# ----------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from .harness import parse_roots, run
    from .leaderboard import format_run_result, run_result
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    path, code = run(methods=args.methods, datasets=datasets, metrics=args.metrics, profile=args.profile,
                     roots=parse_roots(args.root), out=args.out, device=args.device, fail_fast=args.fail_fast,
                     scheduler=args.scheduler, workers=args.workers, report=not args.no_report,
                     params=_method_params(args.set), weights=args.weights, subset=args.subset,
                     progress=args.progress)
    result = run_result(path, code)
    if args.json:
        _print_json(result)
    else:
        print(format_run_result(result))
    return code


# ----------------------------------------------------------------------------- predict
def cmd_predict(args) -> int:
    from pydantic import ValidationError

    from datagen.atomic import atomic_write_bytes
    from datagen.errors import describe_validation_error, writable_dir
    from datagen.imageio import read_rgb
    from methods import create_method, get_method

    from . import previews
    from .weights import resolve_method_weights

    try:
        cls = get_method(args.method)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    if args.weights is not None and not cls.WEIGHTS:
        raise UserError(f"--weights: {args.method} uses no weights")
    # --weights may be a file or, for a method with a folder converter, a source folder (bench.weights)
    resolved = resolve_method_weights(args.method, dict.fromkeys(cls.WEIGHTS, args.weights) if args.weights else None)
    weights = str(next(iter(resolved.values())).path) if resolved else None
    try:
        method = create_method(args.method, _parse_sets(args.set), device=args.device, weights=weights)
    except ValidationError as err:
        raise UserError(f"--set for {args.method}: {describe_validation_error(err)}") from None
    out = writable_dir(args.out, hint="choose another --out")
    images = [(p, read_rgb(p)) for p in args.images]  # decode all first: bad input fails before any output
    maps = _input_maps(args, cls, images)
    written = []
    for i, (path, image) in enumerate(images):
        pred = np.asarray(method.predict(image) if maps is None else method.predict_with_map(image, maps[i]),
                          dtype=np.float32)
        if i == 0:   # after the first success, so that an error stays the only line on stderr and --out stays empty
            for r in resolved.values():
                print(f"{args.method}: weights {r.name} ({r.origin}) {r.path} sha256 {r.sha256[:12]}", file=sys.stderr)
            # previews in a subfolder: --out holds only the maps, and `bench score --maps` reads it as it is
            shown = writable_dir(out / previews.PREDICT_FOLDER, hint="choose another --out")
        stem = Path(path).stem
        buf = io.BytesIO()
        np.save(buf, pred)
        atomic_write_bytes(out / f"{stem}.npy", buf.getvalue())
        preview = shown / f"{stem}.png"
        atomic_write_bytes(preview, previews.output_png(pred))
        written.append({"image": str(path), "npy": str(out / f"{stem}.npy"), "preview": str(preview),
                        "shape": list(pred.shape), "dtype": "float32"})
        if not args.json:
            print(out / f"{stem}.npy")
    if args.json:
        _print_json({"method": args.method, "out": str(out), "outputs": written,
                     "weights": {w: r.record() for w, r in resolved.items()}})
    return EXIT_OK


def _input_maps(args, cls, images) -> list | None:
    """The ``--map`` files of a map consumer, read and converted to its units (one-line errors)."""
    from methods.map_units import convert_map

    if not cls.NEEDS_MAP:
        if args.map:
            raise UserError(f"--map: {args.method} takes no blur map")
        return None
    if not args.map:
        raise UserError(f"{args.method} needs a blur map: give --map FILE for each image (.npy in --map-units, or a "
                        "PNG holding radius / 6 * 255)")
    if len(args.map) != len(images):
        raise UserError(f"--map: {len(args.map)} map(s) for {len(images)} image(s); give one per image, in order")
    out = []
    for path, (_, image) in zip(args.map, images, strict=True):
        raw, units = _read_map(path, args.map_units)
        out.append(convert_map(raw, units=units, to=cls.NEEDS_MAP, shape=image.shape[:2]))
    return out


def _read_map(path: str, units: str):
    """A map file: ``.npy`` (2-D float, ``units``) or an image (gray, ``/ 255`` = relative)."""
    from datagen.imageio import open_image
    from datagen.safe_read import UnreadableFile, read_regular_file

    try:
        raw = read_regular_file(path, limit=512 * 2**20, what="maps")
    except UnreadableFile as err:
        raise UserError(f"--map {path}: {err}") from None
    if str(path).lower().endswith(".npy"):
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, EOFError, OSError):
            raise UserError(f"--map {path}: not a numpy array file (.npy of numbers, saved with numpy.save)") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise UserError(f"--map {path}: holds {getattr(arr, 'dtype', type(arr))} values, not numbers")
        return arr, units
    with open_image(raw, name=str(path), what="map") as im:
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0, "relative"


# ----------------------------------------------------------------------------- score
def cmd_score(args) -> int:
    from .scoring import score_maps
    result = score_maps(dataset=args.dataset, root=args.root, maps=args.maps, higher=args.higher, units=args.units,
                        subset=args.subset, metrics=args.metrics)
    if args.json:
        _print_json(result)
    else:
        print(f"{result['dataset']} ({result['n']} maps, higher = {result['higher']}, dataset_id {result['dataset_id']})")
        for name, m in result["metrics"].items():
            extras = ", ".join(f"{k} {v:.4g}" for k, v in m["extras"].items() if isinstance(v, (int, float)))
            print(f"  {name:16s} {m['value']:.4f}" + (f"  ({extras})" if extras else ""))
    return EXIT_OK


# ----------------------------------------------------------------------------- report / compare
def cmd_report(args) -> int:
    from .report import write_report
    from .store import load_run
    load_run(args.run_dir)
    if args.baseline:
        load_run(args.baseline)
    print(write_report(args.run_dir, baseline=args.baseline, out=args.out))
    return EXIT_OK


def cmd_compare(args) -> int:
    from .compare import (
        compare_runs,
        format_table,
        has_regression,
        nothing_comparable,
        rows_to_json,
    )
    rows = compare_runs(args.base, args.current)
    if args.json:
        _print_json(rows_to_json(rows))
    else:
        print(format_table(rows))
    if has_regression(rows):
        return EXIT_REGRESSION
    nothing = nothing_comparable(rows)
    if nothing:
        print(f"bench: {nothing}", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def cmd_nightly(args) -> int:
    from .nightly import nightly
    return nightly(args.config)


# ----------------------------------------------------------------------------- weights
def _weights_line(r: dict) -> str:
    sha = r["sha256"][:12] if r["sha256"] else "-"
    line = f"{r['name']:12s} {r['kind']:6s} {r['state']:10s} {r['origin'] or '-':8s} {sha:12s} {r['path']}"
    card = r.get("card_summary") or {}
    if card:
        figures = [f"{k} {card[k]:.4f}" if isinstance(card[k], float) else f"{k} {card[k]}"
                   for k in ("profile", "epochs", "val_acc", "test_acc", "val_ssim", "test_ssim") if card.get(k) is not None]
        if r.get("card_matches") is False:
            figures.append("card describes other weights (sha256 differs)")
        line += f"\n{'':14s}model card: {', '.join(figures) or 'no key figures'}"
    return line + f"\n{'':14s}used by {', '.join(r['used_by']) or '-'}: {r['description']}"


def cmd_weights(args) -> int:
    from .weights import import_weights, list_weights
    if args.action == "import":
        if not args.name or not args.path:
            raise UserError("bench weights import NAME PATH: both are required")
        print(import_weights(args.name, args.path))
        return EXIT_OK
    rows = list_weights()
    if not args.json:
        for r in rows:
            r.pop("card", None)
    _emit(rows, args.json, _weights_line)
    return EXIT_OK


# ----------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from .train import train
    card = train(args.method, args.corpus, profile=args.profile, device=args.device, out=args.out,
                 resume=args.resume, seed=args.seed, overrides=_parse_sets(args.set), test_corpus=args.test_corpus,
                 init=args.init, progress=args.progress)
    best, metric = card["val"]["best"], card.get("metric", "acc")
    test = f"; test {metric} {card['test'][metric]:.4f} (n {card['test']['n']})" if card.get("test") else ""
    print(f"{card['method']}: best val {metric} {best[metric]:.4f} (epoch {best['epoch']}){test}; "
          f"weights {card['weights']['file']} sha256 {card['weights']['sha256'][:12]}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="DefocusBench evaluation harness")
    p.add_argument("--version", action="version", version=VERSION)
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    s = sub.add_parser("list", help="methods, metrics or datasets")
    s.add_argument("what", choices=["methods", "metrics", "datasets"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("run", help="predict and score methods on datasets; writes a run directory and its report")
    s.add_argument("--methods", default="all", help="all, names or globs, comma-separated (default all)")
    s.add_argument("--datasets", help="comma-separated names (default: the profile's datasets)")
    s.add_argument("--metrics", help="names or globs (default: each dataset task's metrics)")
    s.add_argument("--profile", default="quick", help="quick (built-in data, seconds) or full")
    s.add_argument("--root", action="append", metavar="NAME=DIR", help="folder of a real dataset, e.g. cuhk=/data/CUHK")
    s.add_argument("--out", help="run directory (default reports/runs/<run id>)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE", help="method parameter")
    s.add_argument("--weights", action="append", metavar="[NAME=]PATH",
                   help="your own weights file (or a source folder the method converts) for weight NAME "
                        "(a bare PATH when the selected methods use one weight)")
    s.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:port)")
    s.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    s.add_argument("--no-report", action="store_true", help="do not write report.html")
    s.add_argument("--subset", help="subset of cuhk, as bench score's: test (default), defocus, motion, all")
    s.add_argument("--json", action="store_true", help="print the run's result (leaderboard, run dir, report) as JSON")
    add_progress_flags(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--keep-going", dest="fail_fast", action="store_false", help="record failures and go on (default)")
    g.add_argument("--fail-fast", dest="fail_fast", action="store_true", help="stop at the first failure")
    s.set_defaults(func=cmd_run, fail_fast=False)

    s = sub.add_parser("predict", help="run one method on image files; writes <stem>.npy and previews/<stem>.png")
    s.add_argument("method")
    s.add_argument("images", nargs="+")
    s.add_argument("--out", required=True)
    s.add_argument("--weights", metavar="PATH", help="your own weights file, or a source folder the method converts "
                                                     "(e.g. karaali2022: the authors' models_tf1x); default: imported, else shipped")
    s.add_argument("--device", default="cpu")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--map", action="append", metavar="FILE",
                   help="methods that need a blur map (svbr2022, kf_layered): one per image, in order; .npy in "
                        "--map-units, or a PNG holding radius / 6 * 255 (the SVBR-Net convention)")
    s.add_argument("--map-units", default="radius_px", choices=("radius_px", "sigma_px", "relative"),
                   help="units of .npy maps (default radius_px)")
    s.add_argument("--json", action="store_true", help="print the files written per image as JSON")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("score", help="score maps made elsewhere with our protocols")
    s.add_argument("--dataset", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--maps", required=True)
    s.add_argument("--higher", choices=["blurred", "sharp"], default="blurred")
    s.add_argument("--units", default="score", choices=["score", "sigma_px", "radius_px", "relative"])
    s.add_argument("--subset", help="cuhk subset: test (default), defocus, motion, all")
    s.add_argument("--metrics")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("report", help="(re)write a run's HTML report")
    s.add_argument("run_dir")
    s.add_argument("--baseline")
    s.add_argument("--out")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("compare", help="compare two runs; exit 1 on regression, 4 when nothing is comparable")
    s.add_argument("base")
    s.add_argument("current")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("nightly", help="run -> compare with the committed baseline -> report -> exit code")
    s.add_argument("--config", default="nightly.yaml")
    s.set_defaults(func=cmd_nightly)

    s = sub.add_parser("weights", help="every weight of metrics and methods (state, sha256, origin, model card); "
                                       "import a user-provided file")
    s.add_argument("action", choices=["list", "import"])
    s.add_argument("name", nargs="?")
    s.add_argument("path", nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_weights)

    s = sub.add_parser("train", help="train a learned method on a corpus (checkpoints, resume, model card)")
    s.add_argument("method")
    s.add_argument("--corpus", required=True, help="a corpus file built by `datagen build`")
    s.add_argument("--test-corpus", help="a corpus never used in training whose test split gives the card's "
                                         "test metrics (default: --corpus's own test split, if any)")
    s.add_argument("--profile", default="smoke", help="smoke (seconds), cpu (~1 h on 2 cores) or full (the paper; GPU)")
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--out", help="output folder (default runs/train/<method>-<profile>-<seed>)")
    s.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile value, e.g. epochs=5")
    s.add_argument("--init", metavar="FILE", help="a staged method's earlier stage (karaali2022_enet: the model.pt of "
                                                  "a karaali2022_bnet run)")
    add_progress_flags(s)
    s.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return stdout_closed()
    except KeyboardInterrupt as err:
        detail = f"; {err}" if str(err) else ""
        print(f"bench: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
