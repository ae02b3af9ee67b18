#!/usr/bin/env python
"""Copy the weights of a finished ``bench train`` run into the package (maintainers).

    python scripts/ship_weights.py RUN_DIR NAME

writes ``methods/weights/NAME.pt`` (the run's ``model.pt``, byte for byte) and ``NAME.json`` (its
model card).  Refuses, in one line and exit 2, a run that is not finished, a card whose
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
    import torch

    from methods.torch_inference import unwrap_state_dict

    model, card_path, log = run_dir / "model.pt", run_dir / "model_card.json", run_dir / "log.jsonl"
    if not (model.is_file() and card_path.is_file()):
        raise SystemExit(f"ship_weights: error: {run_dir} is not a finished training run (model.pt and "
                         "model_card.json expected)")
    card = json.loads(card_path.read_text())
    sha = file_sha256(model)
    if card.get("weights", {}).get("sha256") != sha:
        raise SystemExit(f"ship_weights: error: {card_path} names weights sha256 "
                         f"{card.get('weights', {}).get('sha256')}, but {model} has {sha}")
    if unwrap_state_dict(torch.load(model, map_location="cpu", weights_only=True), torch) is None:
        raise SystemExit(f"ship_weights: error: {model} is not a state dict of tensors")
    if "history" not in card and log.is_file():
        card["history"] = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    others = sum(p.stat().st_size for p in WEIGHTS.glob("*.pt") if p.name != f"{name}.pt")
    if others + model.stat().st_size > LIMIT_BYTES:
        raise SystemExit(f"ship_weights: error: the shipped weights would total {others + model.stat().st_size:,} "
                         f"bytes, over {LIMIT_BYTES:,}")
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    out_pt, out_card = WEIGHTS / f"{name}.pt", WEIGHTS / f"{name}.json"
    atomic_write_bytes(out_pt, model.read_bytes())
    atomic_write_bytes(out_card, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return out_pt, out_card


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("name")
    args = p.parse_args()
    try:
        pt, card = ship(args.run_dir, args.name)
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    total = sum(q.stat().st_size for q in WEIGHTS.glob("*.pt"))
    print(f"{pt} ({pt.stat().st_size:,} bytes), {card}; all shipped weights: {total:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
