"""``datagen`` command line: every verb is a thin wrapper over a library function.

Results go to stdout (``--json`` on ``build``, ``validate``, ``list``, ``info``, ``verify``: one JSON
document and nothing else), logs and progress (``--progress`` / ``--no-progress``,
:mod:`datagen.progress`) to stderr.

Exit codes: 0 ok; 1 a check failed (``verify``); 2 bad input (one line, no traceback);
130 interrupted (rerun the same command to resume).
"""
from __future__ import annotations

import argparse
import json
import sys

from . import SPLITS, __version__
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UserError,
    VerificationError,
    stdout_closed,
)
from .progress import add_progress_flags


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + error otherwise)
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _print_counts(counts: dict, classes: list | None = None) -> None:
    print(f"  {'split':<6} {'images':>7} {'samples':>9}")
    for s in SPLITS:
        print(f"  {s:<6} {counts[s]['images']:>7} {counts[s]['samples']:>9}")
    if classes:
        print("  per class (train/val/test): " + "  ".join(
            f"{c['label']}:{'/'.join(str(counts[s]['per_class'][c['label']]) for s in SPLITS)}" for c in classes))


def cmd_build(args) -> int:
    from .manifest import load_manifest
    from .runner import build

    manifest = load_manifest(args.manifest)
    res = build(manifest, out=args.out, workers=args.workers, scheduler=args.scheduler, overwrite=args.overwrite,
                limit=args.limit, progress=args.progress)
    lines = []
    if res.status == "built":
        from .generators import get_generator

        gen = get_generator(manifest.generator.kind)(manifest.generator)
        lines = list(gen.summary([s for s in res.stats if s.get("role", "primary") == "primary"]))
    if args.json:
        print(json.dumps({"path": str(res.path), "status": res.status, "dataset_id": res.dataset_id,
                          "content_sha256": res.content_sha256, "counts": res.counts, "seconds": res.seconds,
                          "shards_built": res.shards_built, "shards_reused": res.shards_reused, "summary": lines},
                         indent=2, sort_keys=True))
        return EXIT_OK
    if res.status == "built":
        print(f"built {res.path} in {res.seconds:.1f} s ({res.shards_built} shards built, {res.shards_reused} reused)")
        for line in lines:
            print(f"  {line}")
    else:
        print(f"up to date: {res.path} ({res.seconds:.1f} s)")
    print(f"  dataset_id {res.dataset_id}  content_sha256 {res.content_sha256}")
    _print_counts(res.counts)
    return EXIT_OK


def cmd_validate(args) -> int:
    from .manifest import load_manifest
    from .plan import make_plan

    manifest = load_manifest(args.manifest)
    plan = make_plan(manifest, limit=args.limit)
    per = plan.images_per_split()
    summary = {"manifest": args.manifest, "name": manifest.name, "dataset_id": plan.dataset_id,
               "generator": manifest.generator.kind, "images": per, "shards": len(plan.shards)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.manifest}: ok  name {manifest.name}  generator {manifest.generator.kind}  dataset_id {plan.dataset_id}")
        print("  images: " + ", ".join(f"{s} {per[s]}" for s in SPLITS) + f"; {len(plan.shards)} shards")
    return EXIT_OK


def cmd_list(args) -> int:
    from .generators import get_generator, list_generators
    from .sources import SOURCE_KINDS

    gens = []
    for kind in list_generators():
        cls = get_generator(kind)
        params = {name: {"default": f.default if not callable(f.default) else None, "doc": f.description}
                  for name, f in cls.Params.model_fields.items() if name != "kind"}
        gens.append({"kind": kind, "version": cls.VERSION, "description": cls.DESCRIPTION, "params": params})
    if args.json:
        print(json.dumps({"generators": gens, "sources": SOURCE_KINDS}, indent=2, default=str))
        return EXIT_OK
    print("generators:")
    for g in gens:
        print(f"  {g['kind']} (v{g['version']}): {g['description']}")
        for name, p in g["params"].items():
            print(f"      {name} = {p['default']!r}" + (f"  # {p['doc']}" if p["doc"] else ""))
    print("sources:")
    for kind, doc in SOURCE_KINDS.items():
        print(f"  {kind}: {doc}")
    return EXIT_OK


