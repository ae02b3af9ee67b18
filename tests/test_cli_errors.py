"""Bad input: exit 2, exactly one line on stderr, no traceback, nothing left that looks complete."""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest

from datagen.cli import main

from .conftest import manifest_dict, run_cli, write_images, write_manifest


def _bad_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"src_{kind}"
    write_images(folder, 3)
    target = folder / "img001.png"
    if kind == "garbage":
        target.write_bytes(b"this is not a PNG at all")
    elif kind == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    return folder


def _with(base: dict, path: str, value):
    data = copy.deepcopy(base)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

# (case id, how to change the good manifest, substring expected in the message)
MANIFEST_CASES = [
    ("unknown-top-key", lambda d, t: _with(d, "colour", "red"), "colour: unknown key"),
    ("unknown-generator-key", lambda d, t: _with(d, "generator.sigma_max", 3), "generator.sigma_max: unknown key"),
    ("unknown-source-key", lambda d, t: _with(d, "sources.0.recursive", True), "sources.0.recursive: unknown key"),
    ("wrong-type-seed", lambda d, t: _with(d, "seed", "abc"), "seed"),
    ("missing-sources", lambda d, t: _with(d, "sources", _DELETE), "sources: required key is missing"),
    ("unknown-generator", lambda d, t: _with(d, "generator.kind", "gaus20"), "did you mean gauss20"),
    ("negative-sigma", lambda d, t: _with(d, "generator.sigmas", [1, -2, 3]), "generator.sigmas"),
    ("zero-patch-size", lambda d, t: _with(d, "generator.patch_size", 0), "generator.patch_size"),
    ("negative-threshold", lambda d, t: _with(d, "generator.sharpness_threshold", -5), "generator.sharpness_threshold"),
    ("fractions-not-one", lambda d, t: _with(d, "sources.0.split", {"train": 0.5, "val": 0.2}), "sum to 1"),
    ("unknown-split", lambda d, t: _with(d, "sources.0.split", "holdout"), "sources.0.split"),
    ("unknown-source-kind", lambda d, t: _with(d, "sources.0.kind", "s3"), "unknown source kind"),
    ("missing-root", lambda d, t: _with(d, "sources.0.root", str(t / "nowhere")), "does not exist"),
    ("root-is-file", lambda d, t: _with(d, "sources.0.root", __file__), "is not a directory"),
    ("empty-folder", lambda d, t: (t / "empty").mkdir() or _with(d, "sources.0.root", str(t / "empty")), "matched no files"),
    ("non-image-files", lambda d, t: ((t / "txt").mkdir(), (t / "txt" / "a.txt").write_text("x"),
                                      _with(_with(d, "sources.0.root", str(t / "txt")), "sources.0.pattern", "*.txt"))[-1],
     "none with an image extension"),
    ("garbage-png", lambda d, t: _with(d, "sources.0.root", str(_bad_folder(t, "garbage"))), "not an image file"),
    ("unset-env-var", lambda d, t: _with(d, "sources.0.root", "${DEFOCUSBENCH_UNSET_VAR}"), "DEFOCUSBENCH_UNSET_VAR is not set"),
    ("div2k-root-unset", lambda d, t: _with(d, "sources", [{"kind": "div2k", "subset": "train", "split": "train"}]),
     "DIV2K_ROOT is not set"),
    ("div2k-root-missing-subset", lambda d, t: _with(d, "sources", [{"kind": "div2k", "root": str(t), "subset": "valid",
                                                                     "split": "test"}]), "DIV2K_valid_HR not found"),
    ("unknown-builtin", lambda d, t: _with(d, "sources", [{"kind": "builtin", "images": ["lena"], "split": "train"}]),
     "unknown built-in image 'lena'"),
    # ../ would read outside the root (it did, silently); an absolute pattern crashed pathlib
    ("parent-pattern", lambda d, t: _with(d, "sources.0.pattern", "../*/*.png"),
     "sources.0.pattern: value error, must be a relative glob under root, without '..'"),
    ("absolute-pattern", lambda d, t: _with(d, "sources.0.pattern", str(t / "*.png")),
     "sources.0.pattern: value error, must be a relative glob under root"),
    ("same-folder-twice", lambda d, t: _with(d, "sources", [d["sources"][0], {**d["sources"][0], "name": "again"}]),
     "also listed by sources.0"),
]


def _check_one_line_error(rc: int, err: str, expect: str) -> None:
    assert rc == 2, err
    # progress lines may precede the error (a build that fails in a worker); nothing else may
    lines = [ln for ln in err.strip().splitlines() if not re.fullmatch(r"datagen: build +\d+% \(.*\)", ln)]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert expect in lines[0], lines[0]


