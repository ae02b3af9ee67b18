"""Source images: list them (no decoding) from built-in photos, folders, or a DIV2K root.

Every image gets a stable key ``"<namespace>:<relative path or name>"`` that is independent
of where the data lives on disk; keys drive split assignment, seeding and canonical order.
"""
from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .imageio import IMAGE_EXTENSIONS, open_image
from .manifest import (
    SOURCE_MODELS,
    BuiltinSource,
    Div2kSource,
    FolderSource,
    Manifest,
    PairedSource,
)

#: Sharp natural photos shipped inside scikit-image's wheel (no download): name -> file.
BUILTIN_IMAGES = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble": "hubble_deep_field.jpg",
    "motorcycle": "motorcycle_left.png",
    "rocket": "rocket.jpg",
}

#: Source kind -> one line for ``datagen list`` (the kinds are those of :data:`datagen.manifest.SOURCE_MODELS`).
SOURCE_KINDS = {kind: model.DESCRIPTION for kind, model in SOURCE_MODELS.items()}
SOURCE_KINDS["builtin"] += ": " + ", ".join(BUILTIN_IMAGES)


#: Package folder of the object masks of built-in photos (``builtin`` sources with ``masks: true``):
#: ``datagen/data/masks/<name>.png``, made by ``scripts/make_builtin_masks.py`` (README there).
BUILTIN_MASKS_DIR = "data/masks"


@dataclass(frozen=True)
class Listed:
    key: str
    path: str
    size: int
    mask: str | None = None     # the mask file of an image + mask pair


def _builtin_masks_dir() -> Path:
    return Path(str(importlib.resources.files("datagen") / BUILTIN_MASKS_DIR))


def builtin_mask_names() -> list[str]:
    """Built-in photos that have a shipped object mask."""
    return sorted(p.stem for p in _builtin_masks_dir().glob("*.png") if p.stem in BUILTIN_IMAGES)


def _skimage_data_dir() -> Path:
    return Path(str(importlib.resources.files("skimage") / "data"))


def builtin_image_path(name: str) -> Path:
    """Path of the built-in photo ``name`` (see :data:`BUILTIN_IMAGES`) inside scikit-image."""
    if name not in BUILTIN_IMAGES:
        raise SourceError(f"unknown built-in image {name!r}; choose from {', '.join(BUILTIN_IMAGES)}")
    path = _skimage_data_dir() / BUILTIN_IMAGES[name]
    if not path.is_file():
        raise SourceError(f"built-in image {path} is missing from the installed scikit-image; reinstall it")
    return path


def _builtin(src: BuiltinSource, where: str) -> list[Listed]:
    names = src.images or (tuple(builtin_mask_names()) if src.masks else tuple(BUILTIN_IMAGES))
    data_dir = _skimage_data_dir()
    out = []
    for name in names:
        if name not in BUILTIN_IMAGES:
            raise SourceError(f"{where}.images: unknown built-in image {name!r}; choose from {', '.join(BUILTIN_IMAGES)}")
        path = data_dir / BUILTIN_IMAGES[name]
        if not path.is_file():
            raise SourceError(f"{where}: built-in image {path} is missing from the installed scikit-image; reinstall it")
        mask = None
        if src.masks:
            mask = _builtin_masks_dir() / f"{name}.png"
            if not mask.is_file():
                raise SourceError(f"{where}.images: built-in image {name!r} has no shipped mask; with masks: true "
                                  f"choose from {', '.join(builtin_mask_names())}")
        out.append(Listed(f"{src.namespace}:{name}", str(path), path.stat().st_size, str(mask) if mask else None))
    return out


