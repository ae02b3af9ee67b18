"""Manifests: strict YAML -> validated, immutable models, with ``${VAR}`` interpolation.

Conventions
-----------
* Unknown keys are errors everywhere (pydantic ``extra="forbid"``).
* ``${VAR}`` and ``${VAR:-default}`` in any string are replaced from the environment
  before validation; an unset variable without default is an error naming it.
* A manifest file is bounded: at most :data:`MAX_MANIFEST_BYTES` bytes, and the tree it
  describes, with YAML aliases (``*x``) followed, at most :data:`MAX_MANIFEST_NODES` nodes and
  :data:`MAX_MANIFEST_DEPTH` levels deep, without an alias inside its own anchor (aliases
  are fine for sharing a value; a few lines of nested ones can expand to billions of nodes).
  Duplicate keys in a mapping are refused (YAML would silently keep the last one).  Each of
  these fails in one line naming the line.
* A ``folder`` source's ``pattern`` is a relative glob under its root, without ``..``.
* Relative source roots are relative to the manifest file's folder; the output path
  (``output.path`` or ``--out``) is relative to the current directory.
* The generator block is validated by the generator's own parameter model
  (:func:`datagen.generators.get_generator`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator

from .errors import ManifestError, describe_validation_error, validation_message
from .generators import StrictModel, get_generator
from .safe_read import UnreadableFile, read_regular_file

SplitName = Literal["train", "val", "test"]
#: The role of sources that give one task per image (the others are companions drawn per task).
PRIMARY = "primary"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: Largest manifest file read, in bytes (real manifests are under 2 KB).
MAX_MANIFEST_BYTES = 64 * 1024
#: Deepest nesting of mappings and lists in a manifest, aliases followed (real ones need 4).
MAX_MANIFEST_DEPTH = 32
#: Most nodes (keys and values) in a manifest, aliases followed (one with 100 sources has ~1,000).
MAX_MANIFEST_NODES = 10_000


class _Source(StrictModel):
    #: One line for ``datagen list``.
    DESCRIPTION: ClassVar[str]

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="namespace of image keys (default: kind)")
    split: SplitName | dict[SplitName, float] = Field(description="a split name, or fractions by image summing to 1")
    split_order: Literal["hash", "sorted"] = Field(
        "hash", description="how fractions are dealt: hash = a seeded, key-hashed order (default); sorted = by "
                            "sorted key, the first fraction to the first split (the papers' 'first 280 files')")
    role: str = Field(PRIMARY, pattern=r"^[a-z][a-z0-9_]*$",
                      description="primary (one task per image) or a companion role the generator draws from, "
                                  "e.g. background")

    @field_validator("split")
    @classmethod
    def _fractions(cls, v):
        if isinstance(v, dict):
            if not v:
                raise ValueError("give at least one split")
            if any(not (f > 0) for f in v.values()):
                raise ValueError("every split fraction must be > 0")
            if abs(sum(v.values()) - 1.0) > 1e-6:
                raise ValueError(f"split fractions must sum to 1 (they sum to {sum(v.values()):g})")
        return v

    @property
    def namespace(self) -> str:
        return self.name or self.kind


class BuiltinSource(_Source):
    DESCRIPTION = "photos bundled inside scikit-image (no network)"
    kind: Literal["builtin"]
    images: tuple[str, ...] | None = Field(None, min_length=1, description="built-in photo names (default: all)")
    masks: bool = Field(False, description="pair each photo with its object mask shipped in datagen/data/masks "
                                           "(the photos that have one)")


class FolderSource(_Source):
    DESCRIPTION = "image files matched by a glob under a root folder"
    kind: Literal["folder"]
    root: str
    pattern: str = Field("**/*", description="glob under root; files with image extensions are kept")

    @field_validator("pattern")
    @classmethod
    def _under_root(cls, v: str) -> str:
        parts = v.replace("\\", "/").split("/")
        if v.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", v) or ".." in parts:
            raise ValueError("must be a relative glob under root, without '..'; point root at the folder instead")
        return v


class Div2kSource(_Source):
    DESCRIPTION = "DIV2K layout: <root>/DIV2K_{train,valid}_HR/*.png (root defaults to $DIV2K_ROOT)"
    kind: Literal["div2k"]
    root: str = Field(description="DIV2K root; when omitted, ${DIV2K_ROOT} (filled in before interpolation)")
    subset: Literal["train", "valid"]


class PairedSource(_Source):
    DESCRIPTION = ("image + binary mask pairs: <root>/<images>/NAME.* with <root>/<masks>/NAME.* (salient-object "
                   "layout: images/ + masks/; HKU-IS: imgs/ + gt/)")
    kind: Literal["paired"]
    root: str
    images: str = Field("images", description="sub-folder of the images")
    masks: str = Field("masks", description="sub-folder of the masks (matched to images by file stem)")

    @field_validator("images", "masks")
    @classmethod
    def _sub_folder(cls, v: str) -> str:
        parts = v.replace("\\", "/").split("/")
        if not v or v.startswith(("/", "\\")) or ".." in parts:
            raise ValueError("must be a sub-folder of root, without '..'")
        return v


_SOURCE_UNION = BuiltinSource | FolderSource | Div2kSource | PairedSource
Source = Annotated[_SOURCE_UNION, Field(discriminator="kind")]
#: Source kind -> its model: the one list of source kinds.
SOURCE_MODELS: dict[str, type[_Source]] = {get_args(m.model_fields["kind"].annotation)[0]: m
                                          for m in get_args(_SOURCE_UNION)}


class Output(StrictModel):
    path: str | None = None
    images_per_shard: int = Field(4, ge=1, le=10_000, description="source images per Dask task / shard file")
    compression: Literal["none", "gzip", "lzf"] = "none"


class Manifest(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(ge=0, lt=2**63)
    generator: Any
    sources: tuple[Source, ...] = Field(min_length=1)
    output: Output = Output()
    #: Folder against which relative roots resolve (not part of the content).
    base_dir: str = "."

    def resolve_root(self, root: str) -> Path:
        p = Path(root).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)

    def content(self) -> dict:
        """The fields that determine the corpus bytes (no paths, no output layout)."""
        gen = self.generator
        return {
            "seed": self.seed,
            "generator": {"kind": gen.kind, "version": get_generator(gen.kind).VERSION, "params": gen.model_dump(mode="json")},
            "sources": [_source_content(s) for s in self.sources],
        }

    def primary_sources(self) -> list[int]:
        return [i for i, s in enumerate(self.sources) if s.role == PRIMARY]


def _source_content(src: _Source) -> dict:
    """A source's identity content: no root, and the fields added after format 1 only when they are
    not at their defaults (so the dataset ids of existing corpora do not change)."""
    out = src.model_dump(mode="json", exclude={"root"})
    if out.get("role") == PRIMARY:
        del out["role"]
    if out.get("split_order") == "hash":
        del out["split_order"]
    if out.get("kind") == "builtin" and not out.get("masks"):
        del out["masks"]
    return out


def _interpolate(value: Any, env: dict[str, str], loc: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{loc}.{k}" if loc else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{loc}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in env and env[var] != "":
                return env[var]
            if default is not None:
                return default
            raise ManifestError(f"{loc}: environment variable {var} is not set; export {var}=... or edit the manifest")
        return _VAR.sub(sub, value)
    return value


def _describe(err: ValidationError) -> str:
    """One line for the first validation error of a :class:`Manifest`."""
    e = err.errors(include_url=False)[0]
    loc = list(e["loc"])
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_MODELS:
        del loc[2]   # the discriminated union puts the kind in the path ("sources.0.folder.root")
    where = ".".join(map(str, loc))
    kinds = ", ".join(SOURCE_MODELS)
    if e["type"] == "union_tag_invalid":
        return f"{where}: unknown source kind {e['input'].get('kind')!r}; use one of {kinds}"
    if e["type"] == "union_tag_not_found":
        return f"{where}: missing 'kind' (one of {kinds})"
    return validation_message(e, where)


def parse_manifest(data: Any, *, where: str = "manifest", base_dir: str | Path = ".",
                   env: dict[str, str] | None = None) -> Manifest:
    """Validate a manifest given as a mapping; raises :class:`ManifestError` with one line."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a mapping of keys (name, seed, generator, sources, ...)")
    if "base_dir" in data:
        raise ManifestError(f"{where}: base_dir: unknown key; remove it or check its spelling")
    sources = data.get("sources")
    if isinstance(sources, list):  # the div2k root defaults to $DIV2K_ROOT, interpolated like any value
        data = {**data, "sources": [{**s, "root": "${DIV2K_ROOT}"} if isinstance(s, dict) and s.get("kind") == "div2k"
                                    and "root" not in s else s for s in sources]}
    data = _interpolate(data, dict(os.environ) if env is None else env, "")
    gen = data.get("generator")
    if not isinstance(gen, dict) or "kind" not in gen:
        raise ManifestError(f"{where}: generator: needs a mapping with 'kind' (see `datagen list`)")
    try:
        cls = get_generator(str(gen["kind"]))
    except KeyError as err:
        raise ManifestError(f"{where}: generator.kind: {err.args[0]}") from None
    try:
        params = cls.Params.model_validate(gen)
    except ValidationError as err:
        raise ManifestError(f"{where}: {describe_validation_error(err, 'generator')}") from None
    try:
        manifest = Manifest.model_validate({**data, "generator": params, "base_dir": str(base_dir)})
    except ValidationError as err:
        raise ManifestError(f"{where}: {_describe(err)}") from None
    _check_roles(manifest, cls, where)
    return manifest


