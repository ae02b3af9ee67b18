"""``datagen fetch``: download, resume, verify and extract against a local HTTP server (offline)."""
from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from datagen.errors import OutputError, SourceError, UserError
from datagen.fetch import DATASETS, fetch

TRAIN, VALID = "DIV2K_train_HR.zip", "DIV2K_valid_HR.zip"


@dataclass
class ServerState:
    root: Path
    log: list[tuple[str, str | None]] = field(default_factory=list)  # (file, Range header)
    drop_after: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before hanging up, once
    ignore_range: bool = False
    extra: dict[str, int] = field(default_factory=dict)  # file -> junk bytes sent after it
    no_length: bool = False  # omit Content-Length (the body then ends when the connection closes)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    """Serves ``state.root``; honours ``Range: bytes=N-`` unless told not to; can drop a transfer."""

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        name, wanted = self.path.lstrip("/"), self.headers.get("Range")
        state.log.append((name, wanted))
        path = state.root / name
        if not path.is_file():
            self.send_error(404)
            return
        data, start = path.read_bytes(), 0
        if wanted and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:] + b"\0" * state.extra.get(name, 0)
        if not state.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.drop_after.pop(name, None)
        try:
            self.wfile.write(body if cut is None else body[:cut])
        except OSError:  # the client stopped reading (a refused overlong body)
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    state = ServerState(root=tmp_path / "srv")
    state.root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield state
    httpd.shutdown()
    httpd.server_close()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def fake_png(seed: int, n: int = 20_000) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + random.Random(seed).randbytes(n)


def checksum_line(path: Path, sha256: str | None = None) -> str:
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name} {path.stat().st_size} {digest}\n"


@pytest.fixture
def div2k(server, tmp_path):
    """Serve two small DIV2K-like zips; return (expected {relpath: bytes}, checksums file)."""
    expected = {}
    for archive, folder, seed in ((TRAIN, "DIV2K_train_HR", 0), (VALID, "DIV2K_valid_HR", 10)):
        members = {f"{folder}/{i:04d}.png": fake_png(seed + i) for i in range(1, 4)}
        write_zip(server.root / archive, {f"{folder}/": b"", **members})
        expected.update(members)
    sums = tmp_path / "sums.txt"
    sums.write_text("# test mirror\n\n" + "".join(checksum_line(server.root / a) for a in (TRAIN, VALID)))
    return expected, sums


def assert_one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def assert_tree(dest: Path, expected: dict[str, bytes]) -> None:
    found = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.glob("DIV2K_*/*")}
    assert found == expected


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_extracts_and_rerun_is_offline(server, div2k, tmp_path):
    expected, sums = div2k
    dest = tmp_path / "dest"
    calls = []
    assert fetch("div2k", dest, base_url=server.url, checksums=sums,
                 progress=lambda *a: calls.append(a)) == dest
    assert_tree(dest, expected)
    assert [name for name, _ in server.log] == [TRAIN, VALID]
    assert calls[-1] == (VALID, (server.root / VALID).stat().st_size, (server.root / VALID).stat().st_size)
    leftovers = sorted(p.name for p in (dest / ".downloads").iterdir())
    assert leftovers == [f"{TRAIN}.complete", f"{VALID}.complete"]  # zips deleted, markers kept
    assert not list(dest.glob(".extract-*"))

    server.log.clear()
    unreachable = f"http://127.0.0.1:{closed_port()}/"
    assert fetch("div2k", dest, base_url=unreachable, checksums=sums) == dest
    assert server.log == []
    assert_tree(dest, expected)


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range", "no-range-support"])
def test_interrupted_download_resumes(server, div2k, tmp_path, ignore_range):
    expected, sums = div2k
    dest, cut = tmp_path / "dest", 5000
    server.drop_after[TRAIN] = cut
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    message = assert_one_line(exc)
    assert TRAIN in message and "rerun" in message
    part = dest / ".downloads" / f"{TRAIN}.part"
    assert part.stat().st_size == cut
    assert not (dest / "DIV2K_train_HR").exists()

    server.log.clear()
    server.ignore_range = ignore_range
    fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert server.log[0] == (TRAIN, f"bytes={cut}-")
    assert_tree(dest, expected)
    assert not part.exists()


@pytest.mark.usefixtures("div2k")
def test_checksum_mismatch(server, tmp_path):
    sums = tmp_path / "bad.txt"
    sums.write_text(checksum_line(server.root / TRAIN, sha256="0" * 64) + checksum_line(server.root / VALID))
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    message = assert_one_line(exc)
    assert TRAIN in message and "0" * 64 in message
    assert not list(dest.glob("DIV2K_*"))
    assert (dest / ".downloads" / f"{TRAIN}.corrupt").is_file()
    assert not (dest / ".downloads" / f"{TRAIN}.part").exists()


def test_unreachable_server(div2k, tmp_path):
    _, sums = div2k
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", tmp_path / "dest", base_url=url, checksums=sums, timeout=5)
    assert url + TRAIN in assert_one_line(exc)


def test_http_error(server, div2k, tmp_path):
    _, sums = div2k
    with pytest.raises(SourceError) as exc:
        fetch("div2k", tmp_path / "dest", base_url=server.url + "missing/", checksums=sums)
    assert "HTTP 404" in assert_one_line(exc)


