"""Corpus identity and verification: a content-based dataset id (with a stat-signature cache of
source hashes), ``datagen verify`` over provenance and ``/sources``, and one line / exit 2 for
corrupt HDF5 metadata in ``datagen info`` / ``verify`` (issue 8, defects 5 and 12)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from PIL import Image

from datagen.cli import main as datagen_main
from datagen.corpus import info, verify
from datagen.errors import SourceError, VerificationError
from datagen.manifest import parse_manifest
from datagen.plan import make_plan
from datagen.runner import build

from .conftest import manifest_dict, run_cli, synthetic_photo, write_manifest

QUIET = dict(progress=False, log=lambda m: None)
HOUR_NS = 3600 * 10**9


@pytest.fixture(scope="module", autouse=True)
def _private_hash_cache(tmp_path_factory):
    """Every test of this module (and the CLI it runs) keeps its hash cache under tmp, never in ~."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFOCUSBENCH_CACHE", str(tmp_path_factory.mktemp("hash-cache")))
        yield


def _stored_png(seed: int) -> bytes:
    """An uncompressed PNG: its size depends only on its dimensions, not on its pixels."""
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(seed)).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _age(path: Path, *, ns: int = HOUR_NS) -> None:
    """Set a file's mtime in the past, as for images that were not just written (not racy)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - ns))


def _image_folder(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"img{i:03d}.png").write_bytes(_stored_png(i))
        _age(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small complete corpus (4 of 5 images by ``--limit``, 1 worker), built once; tests tamper
    with copies."""
    tmp = tmp_path_factory.mktemp("corpus")
    folder = _image_folder(tmp / "images", 5)
    return build(parse_manifest(manifest_dict(folder)), out=tmp / "c.h5", workers=1, limit=4, **QUIET).path


@pytest.fixture
def copy(corpus, tmp_path) -> Path:
    return Path(shutil.copyfile(corpus, tmp_path / "copy.h5"))


