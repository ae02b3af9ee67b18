"""Hostile inputs (issue 8): manifests that expand without bound, decompression-bomb images and
maps, duplicate keys.  Each ends in one line, exit 2, quickly and in bounded memory."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from datagen.cli import main
from datagen.errors import SourceError

from .conftest import manifest_dict, run_cli, write_images
from .test_cli_errors import _check_one_line_error

MAX_PIXELS_ENV = "DEFOCUSBENCH_MAX_IMAGE_PIXELS"   # the documented setting
DEFAULT_MAX_IMAGE_PIXELS = 120_000_000             # and its default
HEADER = "name: hostile\nseed: 1\ngenerator: {kind: gauss20}\nsources: [{kind: builtin, images: [camera], split: train}]\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- manifests (defects 8, 12)

def alias_bomb() -> str:
    """The "billion laughs": 9 levels of 10 aliases = 10^9 strings, each to be interpolated."""
    lines = [f"x0: &x0 [{', '.join([repr('${HOME:-lol}')] * 10)}]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, 9)]
    return HEADER + "\n".join(lines) + "\n"


@pytest.mark.parametrize("verb", ["validate", "build"])
def test_alias_bomb_fails_fast_in_one_line_with_bounded_memory(verb, tmp_path):
    manifest = _write(tmp_path / "bomb.yaml", alias_bomb())
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) pytest process
    probe = ("import re, sys\nfrom datagen.cli import main\n"
             f"rc = main([{verb!r}, {str(manifest)!r}] + {['--out', str(tmp_path / 'o.h5')] if verb == 'build' else []!r})\n"
             "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\nsys.exit(rc)\n")
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    seconds = time.monotonic() - start
    _check_one_line_error(r.returncode, r.stderr, "expands to more than 10000 nodes")
    assert "bomb.yaml: line 8, column 5:" in r.stderr   # x3, the first alias whose expansion is too large
    peak_mb = int(r.stdout.split()[-1]) / 1024
    assert seconds < 45 and peak_mb < 400, (seconds, peak_mb)   # bounded, not a hang (loaded CI machines are slow)
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("case,text,expect", [
    ("20000-deep-flow", HEADER + "description: " + "[" * 20_000 + "]" * 20_000 + "\n", "line 5, column 45: nested more"),
    ("deep-block", HEADER + "".join(f"{' ' * i}k{i}:\n" for i in range(40)) + " " * 40 + "v: 1\n", "nested more"),
    ("alias-chain", HEADER + "c0: &c0 [1]\n" + "".join(f"c{i}: &c{i} [*c{i - 1}]\n" for i in range(1, 60)),
     "nested more than 32 levels deep"),
    ("alias-in-itself", HEADER + "x: &x [1, *x]\n", "line 5, column 4: a YAML alias inside its own anchor"),
])
def test_unbounded_nesting_fails_in_one_line(case, text, expect, tmp_path, capsys):
    manifest = _write(tmp_path / "m.yaml", text)
    _check_one_line_error(main(["validate", str(manifest)]), capsys.readouterr().err, expect)


def test_oversized_manifest_is_refused_before_parsing(tmp_path, capsys):
    manifest = _write(tmp_path / "m.yaml", HEADER + "# padding\n" * 8000)   # 80 KB of comments
    _check_one_line_error(main(["validate", str(manifest)]), capsys.readouterr().err, "larger than 65536 bytes")


def test_aliases_that_share_a_value_are_still_fine(tmp_path, image_folder, capsys):
    plain = manifest_dict(image_folder)
    shared = dict(plain, sources=[{**plain["sources"][0], "name": n} for n in ("a", "b")])
    shared["sources"][1]["pattern"] = "img00[0-3].png"
    shared["sources"][0]["pattern"] = "img00[4-7].png"
    text = yaml.safe_dump(shared, sort_keys=False)   # the split mapping is one object: dumped with &id001 / *id001
    assert "*id001" in text
    written_out = yaml.dump(yaml.safe_load(text), sort_keys=False, Dumper=_NoAliases)
    assert "*id" not in written_out
    assert main(["validate", str(_write(tmp_path / "a.yaml", text))]) == 0
    assert main(["validate", str(_write(tmp_path / "b.yaml", written_out))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("dataset_id")[1] == out[2].split("dataset_id")[1]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


@pytest.mark.parametrize("text,expect", [
    (HEADER + "seed: 2\n", "line 5, column 1: duplicate key 'seed' (first at line 2)"),
    (("name: x\nseed: 1\ngenerator: {kind: gauss20, sharpness_sigma: 0.5, sharpness_sigma: 1}\n"
      "sources: [{kind: builtin, split: train}]\n"),
     "line 3, column 50: duplicate key 'sharpness_sigma' (first at line 3)"),
    ("name: x\nseed: 1\ngenerator: {kind: gauss20}\nsources:\n  - kind: builtin\n    split: train\n    split: test\n",
     "line 7, column 5: duplicate key 'split' (first at line 6)"),
])
def test_duplicate_keys_are_refused_naming_key_and_line(text, expect, tmp_path, capsys):
    manifest = _write(tmp_path / "m.yaml", text)
    _check_one_line_error(main(["validate", str(manifest)]), capsys.readouterr().err, expect)
    _check_one_line_error(main(["build", str(manifest), "--out", str(tmp_path / "o.h5"), "--no-progress"]),
                          capsys.readouterr().err, expect)
    assert not (tmp_path / "o.h5").exists()


# ---------------------------------------------------------------- decompression bombs (defect 10)

def png_header(width: int, height: int) -> bytes:
    """A PNG of ``width x height`` 8-bit gray pixels in a few hundred bytes (its data is cut short:
    the size in the header is what a decompression bomb is about)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    idat = zlib.compress(bytes(width + 1) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


#: 30000^2 is over twice the limit (Pillow raises); 11000^2 = 121 M is just over it (Pillow would only warn).
BOMBS = {"30000x30000": (30_000, 30_000), "11000x11000": (11_000, 11_000)}


@pytest.fixture
def bomb_folder(tmp_path):
    def make(width: int, height: int) -> Path:
        folder = tmp_path / "src"
        write_images(folder, 3)
        (folder / "bomb.png").write_bytes(png_header(width, height))
        return folder
    return make


@pytest.mark.parametrize("size", BOMBS, ids=list(BOMBS))
def test_bomb_image_in_a_source_fails_in_one_line(size, bomb_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(manifest_dict(bomb_folder(*BOMBS[size]))))
    for argv in (["validate", str(manifest)], ["build", str(manifest), "--out", str(tmp_path / "o.h5"), "--no-progress"]):
        _check_one_line_error(main(argv), capsys.readouterr().err, "bomb.png: image of ")
    assert not (tmp_path / "o.h5").exists()
    r = run_cli("validate", manifest)   # the real stderr: no DecompressionBombWarning beside the error line
    _check_one_line_error(r.returncode, r.stderr, "bomb.png: image of ")


def test_pixel_limit_is_a_setting(bomb_folder, image_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(manifest_dict(bomb_folder(11_000, 11_000))))
    assert 11_000 ** 2 > DEFAULT_MAX_IMAGE_PIXELS
    from datagen.imageio import max_image_pixels
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "130_000_000")
    assert main(["validate", str(manifest)]) == 0          # header check only: nothing is decoded
    monkeypatch.setenv(MAX_PIXELS_ENV, "30000")             # the photos are 160x224 = 35840 pixels
    manifest.write_text(yaml.safe_dump(manifest_dict(image_folder)))
    _check_one_line_error(main(["validate", str(manifest)]), capsys.readouterr().err,
                          f"img000.png: image of 224x160 = 35840 pixels, over the limit of 30000 ({MAX_PIXELS_ENV})")
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    _check_one_line_error(main(["validate", str(manifest)]), capsys.readouterr().err,
                          f"{MAX_PIXELS_ENV}='lots': expected a whole number")


