"""The build engine under hostile conditions (issue 8): damaged shards on resume, kills anywhere
(consolidation included), two builds of one output, a full disk, bad flags and addresses.

Kill tests stop a real ``datagen build`` process at named points with the test hook
``DATAGEN_TEST_PAUSE_AT`` (:func:`datagen.writer.pause_point`): the driver announces the point
on stderr and sleeps there until it is killed with SIGKILL.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import h5py
import pytest

from datagen.corpus import info, verify
from datagen.errors import UserError
from datagen.manifest import parse_manifest
from datagen.plan import make_plan
from datagen.runner import build, check_workers, shard_tasks
from datagen.shard import run_shard
from datagen.writer import PAUSE_ENV

from .conftest import BIN, manifest_dict, run_cli, write_manifest

QUIET = {"progress": False, "log": lambda m: None}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, image_folder):
    """An uninterrupted build of the small fixture (8 images, 4 shards of 2)."""
    return build(parse_manifest(manifest_dict(image_folder)), out=tmp_path_factory.mktemp("ref") / "ref.h5",
                 workers=1, **QUIET)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _start(manifest: Path, out: Path, *extra: str, pause: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    return subprocess.Popen([str(BIN / "datagen"), "build", str(manifest), "--out", str(out), "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 90) -> str:
    """Read ``proc``'s stderr until a line containing ``needle``; fail if it ends or times out."""
    seen, deadline = [], time.time() + timeout
    fd = proc.stderr.fileno()
    buf = ""
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split("\n")
            seen += lines
            for ln in lines:
                if needle in ln:
                    return ln
        elif proc.poll() is not None and not ready:
            break
    _kill(proc)
    pytest.fail(f"no {needle!r} from the build (exit {proc.poll()}); stderr: {seen + [buf]}")


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the build and its Dask workers (its whole session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_for_shards(workdir: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((workdir / "shards").glob("shard-*.h5"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"build ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no shard appeared in time")


def _flip_image_bytes(shard: Path, n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of the shard's ``image`` data, in place (as a bad disk would)."""
    with h5py.File(shard, "r") as f:
        ds = f["image"]
        at = ds.id.get_offset() + ds.id.get_storage_size() // 2
    with open(shard, "r+b") as fh:
        fh.seek(at)
        data = fh.read(n)
        fh.seek(at)
        fh.write(bytes(b ^ 0xFF for b in data))


def _set_attr(shard: Path, name: str, value) -> None:
    with h5py.File(shard, "r+") as f:
        f.attrs[name] = value


def _truncate(shard: Path) -> None:
    os.truncate(shard, shard.stat().st_size // 2)


def _leftovers(out: Path) -> list[str]:
    """What a build may leave beside ``out``: temporaries, the work folder, the lock file."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name and p.name.startswith(out.name))


# --- defect 2 and 12 (corrupt shard attribute): reused shards are re-hashed -----------------------

def test_damaged_reused_shards_are_rebuilt_not_trusted(reference, image_folder, tmp_path):
    """Complete shards left by an earlier run, each damaged another way (flipped data bytes,
    unparsable attribute, attribute of the wrong type, truncated file), are each rebuilt with a
    log line; the result is byte-identical to an uninterrupted build and verifies."""
    manifest = parse_manifest(manifest_dict(image_folder))
    out = tmp_path / "c.h5"
    tasks = shard_tasks(make_plan(manifest), out)
    tasks[0].path.parent.mkdir(parents=True)
    for task in tasks:
        run_shard(task)
    _flip_image_bytes(tasks[0].path)
    _set_attr(tasks[1].path, "sources", "{not json")
    _set_attr(tasks[2].path, "label_counts", '"not a list"')
    _truncate(tasks[3].path)
    logs = []
    res = build(manifest, out=out, workers=1, progress=False, log=logs.append)
    rebuilt = sorted(m.split()[2] for m in logs if m.startswith("rebuilding shard"))
    assert rebuilt == ["0", "1", "2", "3"], logs
    assert "does not match its stored digest" in next(m for m in logs if m.startswith("rebuilding shard 0"))
    assert res.shards_built == 4 and res.shards_reused == 0
    assert out.read_bytes() == reference.path.read_bytes()
    verify(out)


def test_intact_reused_shards_are_reused(reference, image_folder, tmp_path):
    manifest = parse_manifest(manifest_dict(image_folder))
    out = tmp_path / "c.h5"
    tasks = shard_tasks(make_plan(manifest), out)
    tasks[0].path.parent.mkdir(parents=True)
    for task in tasks[:3]:
        run_shard(task)
    logs = []
    res = build(manifest, out=out, workers=1, progress=False, log=logs.append)
    assert (res.shards_reused, res.shards_built) == (3, 1)
    assert not any(m.startswith("rebuilding") for m in logs)
    assert out.read_bytes() == reference.path.read_bytes()


def test_a_shard_of_another_version_of_a_source_file_is_rebuilt(reference, image_folder, tmp_path):
    """A shard whose worker read other bytes than the plan hashed is not reused, and a worker
    that reads other bytes than planned stops with one line."""
    from dataclasses import replace

    from datagen.errors import SourceError

    manifest = parse_manifest(manifest_dict(image_folder))
    out = tmp_path / "c.h5"
    task = shard_tasks(make_plan(manifest), out)[0]
    task.path.parent.mkdir(parents=True)
    stale = replace(task, images=tuple(im._replace(sha256="0" * 64) for im in task.images))
    with pytest.raises(SourceError, match="changed during the build"):
        run_shard(stale)
    run_shard(task)
    with h5py.File(task.path, "r") as f:
        sources = f.attrs["sources"]
    _set_attr(task.path, "sources", sources.replace(task.images[0][3], "f" * 64))
    logs = []
    build(manifest, out=out, workers=1, progress=False, log=logs.append)
    assert any(m.startswith("rebuilding shard 0") and "other images than planned" in m for m in logs), logs
    assert out.read_bytes() == reference.path.read_bytes()


def _big_manifest(folder: Path) -> dict:
    return manifest_dict(folder, output={"images_per_shard": 1})


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory, big_image_folder):
    """An uninterrupted build of the 24 larger photos, one shard per image."""
    return build(parse_manifest(_big_manifest(big_image_folder)), out=tmp_path_factory.mktemp("bigref") / "big.h5",
                 workers=2, **QUIET)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped-bytes", "garbled-attribute"])
def test_kill_then_damage_a_shard_then_resume_gives_the_clean_bytes(damage, big_reference, big_image_folder, tmp_path):
    """The issue's repro with real processes: kill -9 a build after some shards, flip 64 bytes of
    one complete shard (defect 2) or garble one of its attributes (defect 12), resume: the shard
    is rebuilt, the file verifies and equals an uninterrupted build."""
    manifest = write_manifest(tmp_path / "m.yaml", _big_manifest(big_image_folder))
    out = tmp_path / "big.h5"
    proc = _start(manifest, out, "--workers", "1")
    _wait_for_shards(tmp_path / "big.h5.incomplete", 2, proc)
    _kill(proc)
    shard = min((tmp_path / "big.h5.incomplete" / "shards").glob("shard-*.h5"))
    if damage == "flipped-bytes":
        _flip_image_bytes(shard)
    else:
        _set_attr(shard, "digests", "[{broken")
    resumed = run_cli("build", manifest, "--out", out, "--workers", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert info(out)["content_sha256"] == big_reference.content_sha256
    assert out.read_bytes() == big_reference.path.read_bytes()   # today: the same hash, other bytes
    verify(out)
    assert f"datagen: rebuilding shard {int(shard.stem.split('-')[1])} " in resumed.stderr, resumed.stderr


# --- defect 3: consolidation marks the file complete last; stale temporaries go ------------------

def test_consolidation_marks_complete_only_after_the_data(image_folder, tmp_path, monkeypatch):
    """While the raw copies run, the temporary corpus must not claim to be complete."""
    from datagen import writer

    seen = []
    real = writer._copy_ranges

    def spy(copies, dst):
        with h5py.File(dst, "r") as f:
            seen.append(bool(f.attrs.get("complete", False)))
        real(copies, dst)

    monkeypatch.setattr(writer, "_copy_ranges", spy)
    res = build(parse_manifest(manifest_dict(image_folder)), out=tmp_path / "c.h5", workers=1, **QUIET)
    assert seen == [False]
    with h5py.File(res.path, "r") as f:
        assert f.attrs["complete"]


def test_stale_temporaries_of_the_output_are_removed_and_nothing_else(reference, image_folder, tmp_path):
    out = tmp_path / "c.h5"
    ours = [tmp_path / "c.h5.tmp-4242-0123abcd", tmp_path / "c.h5.tmp-1-deadbeef"]
    foreign = [tmp_path / "c.h5.tmp-notours", tmp_path / "d.h5.tmp-4242-0123abcd", tmp_path / "c.h5.tmp-1-deadbeef.bak",
               tmp_path / "thesis.tex"]
    for p in ours + foreign:
        p.write_bytes(b"x" * 100)
    logs = []
    build(parse_manifest(manifest_dict(image_folder)), out=out, workers=1, progress=False, log=logs.append)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in foreign)
    assert any("removed 2 temporary file(s)" in m for m in logs), logs
    # an up-to-date rerun cleans them as well
    ours[0].write_bytes(b"x")
    again = build(parse_manifest(manifest_dict(image_folder)), out=out, workers=1, **QUIET)
    assert again.status == "up-to-date" and not ours[0].exists()
    assert out.read_bytes() == reference.path.read_bytes()


#: Where a build is killed: after its first shard; half-way through the consolidation's raw
#: copies; after them (before ``complete`` is set); after the final rename.
KILL_POINTS = ["built-shard-1", "consolidate-copy", "consolidate-copied", "renamed"]


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_anywhere_then_resume_gives_the_same_verified_file(point, reference, image_folder, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", manifest_dict(image_folder))
    out = tmp_path / "c.h5"
    proc = _start(manifest, out, "--workers", "2", pause=point)
    _wait_for_line(proc, f"test pause at {point}")
    _kill(proc)
    temporaries = list(tmp_path.glob("c.h5.tmp-*"))
    if point.startswith("consolidate"):
        assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0
        # the killed build's temporary is not taken for a corpus
        assert run_cli("info", temporaries[0]).returncode == 2
    assert out.exists() == (point == "renamed")
    resumed = run_cli("build", manifest, "--out", out, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    verify(out)
    assert out.read_bytes() == reference.path.read_bytes()
    assert _leftovers(out) == []      # no temporary, work folder or lock file left


# --- defect 4: one build per output -----------------------------------------------------------------

@pytest.mark.slow
def test_a_second_build_of_the_same_out_fails_in_one_line_naming_the_holder(big_image_folder, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", _big_manifest(big_image_folder))
    other = write_manifest(tmp_path / "other.yaml", manifest_dict(big_image_folder, seed=8))
    out = tmp_path / "c.h5"
    first = _start(manifest, out, "--workers", "1")
    try:
        _wait_for_shards(tmp_path / "c.h5.incomplete", 1, first)
        for args in ((manifest,), (other, "--overwrite")):
            second = run_cli("build", *args, "--out", out, "--workers", "1", "--no-progress", timeout=120)
            assert second.returncode == 2, second.stderr
            line = _one_line(second.stderr)
            assert f"pid {first.pid} " in line and "in use" in line and str(out) in line
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr   # the first build was not disturbed
    finally:
        _kill(first)
    verify(out)
    assert _leftovers(out) == []


def test_build_holds_the_lock_and_a_dead_holder_is_taken_over(reference, image_folder, tmp_path):
    from datagen.errors import OutputError
    from datagen.lock import lock_path, output_lock

    manifest = parse_manifest(manifest_dict(image_folder))
    out = tmp_path / "c.h5"
    with output_lock(out), pytest.raises(OutputError, match="in use by pid"):
        build(manifest, out=out, workers=1, **QUIET)
    # a lock file left by a killed process (no flock held) does not stop the next build
    lock_path(out).write_text('{"pid": 999999, "host": "gone"}')
    assert build(manifest, out=out, workers=1, **QUIET).status == "built"
    assert not lock_path(out).exists()


def test_an_up_to_date_corpus_in_a_read_only_folder_needs_no_lock(reference, image_folder, tmp_path):
    """The lock file cannot be created in a read-only folder; nothing can be building there
    either, so the up-to-date check still answers (and anything else fails in one line)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=False,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({(r.stderr or r.stdout).strip() or r.returncode}); needs root")
    try:
        (mnt / "c.h5").write_bytes(reference.path.read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        manifest = parse_manifest(manifest_dict(image_folder))
        assert build(manifest, out=mnt / "c.h5", workers=1, **QUIET).status == "up-to-date"
        with pytest.raises(UserError, match="cannot write to"):
            build(manifest, out=mnt / "other.h5", workers=1, **QUIET)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# --- defect 9: worker counts ----------------------------------------------------------------------

@pytest.mark.parametrize("workers", ["100000", "over"])
def test_workers_out_of_range_is_one_line(workers, make_manifest, tmp_path):
    value = str(4 * len(os.sched_getaffinity(0)) + 1) if workers == "over" else workers
    r = run_cli("build", make_manifest(), "--out", tmp_path / "c.h5", "--workers", value, timeout=60)
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert "--workers" in line and value in line
    assert not (tmp_path / "c.h5.incomplete").exists()
    with pytest.raises(UserError, match="--workers must be"):
        check_workers(0)


# --- defect 12: one line, exit 2 --------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs: a real full disk (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({(r.stderr or r.stdout).strip() or r.returncode}); "
                    "needs root with mount rights")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_while_a_worker_writes_a_shard_is_one_line(small_disk, make_manifest):
    out = small_disk / "c.h5"
    r = run_cli("build", make_manifest(output={"images_per_shard": 8}), "--out", out, "--workers", "1",
                "--no-progress", timeout=120)
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)
    assert str(out) in line and "No space left on device" in line and "free space" in line and "rerun" in line
    assert not out.exists() and not list(small_disk.glob("c.h5.tmp-*"))
    assert not list((small_disk / "c.h5.incomplete" / "shards").iterdir())   # it failed in the worker


class _NotDask(threading.Thread):
    """A TCP server on 127.0.0.1 that answers every connection with an HTTP response."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 50)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["no-port", "scheme", "big-port", "refused", "not-dask"])
def test_bad_scheduler_address_is_one_line_without_traceback(kind, make_manifest, tmp_path):
    server = None
    if kind == "not-dask":
        server = _NotDask()
        server.start()
    address = {"no-port": "notanaddress", "scheme": "foo://x:1", "big-port": "tcp://127.0.0.1:99999",
               "refused": f"tcp://127.0.0.1:{_closed_port()}",
               "not-dask": f"tcp://127.0.0.1:{server.port if server else 0}"}[kind]
    t0 = time.time()
    r = run_cli("build", make_manifest(), "--out", tmp_path / "c.h5", "--scheduler", address, timeout=120)
    if server:
        server.sock.close()
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)       # also: no "Exception ignored in Client.__del__" traceback after it
    assert f"--scheduler {address}" in line
    assert time.time() - t0 < 20     # fails at once, not after Dask's retries and its 30 s close
    assert not list(tmp_path.glob("c.h5*"))   # nothing written


def test_a_server_that_never_answers_is_one_line_after_the_timeout():
    from datagen.runner import check_scheduler

    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(UserError, match="no Dask scheduler answered within 1 s"):
            check_scheduler(address, timeout=1)
