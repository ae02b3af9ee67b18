"""Photos without a reference, for no-reference enhancement tables (task ``nr_enhancement``).

An enhancement method (unsharp masking, ``galetto2022_um``, ...) runs on each photo and the
no-reference IQA metrics (NIQE, BRISQUE, PIQE; lower is better) score its output, as in
Galetto & Deng 2022, Table 6 (Kodak24 and CUHK); ``identity`` gives the "original" row.

* ``kodak24``: the 24 Kodak photos ``kodim01..kodim24`` in a folder (any image extension; a
  partial copy is used as is and says so in the description);
* ``cuhk_photos``: the photos of a CUHK copy (same ``root`` and ``subset`` as ``cuhk``), their
  masks ignored.

The dataset id hashes the keys and the bytes of every file, never paths or mtimes.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

from datagen.errors import SourceError
from datagen.imageio import IMAGE_EXTENSIONS, read_bytes, read_rgb

from .base import Dataset, Sample
from .cuhk import SUBSETS

KODAK_KEYS = [f"kodim{i:02d}" for i in range(1, 25)]


class _Photos(Dataset):
    VERSION = "1"
    TASK = "nr_enhancement"
    TARGETS: tuple[str, ...] = ()

    def __init__(self, files: dict[str, Path], *, wanted: int, limit: int | None = None):
        keys = sorted(files)[:limit] if limit else sorted(files)
        self._files = {k: files[k] for k in keys}
        self._wanted = wanted

    @property
    def description(self) -> str:
        have = len(self._files)
        return self.DESCRIPTION + ("" if have == self._wanted else f" ({have} of {self._wanted} photos present)")

    def keys(self) -> list[str]:
        return list(self._files)

    def load(self, key: str) -> Sample:
        path = self._files[key]
        return Sample(key, read_rgb(path), {}, {"source": str(path)})

    @cached_property
    def dataset_id(self) -> str:
        h = hashlib.sha256(f"{self.NAME} v{self.VERSION}\n".encode())
        for key, path in self._files.items():
            h.update(key.encode())
            h.update(hashlib.sha256(read_bytes(path)).digest())
        return h.hexdigest()[:16]


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


class Kodak24(_Photos):
    NAME = "kodak24"
    DESCRIPTION = "Kodak24 photos (kodim01..24) without reference: no-reference IQA of enhanced images"

    def __init__(self, root: str | Path, *, limit: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise SourceError(f"kodak24 root {root} is not a folder; point --root kodak24=DIR at the folder holding "
                              "kodim01.png ... kodim24.png")
        found = {k: p for k, p in _images_in(root).items() if k in KODAK_KEYS}
        if not found:
            raise SourceError(f"kodak24 root {root}: no photo named kodim01 ... kodim24")
        super().__init__(found, wanted=len(KODAK_KEYS), limit=limit)


class CUHKPhotos(_Photos):
    NAME = "cuhk_photos"
    DESCRIPTION = "CUHK photos (the cuhk folder, masks ignored) without reference: no-reference IQA of enhanced images"

    def __init__(self, root: str | Path, *, subset: str = "test", limit: int | None = None):
        root = Path(root)
        if subset not in SUBSETS:
            raise SourceError(f"cuhk_photos subset {subset!r} is unknown; choose from {', '.join(SUBSETS)}")
        folder = next((root / d for d in ("image", "images") if (root / d).is_dir()), None)
        if folder is None:
            raise SourceError(f"cuhk_photos root {root} has no image/ folder (the CUHK layout: image/ and gt/)")
        wanted = set(SUBSETS[subset])
        found = {k: p for k, p in _images_in(folder).items() if k in wanted}
        if not found:
            raise SourceError(f"cuhk_photos root {root}: no photo of subset {subset!r} (names like out_of_focus0001)")
        super().__init__(found, wanted=len(wanted), limit=limit)