def _has_masks(src) -> bool:
    return isinstance(src, PairedSource) or (isinstance(src, BuiltinSource) and src.masks)


def _check_roles(manifest: Manifest, cls, where: str) -> None:
    """The sources give what the generator reads: primary images (paired with masks when it needs
    them) and at least one source for every companion role it draws; no role it does not know."""
    kind = manifest.generator.kind
    roles = dict(cls.COMPANIONS)
    for i, src in enumerate(manifest.sources):
        if src.role != PRIMARY and src.role not in roles:
            known = ", ".join([PRIMARY, *roles])
            raise ManifestError(f"{where}: sources.{i}.role: generator {kind} draws no {src.role!r} images; use one of {known}")
        if src.role == PRIMARY and cls.NEEDS_MASK and not _has_masks(src):
            raise ManifestError(f"{where}: sources.{i}: generator {kind} needs image + mask pairs; use kind: paired "
                                "(or builtin with masks: true)")
        if _has_masks(src) and not (src.role == PRIMARY and cls.NEEDS_MASK):
            raise ManifestError(f"{where}: sources.{i}: generator {kind} reads no masks from {src.role} sources; "
                                "remove the masks or use a plain folder source")
    if not manifest.primary_sources():
        raise ManifestError(f"{where}: sources: no source has role {PRIMARY} (the images the samples are made from)")
    for role in roles:
        if not any(s.role == role for s in manifest.sources):
            raise ManifestError(f"{where}: sources: generator {kind} draws {role} images; add a source with role: {role}")


