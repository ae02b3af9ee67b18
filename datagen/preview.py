"""``datagen preview``: a grid of samples a person can check by eye.

A corpus with classes gets one row per class (up to ``per_class`` samples of that class, evenly
spaced through the split); a corpus without (regression targets) gets rows of evenly spaced
samples.  Each tile is the generator's :meth:`~datagen.generators.Generator.preview_tile` of the
sample (gray or RGB), with its caption; a corpus whose generator is not installed shows its
``image`` field.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_write_bytes
from .corpus import open_corpus, read_info
from .errors import OutputError, UserError
from .generators import Generator, get_generator

#: Side (pixels) a tile is scaled towards when no ``scale`` is given.
_TILE_TARGET = 80
_LABEL_WIDTH = 120


def _generator(meta: dict) -> Generator:
    """The corpus's generator, from its stored parameters (the base class when it is not installed
    or the parameters no longer validate)."""
    gen = meta["manifest"].get("generator", {})
    try:
        cls = get_generator(meta["generator"])
        return cls(cls.Params.model_validate(gen.get("params", {})))
    except Exception:   # noqa: BLE001 - a preview of any corpus: fall back to its image field
        return Generator(None)


def _rgb_tile(tile: np.ndarray) -> Image.Image:
    tile = np.asarray(tile)
    if tile.dtype != np.uint8:
        lo, hi = float(np.min(tile)), float(np.max(tile))
        tile = np.uint8(np.clip((tile - lo) / (hi - lo or 1.0) * 255.0, 0, 255))
    return Image.fromarray(tile).convert("RGB")


def preview(path: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None, per_class: int = 8,
            scale: int | None = None) -> Path:
    """Write a PNG grid of samples of ``split`` (default: the first non-empty of test, val, train):
    row ``k`` shows up to ``per_class`` samples of class ``k`` (evenly spaced), or, for a corpus
    without classes, rows of ``per_class`` evenly spaced samples.  ``scale``: integer zoom of the
    tiles (default: towards 80 px)."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a .png file path")
    with open_corpus(path) as f:
        meta = read_info(f)
        splits = [split] if split else [s for s in ("test", "val", "train") if meta["counts"][s]["samples"]]
        if not splits or split not in (None, *meta["counts"]):
            raise UserError(f"--split {split}: no such split; choose from {', '.join(meta['counts'])}")
        grp = f[splits[0]]
        gen = _generator(meta)
        n = grp["source"].shape[0] if "source" in grp else 0
        classes = meta["classes"] if "label" in grp else []
        if classes:
            labels = grp["label"][...]
            rows = [(f"{c['label']}: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in c.items() if k != "label"),
                     np.flatnonzero(labels == c["label"])) for c in classes]
        else:
            n_rows = min(8, max(1, -(-n // per_class)))
            picks = np.linspace(0, max(n - 1, 0), min(n, n_rows * per_class)).astype(int) if n else np.zeros(0, int)
            rows = [(f"#{picks[r * per_class]}", picks[r * per_class:(r + 1) * per_class])
                    for r in range(n_rows) if r * per_class < len(picks)]
        chosen = []
        for text, idx in rows:
            pick = idx[np.linspace(0, len(idx) - 1, min(per_class, len(idx))).astype(int)] if classes and len(idx) else idx
            chosen.append((text, [int(i) for i in pick]))
        tiles = []
        for _, pick in chosen:
            samples = [{k: grp[k][i] for k in grp} for i in pick]
            tiles.append([(gen.preview_tile(s), gen.preview_caption(s)) for s in samples])
    shapes = [t.shape[:2] for row in tiles for t, _ in row] or [(32, 32)]
    side = max(max(h, w) for h, w in shapes)
    zoom = scale or max(1, _TILE_TARGET // side)
    shrink = max(1, -(-side // (4 * _TILE_TARGET)))     # very large tiles (whole images) are shown smaller
    cell_w = max(w for _, w in shapes) * zoom // shrink + 4
    caption_h = 12 if any(c for row in tiles for _, c in row) else 0
    cell_h = max(h for h, _ in shapes) * zoom // shrink + 4 + caption_h
    canvas = Image.new("RGB", (_LABEL_WIDTH + per_class * cell_w, len(chosen) * cell_h + 20), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{meta['name']} [{splits[0]}] {meta['dataset_id']}", fill=(0, 0, 0))
    for r, ((text, _), row) in enumerate(zip(chosen, tiles)):
        y = 20 + r * cell_h
        draw.text((4, y + cell_h // 2 - 6), text[:20], fill=(0, 0, 0))
        for c, (tile, caption) in enumerate(row):
            im = _rgb_tile(tile)
            im = im.resize((im.width * zoom // shrink, im.height * zoom // shrink), Image.NEAREST)
            canvas.paste(im, (_LABEL_WIDTH + c * cell_w, y))
            if caption:
                draw.text((_LABEL_WIDTH + c * cell_w, y + im.height + 1), caption[:cell_w // 6], fill=(0, 0, 0))
    png = io.BytesIO()
    canvas.save(png, format="PNG")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, png.getvalue())
    except OSError as err:
        raise OutputError(f"cannot write {out} ({err.strerror or err}); choose another --out") from None
    return out
