"""``datagen preview``: a labelled grid of samples, one row per class."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_write_bytes
from .corpus import open_corpus, read_info
from .errors import OutputError, UserError


def preview(path: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None, per_class: int = 8,
            scale: int = 2) -> Path:
    """Write a PNG grid: row ``k`` shows up to ``per_class`` samples of class ``k`` (evenly spaced)."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a .png file path")
    with open_corpus(path) as f:
        meta = read_info(f)
        splits = [split] if split else [s for s in ("test", "val", "train") if meta["counts"][s]["samples"]]
        if not splits or split not in (None, *meta["counts"]):
            raise UserError(f"--split {split}: no such split; choose from {', '.join(meta['counts'])}")
        grp = f[splits[0]]
        labels = grp["label"][...]
        classes = meta["classes"]
        p = grp["image"].shape[1]
        cell = p * scale + 4
        label_w = 90
        canvas = Image.new("L", (label_w + per_class * cell, len(classes) * cell + 20), 255)
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 4), f"{meta['name']} [{splits[0]}] {meta['dataset_id']}", fill=0)
        for row, cls in enumerate(classes):
            idx = np.flatnonzero(labels == cls["label"])
            pick = idx[np.linspace(0, len(idx) - 1, min(per_class, len(idx))).astype(int)] if len(idx) else []
            y = 20 + row * cell
            text = f"{cls['label']}: " + ", ".join(f"{k}={v:g}" for k, v in cls.items() if k != "label")
            draw.text((4, y + cell // 2 - 6), text, fill=0)
            for col, i in enumerate(pick):
                tile = Image.fromarray(grp["image"][int(i)]).resize((p * scale, p * scale), Image.NEAREST)
                canvas.paste(tile, (label_w + col * cell, y))
    png = io.BytesIO()
    canvas.save(png, format="PNG")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, png.getvalue())
    except OSError as err:
        raise OutputError(f"cannot write {out} ({err.strerror or err}); choose another --out") from None
    return out
