"""Render a local HTML file in headless Chromium; report console errors, page text and a screenshot.

    from .browser import render_in_chromium
    result = render_in_chromium(path, screenshot=tmp_path / "page.png")
    assert result["console_errors"] == []

How errors are captured: Chromium is started with ``--remote-debugging-port=0`` (it picks a free
port and writes it to ``DevToolsActivePort`` in its fresh ``--user-data-dir``) and driven over the
Chrome DevTools Protocol with the small stdlib websocket client below (no third-party dependency).
``Runtime``, ``Log`` and ``Network`` are enabled *before* the page is navigated, so nothing emitted
while the page loads is missed, and we wait for ``Page.loadEventFired`` plus a short quiet period.
Collected as errors:

* ``Runtime.consoleAPICalled`` with type ``error`` or ``assert`` (``console.error(...)``);
* ``Runtime.exceptionThrown`` (uncaught exceptions, syntax errors in inline scripts);
* ``Log.entryAdded`` with level ``error`` (failed resource loads such as a missing image or a
  blocked network fetch, CSP violations, other browser-reported problems).

This is sturdier than scraping ``--enable-logging=stderr`` (format changes between versions, is
mixed with unrelated dbus/GPU noise, and misses failed loads), and it gives the rendered text
(``document.body.innerText``) and a full-page screenshot from the same page load.

Chromium is Debian's ``/usr/bin/chromium`` (``scripts/ensure_chromium.sh`` installs it), or the
path in ``$DEFOCUSBENCH_CHROMIUM``. When it is missing the calling test is skipped with a reason.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_CHROMIUM = "/usr/bin/chromium"
ENV_VAR = "DEFOCUSBENCH_CHROMIUM"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--hide-scrollbars", "--disable-dev-shm-usage", "--remote-debugging-port=0",
]
# <img> elements not loaded/decoded at load time (missing file, bad data URI, loading="lazy" off-screen)
BROKEN_IMAGES_JS = ("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                    ".map(i => i.alt || i.getAttribute('src').slice(0, 80))")

# the page box (CSS px, from the top of the document) of the first element matching a selector, or null
CLIP_JS = ("(() => { const e = document.querySelector(%s); if (!e) return null; const r = e.getBoundingClientRect();"
           " return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()")


class ChromiumError(RuntimeError):
    """Chromium could not be started or driven."""


def chromium_path() -> str | None:
    """The Chromium executable to use, or None when there is none."""
    candidate = os.environ.get(ENV_VAR) or DEFAULT_CHROMIUM
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return None


def require_chromium() -> str:
    """The Chromium executable; skips the calling test with a clear reason when it is missing."""
    path = chromium_path()
    if path is None:
        import pytest

        wanted = os.environ.get(ENV_VAR) or DEFAULT_CHROMIUM
        pytest.skip(f"headless Chromium not found at {wanted}: run scripts/ensure_chromium.sh "
                    f"(installs Debian's chromium with apt-get) or set ${ENV_VAR}")
    return path


# ---------------------------------------------------------------------------------------------
# Minimal RFC 6455 websocket client (text frames, client-side masking, fragmentation, ping/pong).


class _WebSocket:
    def __init__(self, url: str, timeout: float):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {parsed.path or '/'} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ChromiumError("DevTools closed the connection during the websocket handshake")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        self._buffer = bytearray(rest)
        self._partial = bytearray()
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ChromiumError(f"websocket handshake refused: {status.decode(errors='replace')}")

    def settimeout(self, seconds: float) -> None:
        self.sock.settimeout(max(seconds, 0.01))

    def _ensure(self, n: int) -> None:
        """Buffer at least ``n`` bytes; a timeout leaves the buffer intact (nothing half-consumed)."""
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ChromiumError("DevTools connection closed")
            self._buffer += chunk

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack("!H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def _next_frame(self) -> tuple[int, int, bytes]:
        """(fin+opcode byte, opcode, payload) of the next whole frame, consumed only once complete."""
        self._ensure(2)
        b0, b1 = self._buffer[0], self._buffer[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._ensure(4)
            n, pos = struct.unpack("!H", self._buffer[2:4])[0], 4
        elif n == 127:
            self._ensure(10)
            n, pos = struct.unpack("!Q", self._buffer[2:10])[0], 10
        mask = None
        if b1 & 0x80:
            self._ensure(pos + 4)
            mask, pos = bytes(self._buffer[pos:pos + 4]), pos + 4
        self._ensure(pos + n)
        payload = bytes(self._buffer[pos:pos + n])
        del self._buffer[:pos + n]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b0, b0 & 0x0F, payload

    def recv(self) -> str:
        while True:
            b0, opcode, payload = self._next_frame()
            if opcode == 0x8:
                raise ChromiumError("DevTools closed the websocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                self._partial += payload
                if b0 & 0x80:
                    message, self._partial = bytes(self._partial), bytearray()
                    return message.decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------------------------


class _DevTools:
    """Commands to one page session over the browser-level DevTools websocket (flat sessions)."""

    def __init__(self, ws: _WebSocket, deadline: float):
        self.ws, self.deadline, self.next_id = ws, deadline, 0
        self.session: str | None = None
        self.events: list[dict] = []

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("headless Chromium did not finish in time")
        return left

    def _pump(self, timeout: float) -> dict | None:
        self.ws.settimeout(min(timeout, self._remaining()))
        try:
            return json.loads(self.ws.recv())
        except TimeoutError:
            return None

    def call(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._pump(self._remaining())
            if reply is None:
                continue
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        while True:
            msg = self._pump(self._remaining())
            if msg and "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    return

    def drain(self, quiet: float) -> None:
        """Collect events until none arrives for ``quiet`` seconds."""
        while True:
            msg = self._pump(quiet)
            if msg is None:
                return
            if "method" in msg:
                self.events.append(msg)


def _format_remote(obj: dict) -> str:
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type", ""))


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_format_remote(arg) for arg in params.get("args", []))
            errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception") or {}
            text = exc.get("description") or details.get("text", "exception")
            errors.append(f"uncaught exception: {text} (line {details.get('lineNumber')})")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                where = f" [{entry['url']}]" if entry.get("url") else ""
                errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")
    return errors


def _requests(events: list[dict], page_url: str) -> list[str]:
    urls = []
    for event in events:
        if event.get("method") == "Network.requestWillBeSent":
            url = event.get("params", {}).get("request", {}).get("url", "")
            if url and url != page_url and not url.startswith("data:"):
                urls.append(url)
    return urls


def _wait_for_port(profile: Path, proc: subprocess.Popen, deadline: float) -> str:
    port_file = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChromiumError(f"chromium exited early with code {proc.returncode}")
        try:
            lines = port_file.read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 2 and lines[0].strip().isdigit():
            return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port in time")


def render_in_chromium(html_path, *, screenshot=None, timeout: float = 60, width: int = 1280,
                       height: int = 900, settle: float = 0.5, clip: str | None = None) -> dict:
    """Open ``html_path`` in headless Chromium.

    Returns ``{"console_errors": [str, ...], "text": <document.body.innerText>,
    "requests": [URLs other than the page itself and data: URIs],
    "broken_images": [alt text or src of <img> not decoded after load]}``. With ``screenshot`` (a path)
    a full-page PNG is written there, or with ``clip`` (a CSS selector) the box of the first element it
    matches (``ChromiumError`` when none does). Skips the calling test when Chromium is missing; raises
    ``TimeoutError`` after ``timeout`` seconds and ``ChromiumError`` when the browser misbehaves.
    """
    exe = require_chromium()
    url = Path(html_path).resolve().as_uri()
    deadline = time.monotonic() + timeout
    profile = Path(tempfile.mkdtemp(prefix="defocusbench-chromium-"))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                                 "about:blank"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        ws, closed = None, False
        try:
            try:
                ws = _WebSocket(_wait_for_port(profile, proc, deadline), timeout=timeout)
            except Exception as exc:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise ChromiumError(f"could not start chromium ({exc}); its output:\n{tail}") from exc
            cdp = _DevTools(ws, deadline)
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.call(f"{domain}.enable")
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            cdp.events.clear()
            nav = cdp.call("Page.navigate", {"url": url})
            if nav.get("errorText"):
                raise ChromiumError(f"navigation to {url} failed: {nav['errorText']}")
            cdp.wait_for("Page.loadEventFired")
            cdp.drain(settle)
            text = cdp.call("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''",
                                                 "returnByValue": True})["result"].get("value", "")
            broken = cdp.call("Runtime.evaluate", {"expression": BROKEN_IMAGES_JS, "returnByValue": True})
            broken = broken["result"].get("value") or []
            if screenshot is not None:
                size = cdp.call("Page.getLayoutMetrics").get("cssContentSize") or {}
                box = {"x": 0, "y": 0, "width": max(width, int(size.get("width", width))),
                       "height": max(1, min(int(size.get("height", height)), 16000))}
                if clip is not None:
                    found = cdp.call("Runtime.evaluate", {"expression": CLIP_JS % json.dumps(clip),
                                                          "returnByValue": True})["result"].get("value")
                    if not found:
                        raise ChromiumError(f"no element matches {clip!r}")
                    box = {k: found[k] for k in ("x", "y", "width", "height")}
                shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                           "clip": dict(box, scale=1)})
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            cdp.drain(0.05)
            events = list(cdp.events)
            try:
                cdp.call("Browser.close", session=False)
                closed = True
            except (ChromiumError, OSError, TimeoutError):
                pass
        finally:
            if ws is not None:
                ws.close()
            try:
                proc.wait(timeout=5 if closed else 0.1)
            except subprocess.TimeoutExpired:
                pass
            try:  # renderer/zygote helpers share the process group of the chromium we started
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
            shutil.rmtree(profile, ignore_errors=True)
        return {"console_errors": _console_errors(events), "text": text, "requests": _requests(events, url),
                "broken_images": broken}
