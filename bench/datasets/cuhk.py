"""CUHK blur detection dataset (Shi, Xu & Jia, CVPR 2014): images + binary blur masks.

Official layout (users point ``root`` at their copy)::

    root/image/out_of_focus0001.jpg ... out_of_focus0704.jpg, motion0001.jpg ... motion0296.jpg
    root/gt/out_of_focus0001.png ...                              (255 = blurred, 0 = in focus)

``images/`` is accepted for ``image/``; image extensions are matched case-insensitively
(the release mixes ``.jpg`` and ``.JPG``).  Masks are stored as ``blur_mask`` (True = blurred).

Subsets: ``test`` = ``out_of_focus0001-0200`` (the standard defocus test subset when DMENet's
list is not supplied; Galetto & Deng: "the first 200 images with defocus blur"), ``defocus``
(all 704), ``motion`` (296), ``all`` (1000).  A partial copy is used as is and says so in
``description`` (e.g. "5 of 200 images present").  ``masks_only=True`` needs only ``gt/``
(for ``bench score`` on maps made elsewhere).

Polarity: some redistributions invert the masks.  :meth:`CUHK.polarity_votes` compares a
local sharpness statistic inside and outside the "blurred" label on up to 20 images;
``polarity="auto"`` (default) inverts the masks when most images disagree.
"""
from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from datagen.errors import SourceError
from datagen.imageio import IMAGE_EXTENSIONS, open_image, read_bytes, read_rgb

from .base import Dataset, Sample

SUBSETS = {
    "test": [f"out_of_focus{i:04d}" for i in range(1, 201)],
    "defocus": [f"out_of_focus{i:04d}" for i in range(1, 705)],
    "motion": [f"motion{i:04d}" for i in range(1, 297)],
}
SUBSETS["all"] = SUBSETS["defocus"] + SUBSETS["motion"]


def read_mask(path: Path) -> np.ndarray:
    """A CUHK mask file -> bool (H, W), True where the stored value is > 127."""
    with open_image(path, what="mask") as im:
        arr = np.asarray(im.convert("L"))
    return arr > 127


def _sharpness(gray: np.ndarray) -> np.ndarray:
    import cv2
    lap = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F, ksize=3, borderType=cv2.BORDER_REFLECT)
    return cv2.blur(lap * lap, (15, 15), borderType=cv2.BORDER_REFLECT)


class CUHK(Dataset):
    NAME = "cuhk"
    VERSION = "1"
    TASK = "detection"
    TARGETS = ("blur_mask",)
    DESCRIPTION = "CUHK blur detection (Shi et al. 2014): defocus images with binary blur masks (255 = blurred)"

    def __init__(self, root: str | Path, *, subset: str = "test", masks_only: bool = False, polarity: str = "auto",
                 limit: int | None = None):
        self.root = Path(root)
        if subset not in SUBSETS:
            raise SourceError(f"cuhk subset {subset!r} is unknown; choose from {', '.join(SUBSETS)}")
        if polarity not in ("auto", "blurred255", "sharp255"):
            raise SourceError(f"cuhk polarity {polarity!r} is unknown; choose auto, blurred255 or sharp255")
        self.subset, self.masks_only, self.polarity, self.limit = subset, masks_only, polarity, limit
        if not self.root.is_dir():
            raise SourceError(f"cuhk root {self.root} is not a folder; point --root cuhk=DIR at the folder holding gt/ and image/")
        self.gt_dir = self.root / "gt"
        if not self.gt_dir.is_dir():
            raise SourceError(f"cuhk root {self.root} has no gt/ folder (expected the official layout: gt/ and image/)")
        self.image_dir = next((self.root / d for d in ("image", "images") if (self.root / d).is_dir()), None)
        if self.image_dir is None and not masks_only:
            raise SourceError(f"cuhk root {self.root} has no image/ folder (expected the official layout: gt/ and image/)")
        self._files = self._index()
        if not self._files:
            what = "mask" if masks_only else "image with its mask"
            raise SourceError(f"cuhk root {self.root}: no {what} of subset {subset!r} found (names like out_of_focus0001)")
        self._invert = polarity == "sharp255"

    def _index(self) -> dict[str, tuple[Path | None, Path]]:
        masks = {p.stem: p for p in self.gt_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        images = {}
        if self.image_dir is not None:
            images = {p.stem: p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        files = {}
        for key in SUBSETS[self.subset]:
            if key in masks and (self.masks_only or key in images):
                files[key] = (images.get(key), masks[key])
        keys = sorted(files)[: self.limit] if self.limit else sorted(files)
        return {k: files[k] for k in keys}

    @property
    def description(self) -> str:
        wanted = len(SUBSETS[self.subset])
        have = len(self._files)
        part = "" if have == wanted else f" ({have} of {wanted} images present)"
        return f"{self.DESCRIPTION}; subset {self.subset}{part}"

    def keys(self) -> list[str]:
        return list(self._files)

    def mask(self, key: str) -> np.ndarray:
        m = read_mask(self._files[key][1])
        return ~m if self._invert else m

    def load(self, key: str) -> Sample:
        image_path, _ = self._files[key]
        if image_path is None:
            raise SourceError(f"cuhk {key}: image file missing (masks-only dataset)")
        image = read_rgb(image_path)
        mask = self.mask(key)
        if mask.shape != image.shape[:2]:
            raise SourceError(f"cuhk {key}: mask {mask.shape[1]}x{mask.shape[0]} does not match image "
                              f"{image.shape[1]}x{image.shape[0]}; check the gt/ and image/ folders")
        return Sample(key, image, {"blur_mask": mask}, {"source": str(image_path)})

    def polarity_votes(self, n: int = 20) -> tuple[int, int]:
        """(images where the "blurred" label is less sharp, images checked) on up to ``n`` images."""
        agree = checked = 0
        for key in list(self._files)[:n]:
            image_path, mask_path = self._files[key]
            if image_path is None:
                continue
            gray = read_rgb(image_path).mean(axis=2)
            m = read_mask(mask_path)
            if m.shape != gray.shape or m.all() or not m.any():
                continue
            s = _sharpness(gray)
            agree += int(np.median(s[m]) < np.median(s[~m]))
            checked += 1
        return agree, checked

    def check_polarity(self) -> str | None:
        """With ``polarity="auto"``: invert the masks when most checked images disagree; returns a note."""
        if self.polarity != "auto" or self.masks_only:
            return None
        agree, checked = self.polarity_votes()
        if checked and agree * 2 < checked:
            self._invert = True
            return (f"cuhk masks look inverted ({checked - agree} of {checked} images are sharper inside the "
                    f"'blurred' label): using 0 = blurred (pass polarity blurred255 to override)")
        return None

    @cached_property
    def _content_digest(self) -> str:
        h = hashlib.sha256(f"cuhk v{self.VERSION} {self.subset} masks_only={self.masks_only}\n".encode())
        for key, (image_path, mask_path) in self._files.items():
            h.update(key.encode())
            for p in (image_path, mask_path):
                if p is not None:
                    h.update(hashlib.sha256(read_bytes(p)).digest())
        return h.hexdigest()

    @property
    def dataset_id(self) -> str:
        """Content hash (keys, file bytes, subset) and the mask polarity in use."""
        return hashlib.sha256(f"{self._content_digest} invert={self._invert}".encode()).hexdigest()[:16]


def key_for_map_file(name: str) -> str | None:
    """The CUHK key a map file belongs to: ``out_of_focus0001_HiFSTBlurMap.png`` -> ``out_of_focus0001``."""
    m = re.match(r"^((?:out_of_focus|motion)\d{4})", name)
    return m.group(1) if m else None
