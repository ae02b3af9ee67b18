"""``bench score``: score maps produced elsewhere (any tool) with our protocols.

Maps are matched to samples by file name: ``<key>.npy`` (float, any units), ``<key>.<png|jpg|...>``
(gray levels) or, for CUHK, any file that starts with the key (``out_of_focus0001_HiFSTBlurMap.png``).
Only the files directly in the folder count: subfolders (the ``previews/`` of ``bench predict --out``)
are ignored, so ``bench predict M IMAGES --out D`` then ``bench score --maps D`` works as written.
Every map must have its ground truth's size and finite values; anything else is a one-line
error (exit 2) before any score is computed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datagen.errors import SourceError, UserError
from datagen.imageio import IMAGE_EXTENSIONS, check_pixels, open_image

from .datasets import open_dataset
from .datasets.base import Sample
from .datasets.cuhk import key_for_map_file
from .metrics import PredInfo, create_metric
from .plan import select_metrics
from .tasks import DEFAULT_METRICS

_MAP_EXT = (".npy", *IMAGE_EXTENSIONS)
#: Datasets that take ``--subset`` (``bench score`` and ``bench run``): CUHK's test, defocus, motion, all.
SUBSET_DATASETS = ("cuhk",)


def read_map(path: Path) -> np.ndarray:
    """A map file -> float64 2-D array (``.npy`` as stored; images as gray levels 0..255).

    Both kinds are held to the image pixel limit (:func:`datagen.imageio.max_image_pixels`)
    before their data is read: a ``.npy`` header, like a PNG's, can claim any shape."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)   # header read, data mapped
        except (OSError, ValueError, SyntaxError) as err:
            raise SourceError(f"{path}: unreadable map ({err}); replace the file") from None
    else:
        with open_image(path, what="map") as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "I", "F", "I;16") else im)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise SourceError(f"{path}: a map must be 2-D, got shape {arr.shape}")
    check_pixels(str(path), arr.shape[1], arr.shape[0])
    try:
        arr = np.array(arr, dtype=np.float64)   # a copy: nothing stays mapped
    except (TypeError, ValueError):
        raise SourceError(f"{path}: a map must hold numbers, got dtype {arr.dtype}; fix the producer") from None
    if not np.isfinite(arr).all():
        raise SourceError(f"{path}: map has NaN or infinite values; fix the producer or drop the file")
    return arr


def find_maps(folder: Path, keys: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"--maps {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _MAP_EXT and p.is_file())
    by_key: dict[str, Path] = {}
    for p in files:
        key = p.stem if p.stem in keys else key_for_map_file(p.name)
        if key in keys:
            if key in by_key:
                raise UserError(f"--maps {folder}: two maps for {key} ({by_key[key].name}, {p.name}); keep one")
            by_key[key] = p
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise UserError(f"--maps {folder}: no map for {len(missing)} of {len(keys)} samples (first: {missing[0]}); "
                        "name maps <key>.npy or <key>.png")
    return by_key


def score_maps(*, dataset: str, root: str, maps: str, higher: str = "blurred", units: str = "score",
               subset: str | None = None, metrics: str | None = None) -> dict:
    """Score a folder of maps against ``dataset`` at ``root``; returns a JSON-ready dict."""
    options = {}
    if dataset == "cuhk":
        options = {"masks_only": True, "subset": subset or "test", "polarity": "blurred255"}
    elif subset:
        raise UserError(f"--subset applies to {', '.join(SUBSET_DATASETS)} only, not {dataset}")
    dset = open_dataset(dataset, root=root, **options)
    if dset.TASK not in ("detection", "defocus_map"):
        raise UserError(f"bench score scores blur maps; {dataset} is a {dset.TASK} dataset")
    keys = dset.keys()
    paths = find_maps(Path(maps), keys)
    chosen = select_metrics(metrics)
    names = [m for m in DEFAULT_METRICS[dset.TASK] if chosen is None or m in chosen]
    info = PredInfo(provides="blur_map", units=units, higher=higher)
    objs = {m: create_metric(m) for m in names}
    for m, obj in list(objs.items()):
        why = obj.applicable(info)
        if why:
            if chosen is not None:
                raise UserError(f"--metrics {m}: {why}")
            del objs[m]
    if not objs:
        raise UserError(f"no metric of {dataset} can score {units} maps; pass --units")
    states: dict[str, dict] = {m: {} for m in objs}
    for key in keys:
        pred = read_map(paths[key])
        targets = _targets(dset, key)
        shape = next(iter(targets.values())).shape[:2]
        if pred.shape != shape:
            raise UserError(f"{paths[key]}: map is {pred.shape[1]}x{pred.shape[0]} but the ground truth is "
                            f"{shape[1]}x{shape[0]}; resize it or check the file")
        sample = Sample(key, np.empty((0, 0, 3), np.float32), targets)
        for m, obj in objs.items():
            states[m][key] = obj.per_sample(pred, sample, info)
    out = {"dataset": dataset, "dataset_id": dset.dataset_id, "n": len(keys), "higher": higher, "units": units, "metrics": {}}
    for m, obj in objs.items():
        res = obj.reduce(states[m])
        out["metrics"][m] = {"value": res.value, "extras": res.extras, "higher_is_better": obj.spec.higher_is_better,
                             "unit": obj.spec.unit, "version": obj.spec.version}
        if "pr" in res.curves:
            c = res.curves["pr"]
            out["pr_curve"] = [{"threshold": t, "precision": p, "recall": r}
                               for t, p, r in zip(c["threshold"], c["precision"], c["recall"])]
    return out


def _targets(dset, key: str) -> dict:
    if hasattr(dset, "mask"):            # cuhk, masks only
        return {"blur_mask": dset.mask(key)}
    return dset.load(key).targets