def cmd_info(args) -> int:
    from .corpus import info

    meta = info(args.path)
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{meta['path']} ({meta['size_bytes'] / 1e6:.1f} MB)")
    print(f"  name {meta['name']}  generator {meta['generator']} v{meta['generator_version']}")
    print(f"  dataset_id {meta['dataset_id']}  content_sha256 {meta['content_sha256']}")
    _print_counts(meta["counts"], meta.get("classes"))
    return EXIT_OK


#: What ``datagen verify`` checks (:func:`datagen.corpus.verify`), as its output says.
VERIFY_CHECKS = ("format version", "structure: fields, splits and the /sources table",
                 "provenance: attributes and /sources re-hashed, dataset_id recomputed",
                 "content_sha256: every stored dataset re-hashed",
                 "per split: sample counts, labels in range and per class, source rows in their split")


def cmd_verify(args) -> int:
    from .corpus import verify

    try:
        res = verify(args.path)
    except VerificationError as err:
        if args.json:   # the result on stdout; the error line on stderr and exit 1 as without --json
            print(json.dumps({"path": args.path, "ok": False, "checked": list(VERIFY_CHECKS), "problems": str(err)},
                             indent=2, sort_keys=True))
        raise
    if args.json:
        print(json.dumps({**res, "checked": list(VERIFY_CHECKS)}, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"ok: {res['path']} (dataset_id {res['dataset_id']}, content_sha256 {res['content_sha256']})")
    print("  checked: " + "; ".join(VERIFY_CHECKS))
    return EXIT_OK


def cmd_preview(args) -> int:
    from .preview import preview

    out = preview(args.path, args.out, split=args.split, per_class=args.per_class)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_fetch(args) -> int:
    from .fetch import fetch
    from .progress import Progress

    bars: dict[str, Progress] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in bars:   # the first report of an archive: what a resumed download already had
            bars[name] = Progress(total, log=lambda m: print(f"datagen: {m}", file=sys.stderr, flush=True), unit="B",
                                  desc=name, bar=args.progress, initial=done)
        bars[name].update(done - bars[name].done)
        if done >= total:
            bars.pop(name).close()

    try:
        dest = fetch(args.dataset, args.dest, base_url=args.base_url, checksums=args.checksums, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"{args.dataset} ready in {dest}; export DIV2K_ROOT={dest}")
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="datagen", description="Build reproducible synthetic defocus-blur corpora into HDF5.")
    parser.add_argument("--version", action="version", version=f"datagen (defocus-bench) {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("build", help="build a corpus from a manifest (resumable, Dask-parallel)")
    p.add_argument("manifest")
    p.add_argument("--out", help="output .h5 file (default: output.path or corpora/<name>.h5)")
    p.add_argument("--workers", type=_positive, help="local worker processes, 1 to 4 per core (default: one per core)")
    p.add_argument("--scheduler", help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", dest="overwrite", action="store_false", help="reuse complete shards (default)")
    mode.add_argument("--overwrite", dest="overwrite", action="store_true", help="rebuild from scratch")
    p.add_argument("--limit", type=_positive, help="use only N source images (a seeded subset)")
    add_progress_flags(p)
    p.add_argument("--json", action="store_true", help="print the result (path, counts, dataset_id, seconds) as JSON")
    p.set_defaults(func=cmd_build, overwrite=False)

    p = sub.add_parser("validate", help="check a manifest and its sources without building")
    p.add_argument("manifest")
    p.add_argument("--limit", type=_positive)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("list", help="generators and source kinds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="provenance and counts of a corpus file")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="re-hash a corpus and check its integrity (exit 1 on mismatch)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print what was checked and the result as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("preview", help="write a labelled grid of samples per class")
    p.add_argument("path")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", choices=SPLITS)
    p.add_argument("--per-class", type=_positive, default=8)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("fetch", help="download a source dataset (checksummed, resumable)")
    p.add_argument("dataset", help="dataset name, e.g. div2k")
    p.add_argument("--dest", required=True, help="folder to hold the dataset root")
    p.add_argument("--base-url", help="mirror to download from")
    p.add_argument("--checksums", help="file of 'NAME SIZE SHA256' lines overriding the built-in checksums")
    add_progress_flags(p)
    p.set_defaults(func=cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except UserError as err:
        print(f"datagen: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except VerificationError as err:
        print(f"datagen: verify failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return stdout_closed()
    except KeyboardInterrupt:
        print("datagen: interrupted; complete shards are kept, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