def _cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the real ``datagen`` entry point in-process (a traceback would fail the test)."""
    code = datagen_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- defect 5: the dataset id covers the sources' content -------------------------------------


def test_same_size_replacement_is_not_up_to_date_and_gets_a_new_id(tmp_path):
    """An image replaced in place by another of the same size, with its mtime restored (as
    ``cp -p`` / ``rsync -t`` do), is a new corpus: not "up to date", a new dataset id."""
    folder = _image_folder(tmp_path / "images")
    manifest = write_manifest(tmp_path / "m.yaml", manifest_dict(folder))
    out = tmp_path / "c.h5"
    old = build(parse_manifest(manifest_dict(folder)), out=out, workers=1, **QUIET)

    victim = folder / "img001.png"
    before = victim.stat()
    new_bytes = _stored_png(99)
    assert len(new_bytes) == before.st_size and new_bytes != victim.read_bytes()
    with open(victim, "r+b") as fh:       # same inode, same size
        fh.write(new_bytes)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))   # same mtime
    after = victim.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)

    new_id = make_plan(parse_manifest(manifest_dict(folder))).dataset_id
    assert new_id != old.dataset_id
    r = run_cli("build", manifest, "--out", out, "--workers", "1", "--no-progress")
    assert "up to date" not in r.stdout and new_id in r.stdout + r.stderr, (r.stdout, r.stderr)
    fresh = build(parse_manifest(manifest_dict(folder)), out=tmp_path / "fresh.h5", workers=1, **QUIET)
    assert fresh.dataset_id == new_id and fresh.content_sha256 != old.content_sha256
    r = run_cli("validate", manifest)
    assert r.returncode == 0 and new_id in r.stdout       # validate and build print the same id
    verify(fresh.path)                                    # verify recomputes the same id


def test_plan_carries_each_image_sha256(tmp_path):
    import hashlib

    folder = _image_folder(tmp_path / "images", 2)
    plan = make_plan(parse_manifest(manifest_dict(folder, sources=[
        {"kind": "folder", "root": str(folder), "pattern": "*.png", "split": "test"}])))
    assert [im.sha256 for im in plan.images] == [hashlib.sha256(Path(im.path).read_bytes()).hexdigest()
                                                 for im in plan.images]


# --- the hash cache (datagen.filehash) --------------------------------------------------------


def test_cache_trusts_an_unchanged_signature_and_hashes_a_changed_file_again(tmp_path, monkeypatch):
    from datagen.filehash import CACHE_NAME, HashCache, sha256_file, sha256_files

    monkeypatch.setenv("DEFOCUSBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "a.bin"
    p.write_bytes(b"a" * 5000)
    _age(p)
    assert sha256_files([p]) == [sha256_file(p)]
    entries = json.loads((tmp_path / "cache" / CACHE_NAME).read_text())["entries"]
    assert list(entries) == [os.path.realpath(p)]
    # the stored digest is trusted while the signature is unchanged: plant a wrong one to see it used
    cache = HashCache()
    cache.put(os.path.realpath(p), p.stat(), "f" * 64, started_ns=time.time_ns())
    cache.save()
    assert sha256_files([p]) == ["f" * 64]
    st = p.stat()
    p.write_bytes(b"b" * 5000)                               # same size ...
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))         # ... same mtime: the ctime changed
    assert sha256_files([p]) == [sha256_file(p)] != ["f" * 64]
    assert sha256_files([p], use_cache=False) == [sha256_file(p)]


def test_a_just_written_file_is_not_cached(tmp_path, monkeypatch):
    from datagen.filehash import CACHE_NAME, sha256_files

    monkeypatch.setenv("DEFOCUSBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "young.bin"
    p.write_bytes(b"x" * 100)
    sha256_files([p])
    assert not (tmp_path / "cache" / CACHE_NAME).exists()   # racy: its mtime may not change on the next write


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff garbage",
                                     b'{"format": "defocusbench-file-sha256 v1", "entries": 1}',
                                     b'{"format": "defocusbench-file-sha256 v1", "entries": {"/x": [1]}}'])
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path, monkeypatch, garbage):
    from datagen.filehash import CACHE_NAME, sha256_file, sha256_files

    monkeypatch.setenv("DEFOCUSBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_NAME).write_bytes(garbage)
    p = tmp_path / "a.bin"
    p.write_bytes(os.urandom(3000))
    _age(p)
    assert sha256_files([p]) == [sha256_file(p)]
    data = json.loads((tmp_path / "cache" / CACHE_NAME).read_text())
    assert data["entries"][os.path.realpath(p)][5] == sha256_file(p)


def test_concurrent_writers_leave_a_valid_cache(tmp_path):
    """Four processes hash disjoint files into one cache at once: each result is right, the cache
    stays valid JSON, and the entries written meanwhile by others are merged, not dropped wholesale."""
    from datagen.filehash import CACHE_NAME, sha256_file

    cache = tmp_path / "cache"
    groups = []
    for g in range(4):
        files = []
        for i in range(25):
            p = tmp_path / f"g{g}" / f"{i}.bin"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(os.urandom(20000))
            _age(p)
            files.append(str(p))
        groups.append(files)
    code = ("import json, sys; from datagen.filehash import sha256_files; "
            "print(json.dumps(sha256_files(sys.argv[1:], threads=2)))")
    env = dict(os.environ, DEFOCUSBENCH_CACHE=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", code, *files], stdout=subprocess.PIPE, text=True, env=env)
             for files in groups]
    for proc, files in zip(procs, groups):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and json.loads(out) == [sha256_file(p) for p in files]
    entries = json.loads((cache / CACHE_NAME).read_text())["entries"]
    assert len(entries) >= 25 and all(v[5] == sha256_file(k) for k, v in entries.items())


def test_unreadable_source_is_one_line(tmp_path, monkeypatch):
    from datagen.filehash import sha256_files

    monkeypatch.setenv("DEFOCUSBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SourceError, match="cannot read image"):
        sha256_files([tmp_path / "missing.png"])


# --- defect 5: verify covers the provenance attributes and /sources --------------------------


def test_a_fresh_corpus_verifies_with_the_plan_id(corpus):
    meta = info(corpus)
    assert meta["manifest"]["limit"] == 4 and sum(c["images"] for c in meta["counts"].values()) == 4
    assert verify(corpus)["dataset_id"] == meta["dataset_id"]   # recomputed with the limit


@pytest.mark.parametrize("tamper, expect", [
    (lambda f: f.attrs.__setitem__("dataset_id", "0123456789abcdef"), "dataset_id mismatch"),
    (lambda f: f.attrs.__setitem__("manifest", json.dumps({**json.loads(f.attrs["manifest"]), "seed": 8},
                                                          sort_keys=True)), "dataset_id mismatch"),
    (lambda f: f.attrs.__setitem__("name", "someone_else"), "provenance_sha256 mismatch"),
    (lambda f: f["sources/sha256"].__setitem__(0, "0" * 64), "dataset_id mismatch"),
    (lambda f: f["sources/key"].__setitem__(0, "folder:elsewhere.png"), "provenance_sha256 mismatch"),
    (lambda f: f["sources/sharp_tiles"].__setitem__(0, 12345), "provenance_sha256 mismatch"),
    (lambda f: f.attrs.__delitem__("provenance_sha256"), "provenance_sha256 attribute is missing"),
], ids=["dataset_id", "seed", "name", "source-sha256", "source-key", "source-stats", "no-provenance"])
def test_verify_catches_tampered_provenance(copy, capsys, tamper, expect):
    with h5py.File(copy, "r+") as f:
        tamper(f)
    with pytest.raises(VerificationError, match=expect):
        verify(copy)
    code, _, err = _cli(capsys, "verify", copy)
    assert code == 1 and len(err.strip().splitlines()) == 1 and expect in err


def test_verify_recomputes_the_id_even_when_the_provenance_hash_is_forged(copy):
    """Whoever edits the seed and re-stamps provenance_sha256 is still caught: the id is recomputed
    from the stored manifest and the /sources digests."""
    from datagen.writer import provenance_sha256

    with h5py.File(copy, "r+") as f:
        f.attrs["manifest"] = json.dumps({**json.loads(f.attrs["manifest"]), "seed": 8}, sort_keys=True)
        f.attrs["provenance_sha256"] = provenance_sha256(f)
    with pytest.raises(VerificationError, match="dataset_id mismatch") as err:
        verify(copy)
    assert "provenance" not in str(err.value)


def test_a_v2_corpus_is_told_to_rebuild(copy, capsys):
    with h5py.File(copy, "r+") as f:
        f.attrs["format_version"] = 2
        del f.attrs["provenance_sha256"]
    code, _, err = _cli(capsys, "verify", copy)
    assert code == 1 and "format v2" in err and "rebuild it" in err and len(err.strip().splitlines()) == 1


# --- defect 12: corrupt HDF5 metadata is one line, exit 2 ---------------------------------------


def _one_line_exit_2(capsys, *argv) -> str:
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("attr, value", [("counts", "{not json"), ("manifest", "{\"seed\": "), ("counts", "[]"),
                                         ("classes", '[{"label": "zero"}]'), ("fields", "3")])
def test_an_attribute_with_bad_json_is_one_line(copy, capsys, attr, value):
    with h5py.File(copy, "r+") as f:
        f.attrs[attr] = value
    for verb in ("info", "verify"):
        assert "corrupt corpus metadata" in _one_line_exit_2(capsys, verb, copy)


@pytest.mark.parametrize("path", ["sources", "val", "sources/sha256", "train/label"])
def test_a_missing_group_or_table_is_one_line(copy, capsys, path):
    with h5py.File(copy, "r+") as f:
        del f[path]
    err = _one_line_exit_2(capsys, "verify", copy)
    assert "corrupt corpus metadata" in err


def test_a_truncated_file_is_one_line(copy, capsys):
    data = copy.read_bytes()
    for size in (0, 100, len(data) // 2, len(data) - 100):
        copy.write_bytes(data[:size])
        for verb in ("info", "verify"):
            _one_line_exit_2(capsys, verb, copy)


def _metadata_offsets(path: Path) -> tuple[int, int]:
    """(end of the head metadata, start of the tail metadata): outside the datasets' raw bytes."""
    with h5py.File(path, "r") as f:
        spans = [(ds.id.get_offset(), ds.id.get_offset() + ds.id.get_storage_size())
                 for split in ("train", "val", "test") for ds in f[split].values() if ds.id.get_offset()]
    return min(a for a, _ in spans), max(b for _, b in spans)


