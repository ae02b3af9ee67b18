"""Manifests: strict YAML -> validated, immutable models, with ``${VAR}`` interpolation.

Conventions
-----------
* Unknown keys are errors everywhere (pydantic ``extra="forbid"``).
* ``${VAR}`` and ``${VAR:-default}`` in any string are replaced from the environment
  before validation; an unset variable without default is an error naming it.
* Relative source roots are relative to the manifest file's folder; the output path
  (``output.path`` or ``--out``) is relative to the current directory.
* The generator block is validated by the generator's own parameter model
  (:func:`datagen.generators.get_generator`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from .errors import ManifestError, validation_message
from .generators import StrictModel, get_generator

SplitName = Literal["train", "val", "test"]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Source(StrictModel):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="namespace of image keys (default: kind)")
    split: SplitName | dict[SplitName, float] = Field(description="a split name, or fractions by image summing to 1")

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
    kind: Literal["builtin"]
    images: tuple[str, ...] | None = Field(None, min_length=1, description="built-in photo names (default: all)")


class FolderSource(_Source):
    kind: Literal["folder"]
    root: str
    pattern: str = Field("**/*", description="glob under root; files with image extensions are kept")


class Div2kSource(_Source):
    kind: Literal["div2k"]
    root: str = Field(description="DIV2K root; when omitted, ${DIV2K_ROOT} (filled in before interpolation)")
    subset: Literal["train", "valid"]


Source = Annotated[BuiltinSource | FolderSource | Div2kSource, Field(discriminator="kind")]


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
            "sources": [s.model_dump(mode="json", exclude={"root"}) for s in self.sources],
        }


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


def _describe(err: ValidationError, prefix: str = "") -> str:
    """One line for the first validation error: the field path and what to do."""
    e = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
    # discriminated unions put the tag in the path ("sources.0.folder.root"): drop it
    loc = re.sub(r"\.(builtin|folder|div2k)(?=\.|$)", "", loc)
    if e["type"] == "union_tag_invalid":
        return f"{loc}: unknown source kind {e['input'].get('kind')!r}; use one of builtin, folder, div2k"
    if e["type"] == "union_tag_not_found":
        return f"{loc}: missing 'kind' (builtin, folder or div2k)"
    return validation_message(e, loc)


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
        raise ManifestError(f"{where}: {_describe(err, 'generator')}") from None
    try:
        return Manifest.model_validate({**data, "generator": params, "base_dir": str(base_dir)})
    except ValidationError as err:
        raise ManifestError(f"{where}: {_describe(err)}") from None


def load_manifest(path: str | os.PathLike, *, env: dict[str, str] | None = None) -> Manifest:
    """Read and validate a YAML manifest file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; check the path (examples in manifests/)") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory; give a manifest .yaml file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read manifest ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ManifestError(f"{path}: YAML syntax error{at}: {problem}") from None
    return parse_manifest(data, where=str(path), base_dir=path.resolve().parent, env=env)

