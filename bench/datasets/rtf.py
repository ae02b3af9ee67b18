"""RTF / D'Andres et al. 2016 defocus-map benchmark: 22 Lytro images (360x360) with
ground-truth disk-radius maps.

Layout (as distributed with the TIP2018 / DMENet evaluation code; users point ``root`` at it)::

    root/image_01.png  root/map_01.mat   (MATLAB, variable ``blurMap``: disk radius, 0.5..6 px)
    ...                                  (``images/`` and ``maps/`` sub-folders are also accepted)

Crop: ``crop="rtf340"`` (dataset ``rtf``, the primary protocol) drops the rightmost 20 columns
of both image and map (360x340, as the TIP2018 demo and SVBR-Net do); ``crop=None``
(dataset ``rtf_full``) keeps 360x360.  Target: ``radius_map`` (float32, disk radius px).
"""
from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from datagen.errors import SourceError
from datagen.imageio import IMAGE_EXTENSIONS, read_bytes, read_rgb

from .base import Dataset, Sample

CROPS = {"rtf340": 20, None: 0}   # columns dropped on the right


def read_radius_map(path: Path) -> np.ndarray:
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # noqa: BLE001 - scipy raises several types for corrupt files
        raise SourceError(f"{path}: unreadable .mat file ({err}); replace the file") from None
    if "blurMap" not in mat:
        raise SourceError(f"{path}: no variable 'blurMap' (found {', '.join(k for k in mat if not k.startswith('__'))})")
    arr = np.asarray(mat["blurMap"], dtype=np.float32)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise SourceError(f"{path}: blurMap must be a finite 2-D array, got shape {arr.shape}")
    return arr


class RTF(Dataset):
    NAME = "rtf"
    VERSION = "1"
    TASK = "defocus_map"
    TARGETS = ("radius_map",)
    DESCRIPTION = "RTF (D'Andres et al. 2016): Lytro images with ground-truth disk-radius maps"

    def __init__(self, root: str | Path, *, crop: str | None = "rtf340", limit: int | None = None):
        self.root = Path(root)
        if crop not in CROPS:
            raise SourceError(f"rtf crop {crop!r} is unknown; choose rtf340 or none")
        self.crop, self.limit = crop, limit
        if not self.root.is_dir():
            raise SourceError(f"rtf root {self.root} is not a folder; point --root rtf=DIR at the folder holding image_NN.png and map_NN.mat")
        self._files = self._index()
        if not self._files:
            raise SourceError(f"rtf root {self.root}: no image_NN.png with a matching map_NN.mat found")

    def _index(self) -> dict[str, tuple[Path, Path]]:
        folders = [self.root, self.root / "images", self.root / "maps"]
        images, maps = {}, {}
        for folder in folders:
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = re.fullmatch(r"image_(\d+)", p.stem, re.IGNORECASE)
                if m and p.suffix.lower() in IMAGE_EXTENSIONS:
                    images[m.group(1)] = p
                m = re.fullmatch(r"map_(\d+)\.mat", p.name, re.IGNORECASE)
                if m:
                    maps[m.group(1)] = p
        files = {f"image_{n}": (images[n], maps[n]) for n in sorted(images) if n in maps}
        keys = list(files)[: self.limit] if self.limit else list(files)
        return {k: files[k] for k in keys}

    @property
    def description(self) -> str:
        crop = "360x340 crop (rightmost 20 columns dropped)" if self.crop else "full 360x360"
        return f"{self.DESCRIPTION}; {len(self._files)} images, {crop}"

    def keys(self) -> list[str]:
        return list(self._files)

    def load(self, key: str) -> Sample:
        image_path, map_path = self._files[key]
        image, radius = read_rgb(image_path), read_radius_map(map_path)
        if radius.shape != image.shape[:2]:
            raise SourceError(f"rtf {key}: map {radius.shape} does not match image {image.shape[:2]}")
        drop = CROPS[self.crop]
        if drop:
            image, radius = image[:, :-drop], radius[:, :-drop]
        return Sample(key, np.ascontiguousarray(image), {"radius_map": np.ascontiguousarray(radius)},
                      {"source": str(image_path)})

    @cached_property
    def dataset_id(self) -> str:
        h = hashlib.sha256(f"rtf v{self.VERSION} crop={self.crop}\n".encode())
        for key, paths in self._files.items():
            h.update(key.encode())
            for p in paths:
                h.update(hashlib.sha256(read_bytes(p)).digest())
        return h.hexdigest()[:16]


class RTFFull(RTF):
    NAME = "rtf_full"
    DESCRIPTION = "RTF (D'Andres et al. 2016), full 360x360 frames (secondary protocol)"

    def __init__(self, root: str | Path, *, limit: int | None = None):
        super().__init__(root, crop=None, limit=limit)