@pytest.mark.parametrize("case,change,expect", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_bad_manifest_exits_2_with_one_line(case, change, expect, tmp_path, image_folder, capsys, monkeypatch):
    monkeypatch.delenv("DIV2K_ROOT", raising=False)
    monkeypatch.delenv("DEFOCUSBENCH_UNSET_VAR", raising=False)
    manifest = write_manifest(tmp_path / "m.yaml", change(manifest_dict(image_folder), tmp_path))
    out = tmp_path / "out.h5"
    rc = main(["build", str(manifest), "--out", str(out), "--workers", "1", "--no-progress"])
    _check_one_line_error(rc, capsys.readouterr().err, expect)
    assert not out.exists()
    rc = main(["validate", str(manifest)])
    _check_one_line_error(rc, capsys.readouterr().err, expect)


def test_truncated_png_fails_in_the_worker_with_one_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.yaml", manifest_dict(_bad_folder(tmp_path, "truncated")))
    out = tmp_path / "out.h5"
    r = run_cli("build", manifest, "--out", out, "--workers", "1", "--no-progress")
    _check_one_line_error(r.returncode, r.stderr, "corrupt or truncated image")
    assert "img001.png" in r.stderr
    assert not out.exists()
    assert run_cli("info", out).returncode == 2


@pytest.mark.parametrize("text,expect", [
    ("name: x\nseed: [1,\n", "YAML syntax error at line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_unparseable_manifest(text, expect, tmp_path, capsys):
    m = tmp_path / "m.yaml"
    m.write_text(text)
    _check_one_line_error(main(["validate", str(m)]), capsys.readouterr().err, expect)


def test_output_errors(tmp_path, make_manifest, capsys, reference_corpus):
    manifest = make_manifest()
    (tmp_path / "adir").mkdir()
    rc = main(["build", str(manifest), "--out", str(tmp_path / "adir"), "--no-progress"])
    _check_one_line_error(rc, capsys.readouterr().err, "is a directory")
    (tmp_path / "afile").write_text("x")
    rc = main(["build", str(manifest), "--out", str(tmp_path / "afile" / "c.h5"), "--no-progress"])
    _check_one_line_error(rc, capsys.readouterr().err, "cannot create folder")
    rc = main(["build", str(manifest), "--out", str(tmp_path / "afile"), "--no-progress"])
    _check_one_line_error(rc, capsys.readouterr().err, "not a complete DefocusBench corpus")
    # an existing corpus of another manifest is never silently replaced
    other = tmp_path / "other.h5"
    shutil.copy(reference_corpus, other)
    other_manifest = make_manifest(name="m2.yaml", seed=99)
    rc = main(["build", str(other_manifest), "--out", str(other), "--no-progress"])
    _check_one_line_error(rc, capsys.readouterr().err, "holds another corpus")


@pytest.mark.parametrize("argv,expect", [
    (["build", "nope.yaml"], "manifest not found"),
    (["build", "m.yaml", "--workers", "0"], "must be >= 1"),
    (["build", "m.yaml", "--resume", "--overwrite"], "not allowed with argument"),
    (["build", "m.yaml", "--limit", "x"], "expected a whole number"),
    (["frobnicate"], "invalid choice"),
    (["info", "missing.h5"], "no such file"),
    (["verify", "."], "is a directory"),
    (["preview", "missing.h5", "--out", "p.png"], "no such file"),
    (["fetch", "imagenet", "--dest", "d"], "imagenet"),
])
def test_bad_arguments(argv, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check_one_line_error(main(argv), capsys.readouterr().err, expect)


def test_info_on_a_non_corpus_file(tmp_path, capsys):
    bogus = tmp_path / "x.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _check_one_line_error(main(["info", str(bogus)]), capsys.readouterr().err, "not a readable HDF5 file")
    import h5py
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["a"] = [1]
    _check_one_line_error(main(["info", str(tmp_path / "y.h5")]), capsys.readouterr().err, "not a complete DefocusBench corpus")


def test_manifest_is_a_directory(tmp_path, capsys):
    _check_one_line_error(main(["validate", str(tmp_path)]), capsys.readouterr().err, "is a directory")


@pytest.fixture(scope="module")
def reference_corpus(tmp_path_factory, image_folder):
    from datagen.manifest import parse_manifest
    from datagen.runner import build

    out = tmp_path_factory.mktemp("refc") / "ref.h5"
    build(parse_manifest(manifest_dict(image_folder)), out=out, workers=1, progress=False, log=lambda m: None)
    return out