def test_unknown_dataset(tmp_path):
    with pytest.raises(UserError) as exc:
        fetch("div3k", tmp_path / "dest")
    assert "div2k" in assert_one_line(exc)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("line, needle", [
    ("DIV2K_train_HR.zip 12", "expected 'NAME SIZE SHA256'"),
    ("DIV2K_train_HR.zip twelve " + "a" * 64, "expected 'NAME SIZE SHA256'"),
    ("DIV2K_train_HR.zip 12 " + "g" * 64, "expected 'NAME SIZE SHA256'"),
    ("DIV2K_test_HR.zip 12 " + "a" * 64, "unknown archive"),
])
def test_malformed_checksums_file(tmp_path, line, needle):
    sums = tmp_path / "sums.txt"
    sums.write_text(f"# comment\n\n{line}\n")
    with pytest.raises(SourceError) as exc:
        fetch("div2k", tmp_path / "dest", checksums=sums)
    message = assert_one_line(exc)
    assert f"{sums}:3:" in message and needle in message


def test_unsafe_archive_member(server, tmp_path):
    zip_path = write_zip(server.root / TRAIN, {"DIV2K_train_HR/0001.png": fake_png(1), "../evil.png": b"x"})
    sums = tmp_path / "sums.txt"
    sums.write_text(checksum_line(zip_path))
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert "unsafe" in assert_one_line(exc) and "../evil.png" in str(exc.value)
    assert not (tmp_path / "evil.png").exists()
    assert not list(dest.glob("DIV2K_*"))
    assert not any(p.name == "evil.png" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("kind", ["not-a-zip", "wrong-folder"])
def test_bad_archive_content(server, tmp_path, kind):
    path = server.root / TRAIN
    if kind == "not-a-zip":
        path.write_bytes(b"definitely not a zip file" * 100)
    else:
        write_zip(path, {"SomethingElse/0001.png": fake_png(1)})
    sums = tmp_path / "sums.txt"
    sums.write_text(checksum_line(path))
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert TRAIN in assert_one_line(exc)
    assert not list(dest.glob("DIV2K_*"))


def test_existing_user_folder_is_not_clobbered(server, div2k, tmp_path):
    _, sums = div2k
    dest = tmp_path / "dest"
    (dest / "DIV2K_valid_HR").mkdir(parents=True)
    (dest / "DIV2K_valid_HR" / "mine.png").write_bytes(b"mine")
    with pytest.raises(OutputError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert "DIV2K_valid_HR" in assert_one_line(exc)
    assert server.log == []  # refused before downloading anything
    assert (dest / "DIV2K_valid_HR" / "mine.png").read_bytes() == b"mine"


def test_unwritable_destination(server, div2k, tmp_path):
    _, sums = div2k
    dest = tmp_path / "a_file"
    dest.write_text("not a folder")
    with pytest.raises(OutputError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert str(dest) in assert_one_line(exc)
    assert server.log == []


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "no-content-length"])
def test_download_is_cut_off_at_its_declared_size(server, div2k, tmp_path, no_length):
    _, sums = div2k
    declared = (server.root / TRAIN).stat().st_size
    server.extra[TRAIN], server.no_length = 8 << 20, no_length   # 8 MB more than the checksum table says
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    message = assert_one_line(exc)
    assert f"more than the declared {declared} bytes of {TRAIN}" in message
    written = {p.name: p.stat().st_size for p in (dest / ".downloads").iterdir()}
    assert all(size <= declared for size in written.values()), written
    assert not list(dest.glob("DIV2K_*"))


def _deflated_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_is_refused_before_unpacking(server, tmp_path):
    # 64 MB of zeros in a ~64 KB archive whose checksum line is honest: only the ratio gives it away
    zip_path = _deflated_zip(server.root / TRAIN, {f"DIV2K_train_HR/{i:04d}.png": bytes(16 << 20) for i in range(4)})
    sums = tmp_path / "sums.txt"
    sums.write_text(checksum_line(zip_path))
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    message = assert_one_line(exc)
    assert "would unpack to 67108864 bytes" in message and TRAIN in message
    assert not list(dest.glob("DIV2K_*")) and not list(dest.glob(".extract-*"))


def test_failed_unpack_removes_its_staging_folder(server, tmp_path):
    """A member whose data does not match its declared size and CRC fails half-way through the unpack."""
    zip_path = _deflated_zip(server.root / TRAIN, {"DIV2K_train_HR/0001.png": fake_png(1),
                                                   "DIV2K_train_HR/0002.png": bytes(100_000)})
    data = bytearray(zip_path.read_bytes())
    central = data.rfind(b"PK\x01\x02")           # the last member's central directory entry
    local = int.from_bytes(data[central + 42:central + 46], "little")
    for offset in (local + 22, central + 24):      # its uncompressed size: 100000 -> 1000
        data[offset:offset + 4] = (1000).to_bytes(4, "little")
    zip_path.write_bytes(bytes(data))
    sums = tmp_path / "sums.txt"
    sums.write_text(checksum_line(zip_path))
    dest = tmp_path / "dest"
    with pytest.raises(SourceError) as exc:
        fetch("div2k", dest, base_url=server.url, checksums=sums)
    assert "corrupt archive" in assert_one_line(exc)
    assert not list(dest.glob(".extract-*"))
    assert not list(dest.glob("DIV2K_*"))


def test_official_div2k_table():
    base_url, archives = DATASETS["div2k"]
    assert base_url == "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
    table = {a.name: (a.size, a.folder) for a in archives}
    assert table == {TRAIN: (3530603713, "DIV2K_train_HR"), VALID: (448993893, "DIV2K_valid_HR")}
    assert all(re.fullmatch(r"[0-9a-f]{64}", a.sha256) for a in archives)
    assert archives[0].sha256 == "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"
    assert archives[1].sha256 == "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"
