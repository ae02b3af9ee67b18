#!/usr/bin/env python
"""Copy the weights of a finished ``bench train`` run into the package (maintainers).

    python scripts/ship_weights.py RUN_DIR NAME
    python scripts/ship_weights.py --part bnet=RUN_B --part enet=RUN_E NAME     # a staged method

writes ``methods/weights/NAME.pt`` (the run's ``model.pt``, byte for byte) and ``NAME.json`` (its
model card).  With ``--part PREFIX=RUN_DIR`` (repeated) the runs' state dicts are merged into one, each
key prefixed by ``PREFIX.`` (``karaali2022``: ``bnet.*`` from the B-NET run, ``enet.*`` from the E-NET
run), and the card holds each run's card under ``parts``.  Refuses, in one line and exit 2, a run that is not finished, a card whose
``weights.sha256`` is not the sha256 of ``model.pt``, a file that does not load with
``torch.load(weights_only=True)`` as a state dict, and a result that would put the shipped
weights over :data:`LIMIT_BYTES` (50 MB) in total.  A card written before the training loop put
the per-epoch history in it gets the run's ``log.jsonl`` as ``history`` (the report's training
curve).  Both files are written to temporary names and renamed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datagen.atomic import atomic_write_bytes
from datagen.filehash import file_sha256

LIMIT_BYTES = 50 * 10**6
WEIGHTS = REPO / "methods" / "weights"


def ship(run_dir: Path, name: str) -> tuple[Path, Path]:
    model = run_dir / "model.pt"
    card, _ = _finished(run_dir)
    others = sum(p.stat().st_size for p in WEIGHTS.glob("*.pt") if p.name != f"{name}.pt")
    if others + model.stat().st_size > LIMIT_BYTES:
        raise SystemExit(f"ship_weights: error: the shipped weights would total {others + model.stat().st_size:,} "
                         f"bytes, over {LIMIT_BYTES:,}")
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    out_pt, out_card = WEIGHTS / f"{name}.pt", WEIGHTS / f"{name}.json"
    atomic_write_bytes(out_pt, model.read_bytes())
    atomic_write_bytes(out_card, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return out_pt, out_card


def _finished(run_dir: Path) -> tuple[dict, dict]:
    """``(card, state dict)`` of a finished run, checked as :func:`ship` checks one."""
    import torch

    from methods.torch_inference import unwrap_state_dict

    model, card_path, log = run_dir / "model.pt", run_dir / "model_card.json", run_dir / "log.jsonl"
    if not (model.is_file() and card_path.is_file()):
        raise SystemExit(f"ship_weights: error: {run_dir} is not a finished training run (model.pt and "
                         "model_card.json expected)")
    card = json.loads(card_path.read_text())
    if card.get("weights", {}).get("sha256") != file_sha256(model):
        raise SystemExit(f"ship_weights: error: {card_path} does not describe {model} (sha256 differs)")
    state = unwrap_state_dict(torch.load(model, map_location="cpu", weights_only=True), torch)
    if state is None:
        raise SystemExit(f"ship_weights: error: {model} is not a state dict of tensors")
    if "history" not in card and log.is_file():
        card["history"] = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return card, state


def ship_parts(parts: dict[str, Path], name: str) -> tuple[Path, Path]:
    """Merge the finished runs ``parts`` (prefix -> run folder) into ``NAME.pt`` + a card with ``parts``."""
    import io

    import torch

    merged, cards = {}, {}
    for prefix, run_dir in parts.items():
        card, state = _finished(run_dir)
        cards[prefix] = card
        merged.update({f"{prefix}.{k}": v.contiguous() for k, v in state.items()})
    buf = io.BytesIO()
    torch.save(merged, buf)
    data = buf.getvalue()
    others = sum(p.stat().st_size for p in WEIGHTS.glob("*.pt") if p.name != f"{name}.pt")
    if others + len(data) > LIMIT_BYTES:
        raise SystemExit(f"ship_weights: error: the shipped weights would total {others + len(data):,} bytes, "
                         f"over {LIMIT_BYTES:,}")
    import hashlib
    card = {"method": name, "parts": cards,
            "wall_seconds": sum(c.get("wall_seconds") or 0 for c in cards.values()),
            "weights": {"file": f"{name}.pt", "sha256": hashlib.sha256(data).hexdigest(), "dtype": "float32",
                        "merged_from": {p: c["weights"]["sha256"] for p, c in cards.items()}}}
    out_pt, out_card = WEIGHTS / f"{name}.pt", WEIGHTS / f"{name}.json"
    atomic_write_bytes(out_pt, data)
    atomic_write_bytes(out_card, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return out_pt, out_card


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("name")
    p.add_argument("--part", action="append", default=[], metavar="PREFIX=RUN_DIR",
                   help="merge several runs (a staged method), each key prefixed by PREFIX.")
    args = p.parse_args()
    try:
        if args.part:
            if args.run_dir is not None:
                raise SystemExit("ship_weights: error: give RUN_DIR or --part, not both")
            if any("=" not in item for item in args.part):
                raise SystemExit("ship_weights: error: --part takes PREFIX=RUN_DIR (e.g. bnet=runs/train/karaali2022_bnet-cpu-0)")
            parts = dict(item.split("=", 1) for item in args.part)
            pt, card = ship_parts({k: Path(v) for k, v in parts.items()}, args.name)
        else:
            if args.run_dir is None:
                raise SystemExit("ship_weights: error: give RUN_DIR (or --part PREFIX=RUN_DIR ...)")
            pt, card = ship(args.run_dir, args.name)
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    total = sum(q.stat().st_size for q in WEIGHTS.glob("*.pt"))
    print(f"{pt} ({pt.stat().st_size:,} bytes), {card}; all shipped weights: {total:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