@pytest.mark.parametrize("region", ["head", pytest.param("tail", marks=pytest.mark.slow)])
def test_garbage_in_the_superblock_and_object_headers_is_one_line(corpus, tmp_path, capsys, region):
    """Overwrite 8 bytes at offsets across the HDF5 metadata: the head (superblock, root and group
    object headers) or the tail (attributes, heaps, the /sources table): ``info`` and ``verify``
    end in 0, 1 or one line + 2, never a traceback.  (A few tail offsets make HDF5 allocate
    gigabytes for a moment for a garbage string length: that part is slow.)"""
    clean = corpus.read_bytes()
    head, tail = _metadata_offsets(corpus)
    if region == "head":
        offsets = [*range(0, 64, 8), *range(64, head, max(8, head // 60 // 8 * 8))]
    else:
        offsets = list(range(tail, len(clean) - 8, max(8, (len(clean) - tail) // 90 // 8 * 8)))
    bad = tmp_path / "bad.h5"
    seen = set()
    for off in offsets:
        data = bytearray(clean)
        data[off:off + 8] = bytes((off * 7 + i * 31 + 13) % 256 for i in range(8))
        bad.write_bytes(bytes(data))
        for verb in ("info", "verify"):
            code, _, err = _cli(capsys, verb, bad)
            assert code in (0, 1, 2) and (code == 0 or len(err.strip().splitlines()) == 1), (off, verb, err)
            seen.add(code)
    assert 2 in seen   # the sweep did hit metadata the library cannot read


def test_info_and_verify_of_a_clean_copy_still_pass(copy, capsys):
    code, out, _ = _cli(capsys, "info", copy)
    assert code == 0 and "dataset_id" in out
    code, out, _ = _cli(capsys, "verify", copy)
    assert code == 0 and out.startswith("ok:")