def _one_line_bomb_error(exc: pytest.ExceptionInfo, name: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and name in message and MAX_PIXELS_ENV in message, message


@pytest.mark.parametrize("what", ["image", "mask"])
def test_cuhk_loader_refuses_a_bomb(what, tmp_path):
    from bench.datasets import open_dataset
    root = tmp_path / "cuhk"
    for sub in ("image", "gt"):
        (root / sub).mkdir(parents=True)
        Image.new("L", (40, 30)).save(root / sub / "out_of_focus0001.png")
    (root / ("image" if what == "image" else "gt") / "out_of_focus0001.png").write_bytes(png_header(30_000, 30_000))
    d = open_dataset("cuhk", root=root, polarity="blurred255")
    with pytest.raises(SourceError) as exc:
        d.load("out_of_focus0001")
    _one_line_bomb_error(exc, "out_of_focus0001.png")


def test_rtf_loader_refuses_a_bomb(tmp_path):
    from bench.datasets import open_dataset
    root = tmp_path / "rtf"
    root.mkdir()
    (root / "image_01.png").write_bytes(png_header(11_000, 11_000))
    scipy.io.savemat(root / "map_01.mat", {"blurMap": np.ones((4, 4))})
    with pytest.raises(SourceError) as exc:
        open_dataset("rtf", root=root).load("image_01")
    _one_line_bomb_error(exc, "image_01.png")


@pytest.mark.parametrize("kind", ["png", "npy"])
def test_bench_score_refuses_a_bomb_map(kind, tmp_path, capsys):
    """A map file of 30000x30000: a PNG header, or a (sparse) 7.2 GB .npy file."""
    from bench.cli import main as bench_main
    root = tmp_path / "cuhk"
    (root / "gt").mkdir(parents=True)
    Image.new("L", (40, 30)).save(root / "gt" / "out_of_focus0001.png")
    maps = tmp_path / "maps"
    maps.mkdir()
    if kind == "png":
        (maps / "out_of_focus0001.png").write_bytes(png_header(30_000, 30_000))
    else:
        with open(maps / "out_of_focus0001.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (30_000, 30_000)})
            f.truncate(f.tell() + 30_000 * 30_000 * 8)
    rc = bench_main(["score", "--dataset", "cuhk", "--root", str(root), "--maps", str(maps)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    size = "30000x30000 = 900000000" if kind == "npy" else f"more than {2 * DEFAULT_MAX_IMAGE_PIXELS}"
    assert f"out_of_focus0001.{kind}: image of {size} pixels, over the limit" in err and MAX_PIXELS_ENV in err


def test_a_fifo_as_manifest_fails_in_one_line_without_blocking(tmp_path):
    """A FIFO with no writer would block ``open()`` forever; it is refused as not a regular file."""
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)
    r = run_cli("validate", fifo, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "not a regular file" in r.stderr