class _Refused(Exception):
    """A YAML construct manifests do not allow; ``mark`` is where it starts."""

    def __init__(self, message: str, mark):
        super().__init__(message)
        self.mark = mark


def _too_deep(mark) -> _Refused:
    return _Refused(f"nested more than {MAX_MANIFEST_DEPTH} levels deep (YAML aliases followed); "
                    "a manifest needs a few", mark)


class _ManifestLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that yields a bounded tree without duplicate keys (see the module
    conventions); what it refuses raises :class:`_Refused`."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):   # recursive in PyYAML: bound it before Python's stack
        if self._depth >= MAX_MANIFEST_DEPTH:
            raise _too_deep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expansion(node, 1, {}, set())
        return node

    def construct_mapping(self, node, deep=False):
        first: dict[Any, Any] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.setdefault(key, key_node.start_mark)
            except TypeError:   # unhashable: the base class reports it
                continue
            if seen is not key_node.start_mark:
                raise _Refused(f"duplicate key {key!r} (first at line {seen.line + 1}); keep one",
                               key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _expansion(node, depth: int, done: dict, open_: set) -> tuple[int, int]:
    """(nodes, levels) of the tree under ``node`` with aliases followed (an alias is the very node
    of its anchor, so ``done`` memoises shared nodes and ``open_`` detects one inside itself);
    raises :class:`_Refused` past :data:`MAX_MANIFEST_NODES` or :data:`MAX_MANIFEST_DEPTH`."""
    key = id(node)
    if key in open_:
        raise _Refused("a YAML alias inside its own anchor (the value would contain itself)", node.start_mark)
    if key not in done:
        if depth > MAX_MANIFEST_DEPTH:
            raise _too_deep(node.start_mark)
        open_.add(key)
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else ())
        nodes, levels = 1, 1
        for child in children:
            n, h = _expansion(child, depth + 1, done, open_)
            nodes, levels = nodes + n, max(levels, h + 1)
            if nodes > MAX_MANIFEST_NODES:
                raise _Refused(f"this value expands to more than {MAX_MANIFEST_NODES} nodes (YAML aliases "
                               "followed); a manifest needs far fewer", node.start_mark)
        open_.discard(key)
        done[key] = (nodes, levels)
    nodes, levels = done[key]
    if depth + levels - 1 > MAX_MANIFEST_DEPTH:
        raise _too_deep(node.start_mark)
    return nodes, levels


def _read_manifest_text(path: Path) -> str:
    """The manifest's text: a regular UTF-8 file of at most :data:`MAX_MANIFEST_BYTES` (a FIFO or a
    device is refused without blocking)."""
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found; check the path (examples in manifests/)")
    if path.is_dir():
        raise ManifestError(f"{path}: is a directory; give a manifest .yaml file")
    try:
        data = read_regular_file(path, limit=MAX_MANIFEST_BYTES, what="manifests (a few hundred bytes of YAML)")
    except UnreadableFile as err:
        raise ManifestError(f"{path}: {err}; check the path") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: cannot read manifest ({err})") from None


def load_manifest(path: str | os.PathLike, *, env: dict[str, str] | None = None) -> Manifest:
    """Read and validate a YAML manifest file (see the module conventions for what is refused)."""
    path = Path(path)
    loader = _ManifestLoader(_read_manifest_text(path))
    try:
        data = loader.get_single_data()
    except _Refused as err:
        mark = err.mark
        raise ManifestError(f"{path}: line {mark.line + 1}, column {mark.column + 1}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ManifestError(f"{path}: YAML syntax error{at}: {problem}") from None
    finally:
        loader.dispose()
    return parse_manifest(data, where=str(path), base_dir=path.resolve().parent, env=env)
