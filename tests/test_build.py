"""The engine: determinism across workers and schedulers, crash safety, resume, reader, verify."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from datagen.corpus import info, verify
from datagen.errors import VerificationError
from datagen.manifest import parse_manifest
from datagen.reader import CorpusDataset
from datagen.runner import build

from .conftest import BIN, manifest_dict, run_cli, write_manifest

QUIET = dict(progress=False, log=lambda m: None)


def _build(folder: Path, out: Path, **kw):
    return build(parse_manifest(manifest_dict(folder)), out=out, **QUIET, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, image_folder):
    """An uninterrupted 1-worker build of the small fixture."""
    return _build(image_folder, tmp_path_factory.mktemp("ref") / "ref.h5", workers=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
                              env=env)]
    for i in range(2):
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"],
                                      stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, env=env))
    from distributed import Client

    client = None
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            client = Client(address, timeout="2s", set_as_default=False)
            if len(client.scheduler_info()["workers"]) == 2:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail(f"dask cluster did not start; logs in {logs}")
    yield address, client
    client.close()
    for p in procs[::-1]:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def test_same_bytes_with_one_and_two_workers(reference, image_folder, tmp_path):
    two = _build(image_folder, tmp_path / "two.h5", workers=2)
    assert two.content_sha256 == reference.content_sha256
    assert two.dataset_id == reference.dataset_id
    assert two.counts == reference.counts
    # the files themselves are byte-identical too (no timestamps in them)
    assert (tmp_path / "two.h5").read_bytes() == reference.path.read_bytes()


@pytest.mark.slow
def test_same_bytes_on_a_real_dask_scheduler(reference, image_folder, tmp_path, dask_cluster):
    address, _ = dask_cluster
    res = _build(image_folder, tmp_path / "dist.h5", scheduler=address)
    assert res.content_sha256 == reference.content_sha256


def test_rerun_is_up_to_date_and_overwrite_rebuilds(reference, image_folder, tmp_path):
    out = tmp_path / "c.h5"
    first = _build(image_folder, out, workers=1)
    again = _build(image_folder, out, workers=1)
    assert again.status == "up-to-date" and again.content_sha256 == first.content_sha256
    redo = _build(image_folder, out, workers=1, overwrite=True)
    assert redo.status == "built" and redo.content_sha256 == reference.content_sha256
    assert not (tmp_path / "c.h5.incomplete").exists()


def test_limit_is_a_seeded_subset_with_its_own_id(reference, image_folder, tmp_path):
    res = _build(image_folder, tmp_path / "l.h5", workers=1, limit=3)
    assert sum(c["images"] for c in res.counts.values()) == 3
    assert res.dataset_id != reference.dataset_id


def _wait_for_shards(workdir: Path, n: int, proc=None, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        shards = list((workdir / "shards").glob("shard-*.h5")) if workdir.exists() else []
        if len(shards) >= n:
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"build ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no shard appeared in time")


@pytest.mark.slow
def test_sigkill_mid_build_then_resume_gives_same_bytes(big_image_folder, tmp_path):
    data = manifest_dict(big_image_folder, output={"images_per_shard": 1})
    manifest = write_manifest(tmp_path / "m.yaml", data)
    out = tmp_path / "big.h5"
    proc = subprocess.Popen([str(BIN / "datagen"), "build", str(manifest), "--out", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_shards(tmp_path / "big.h5.incomplete", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # a half-written output is never taken for a complete one
    r = run_cli("info", out)
    assert r.returncode == 2
    time.sleep(1.0)  # let orphaned workers notice their parent is gone
    resumed = run_cli("build", manifest, "--out", out, "--workers", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    clean = build(parse_manifest(data), out=tmp_path / "clean.h5", workers=2, **QUIET)
    assert info(out)["content_sha256"] == clean.content_sha256
    verify(out)


@pytest.mark.slow
def test_killed_dask_worker_still_yields_same_result(big_image_folder, tmp_path, dask_cluster):
    address, client = dask_cluster
    data = manifest_dict(big_image_folder, output={"images_per_shard": 1})
    manifest = write_manifest(tmp_path / "m.yaml", data)
    out = tmp_path / "w.h5"
    proc = subprocess.Popen([str(BIN / "datagen"), "build", str(manifest), "--out", str(out), "--scheduler", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_shards(tmp_path / "w.h5.incomplete", 1, proc)
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    clean = build(parse_manifest(data), out=tmp_path / "clean.h5", workers=2, **QUIET)
    assert info(out)["content_sha256"] == clean.content_sha256


def test_info_json_has_the_contract_keys(reference):
    r = run_cli("info", reference.path, "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    for key in ("dataset_id", "content_sha256", "counts", "manifest", "versions", "classes", "fields"):
        assert key in meta
    assert meta["counts"]["train"]["per_class"][0] == meta["counts"]["train"]["per_class"][19]
    assert meta["manifest"]["generator"]["params"]["sharpness_threshold"] == 1000
    assert meta["versions"]["h5py"]


def test_plain_h5py_reads_one_dataset_per_split_and_field(reference):
    with h5py.File(reference.path, "r") as f:
        for split in ("train", "val", "test"):
            assert set(f[split]) == {"image", "label", "sigma", "position", "sharpness", "source"}
            assert f[split]["image"].dtype == np.uint8 and f[split]["image"].shape[1:] == (32, 32)
        assert json.loads(f.attrs["manifest"])["seed"] == 7


def test_verify_detects_a_flipped_byte(reference, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(reference.path.read_bytes())
    verify(bad)
    with h5py.File(bad, "r+") as f:
        f["train/image"][0, 0, 0] ^= 1
    with pytest.raises(VerificationError, match="train/image"):
        verify(bad)
    r = run_cli("verify", bad)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


def test_content_hash_and_data_do_not_depend_on_shard_layout_or_compression(reference, image_folder, tmp_path):
    """Raw-copied (uncompressed) and HDF5-written (gzip) consolidation hold the same arrays;
    the per-image content hash ignores the shard layout; both files verify."""
    other = build(parse_manifest(manifest_dict(image_folder, output={"images_per_shard": 3, "compression": "gzip"})),
                  out=tmp_path / "gz.h5", workers=2, **QUIET)
    assert other.content_sha256 == reference.content_sha256
    verify(other.path)
    with h5py.File(reference.path, "r") as a, h5py.File(other.path, "r") as b:
        assert a["train/image"].compression is None and b["train/image"].compression == "gzip"
        for split in ("train", "val", "test"):
            for field in a[split]:
                np.testing.assert_array_equal(a[split][field][...], b[split][field][...])
                assert a[split][field].id.get_offset() is not None or a[split][field].shape[0] == 0


def test_generator_version_is_part_of_the_dataset_id(image_folder, monkeypatch):
    from datagen.generators.gauss20 import Gauss20
    from datagen.plan import make_plan

    manifest = parse_manifest(manifest_dict(image_folder))
    before = make_plan(manifest).dataset_id
    monkeypatch.setattr(Gauss20, "VERSION", Gauss20.VERSION + "-next")
    assert make_plan(manifest).dataset_id != before   # a new generator never passes for an old corpus


def test_a_failed_write_of_the_corpus_is_one_line_and_keeps_the_shards(image_folder, tmp_path, monkeypatch):
    import errno

    from datagen import writer
    from datagen.errors import OutputError

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.os, "copy_file_range", full, raising=False)
    monkeypatch.setattr(writer.os, "pwrite", full)
    out = tmp_path / "c.h5"
    with pytest.raises(OutputError, match="No space left on device"):
        _build(image_folder, out, workers=1)
    assert not out.exists() and not list(tmp_path.glob("c.h5.tmp-*"))
    assert list((tmp_path / "c.h5.incomplete" / "shards").glob("shard-*.h5"))
    monkeypatch.undo()
    assert _build(image_folder, out, workers=1).shards_reused > 0   # the rerun resumes


def test_verify_refuses_another_format_version(reference, tmp_path):
    old = tmp_path / "old.h5"
    old.write_bytes(reference.path.read_bytes())
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 1
    with pytest.raises(VerificationError, match="format v1"):
        verify(old)


def test_torch_dataset_reads_lazily_in_dataloader_workers(reference):
    import torch
    from torch.utils.data import DataLoader

    ds = CorpusDataset(reference.path, "train", fields=["image", "label"])
    assert len(ds) == reference.counts["train"]["samples"]
    loader = DataLoader(ds, batch_size=64, num_workers=2, shuffle=False)
    labels = torch.cat([b["label"] for b in loader]).numpy()
    with h5py.File(reference.path, "r") as f:
        assert np.array_equal(labels, f["train/label"][...])
    assert ds[0]["image"].shape == (32, 32)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_preview_and_list_and_validate(reference, make_manifest, tmp_path):
    png = tmp_path / "p.png"
    r = run_cli("preview", reference.path, "--out", png)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[1] > 20 * 64
    r = run_cli("list", "--json")
    assert r.returncode == 0 and "gauss20" in r.stdout and "div2k" in r.stdout
    r = run_cli("validate", make_manifest())
    assert r.returncode == 0 and reference.dataset_id in r.stdout


def test_demo_manifest_builds_from_builtin_images(tmp_path):
    r = run_cli("build", Path(__file__).parents[1] / "manifests" / "demo_gauss20.yaml", "--out", tmp_path / "d.h5",
                "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    meta = info(tmp_path / "d.h5")
    assert meta["counts"]["train"]["images"] == 6 and meta["counts"]["test"]["per_class"][0] > 0


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_resumes(big_image_folder, tmp_path):
    data = manifest_dict(big_image_folder, output={"images_per_shard": 1})
    manifest = write_manifest(tmp_path / "m.yaml", data)
    out = tmp_path / "c.h5"
    # a terminal's Ctrl-C signals the whole foreground process group: the driver and its workers
    proc = subprocess.Popen([str(BIN / "datagen"), "build", str(manifest), "--out", str(out), "--workers", "2",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_shards(tmp_path / "c.h5.incomplete", 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert [ln for ln in stderr.splitlines() if "%" not in ln] == [
        "datagen: interrupted; complete shards are kept, rerun the same command to resume"]
    assert not out.exists()
    resumed = run_cli("build", manifest, "--out", out, "--no-progress")
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    assert info(out)["content_sha256"] == build(parse_manifest(data), out=tmp_path / "clean.h5", workers=1,
                                                **QUIET).content_sha256


def test_resume_rebuilds_shards_of_another_shard_version(reference, image_folder, tmp_path):
    from datagen.plan import make_plan
    from datagen.runner import shard_tasks
    from datagen.shard import run_shard

    manifest = parse_manifest(manifest_dict(image_folder))
    plan = make_plan(manifest)
    out = tmp_path / "v.h5"
    first = shard_tasks(plan, out)[0]
    first.path.parent.mkdir(parents=True)
    run_shard(first)
    with h5py.File(first.path, "r+") as f:
        del f.attrs["shard_version"]           # as written by an older engine
        del f.attrs["label_counts"]
    logs = []
    res = build(manifest, out=out, workers=1, progress=False, log=logs.append)
    assert not any("resuming" in m for m in logs)
    assert any(m.startswith("rebuilding shard 0") for m in logs)
    assert res.content_sha256 == reference.content_sha256