def _glob_images(root: Path, pattern: str, where: str) -> list[Path]:
    try:
        matched = [p for p in root.glob(pattern) if p.is_file()]
    except (ValueError, OSError) as err:
        raise SourceError(f"{where}.pattern: cannot use {pattern!r} under {root} ({err})") from None
    images = [p for p in matched if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        what = f"{len(matched)} files but none with an image extension" if matched else "no files"
        raise SourceError(f"{where}: {pattern!r} under {root} matched {what}; check the root and pattern")
    return sorted(images, key=lambda p: p.relative_to(root).as_posix())


def _check_dir(root: Path, where: str, hint: str) -> None:
    if not root.exists():
        raise SourceError(f"{where}.root: {root} does not exist; {hint}")
    if not root.is_dir():
        raise SourceError(f"{where}.root: {root} is not a directory; {hint}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SourceError(f"{where}.root: {root} is not readable; fix its permissions")


def _folder(src: FolderSource, manifest: Manifest, where: str) -> list[Listed]:
    root = manifest.resolve_root(src.root)
    _check_dir(root, where, "point root at a folder of images")
    return [Listed(f"{src.namespace}:{p.relative_to(root).as_posix()}", str(p), p.stat().st_size)
            for p in _glob_images(root, src.pattern, where)]


def _div2k(src: Div2kSource, manifest: Manifest, where: str) -> list[Listed]:
    root = manifest.resolve_root(src.root)
    hint = ("set DIV2K_ROOT to the folder that holds DIV2K_train_HR/ and DIV2K_valid_HR/ "
            "(`datagen fetch div2k --dest DIR` downloads them)")
    _check_dir(root, where, hint)
    sub = root / f"DIV2K_{src.subset}_HR"
    if not sub.is_dir():
        raise SourceError(f"{where}: {sub} not found; {hint}")
    return [Listed(f"{src.namespace}:{p.relative_to(root).as_posix()}", str(p), p.stat().st_size)
            for p in _glob_images(sub, "*.png", where)]


def _paired(src: PairedSource, manifest: Manifest, where: str) -> list[Listed]:
    """Images of ``<root>/<images>`` with their masks in ``<root>/<masks>``, matched by file stem."""
    root = manifest.resolve_root(src.root)
    _check_dir(root, where, f"point root at the folder holding {src.images}/ and {src.masks}/")
    for sub, name in ((src.images, "images"), (src.masks, "masks")):
        _check_dir(root / sub, f"{where}.{name}", f"{root} must hold {sub}/")
    images = _glob_images(root / src.images, "*", f"{where}.images")
    masks: dict[str, Path] = {}
    for p in _glob_images(root / src.masks, "*", f"{where}.masks"):
        if p.stem in masks:
            raise SourceError(f"{where}.masks: two masks for {p.stem} ({masks[p.stem].name}, {p.name}); keep one")
        masks[p.stem] = p
    out = []
    for p in images:
        mask = masks.get(p.stem)
        if mask is None:
            raise SourceError(f"{where}: {src.images}/{p.name} has no mask {src.masks}/{p.stem}.*; add it or remove the image")
        out.append(Listed(f"{src.namespace}:{p.name}", str(p), p.stat().st_size, str(mask)))
    return out


def list_source(manifest: Manifest, index: int) -> list[Listed]:
    """The images of ``manifest.sources[index]`` in key order (header-checked, not decoded)."""
    src = manifest.sources[index]
    where = f"sources.{index}"
    if isinstance(src, BuiltinSource):
        items = _builtin(src, where)
    elif isinstance(src, FolderSource):
        items = _folder(src, manifest, where)
    elif isinstance(src, PairedSource):
        items = _paired(src, manifest, where)
    else:
        items = _div2k(src, manifest, where)
    for it in items:
        size = check_header(it.path)
        if it.mask is not None:
            mask_size = check_header(it.mask, what="mask")
            if mask_size != size:
                raise SourceError(f"{where}: mask {it.mask} is {mask_size[0]}x{mask_size[1]} but its image {it.path} is "
                                  f"{size[0]}x{size[1]}; a mask must have its image's size")
    return sorted(items, key=lambda it: it.key)


def check_header(path: str, *, what: str = "image") -> tuple[int, int]:
    """Fail early, with one line, on files that are not images or have too many pixels
    (:func:`datagen.imageio.open_image`; the full decode happens in the workers); returns
    ``(width, height)``."""
    with open_image(path, what=what) as im:
        return im.size
