"""A headless Chromium driven over the DevTools protocol, and ``mlflow ui`` served on loopback: the few
pieces the browser tests (tests/browser/) and the screenshot script (mlflow_ui_screenshots.py) share.

Standard library only: the DevTools protocol is JSON over a websocket on 127.0.0.1, and the few lines of
RFC 6455 it needs are below. The browser is Debian's ``chromium`` package (``apt-get install -y
chromium``), started with a fresh profile, no background networking, no way out of loopback (a dead
proxy) and no sandbox (CI runs as root); it and the UI server each run in their own process group and
are stopped by their PID.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["INSTALL_HINT", "BrowserUnavailable", "find_chromium", "free_port", "stop_group", "Browser",
           "MlflowUI"]

INSTALL_HINT = "apt-get install -y chromium"
#: JavaScript (``% json.dumps(run_id)``): click the name-cell button that unfolds a parent run's row in
#: MLflow's runs table; true when the button was there
EXPAND = """(() => {
  const row = document.querySelector('[role=row][row-id=%s]');
  const button = row && row.querySelector('button[data-component-id*="runnamecellrenderer"]');
  if (!button) return false;
  button.click();
  return true; })()"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
                  "--hide-scrollbars",
                  # every request but loopback ones (which Chromium never proxies) goes to a closed local
                  # port and fails: the pages under test reach nothing outside this machine
                  "--proxy-server=http://127.0.0.1:9"]


class BrowserUnavailable(RuntimeError):
    """No Chromium on this machine, or it would not start (the message says which, and how to install)."""


def find_chromium(given: str | None = None) -> str:
    """The browser binary: ``given``, else ``chromium``/``chromium-browser``/``google-chrome`` on PATH."""
    names = [given] if given else ["chromium", "chromium-browser", "google-chrome"]
    for name in names:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise BrowserUnavailable(f"no browser found ({', '.join(names)}); install one with `{INSTALL_HINT}`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), SIGKILL after
    ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass


class _WebSocket:
    """Text frames over a loopback websocket: all the DevTools protocol needs."""

    def __init__(self, url: str, timeout: float = 60):
        u = urlparse(url)
        if u.hostname not in ("127.0.0.1", "localhost"):
            raise RuntimeError(f"refusing a non-loopback DevTools address {url!r}")
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("DevTools closed the websocket handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the websocket: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("DevTools closed the websocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        header = bytearray([0x81])                      # FIN + text frame
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)                            # client frames are masked
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):                     # ping / pong: nothing to do for a short session
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """One headless Chromium page: ``open`` a URL, ``wait`` for a JavaScript condition, ``evaluate``,
    ``screenshot``, ``close``. The window is ``width`` x ``height`` CSS pixels."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 800, chromium: str | None = None,
                 start_timeout: float = 60):
        binary = find_chromium(chromium)
        profile = Path(profile)
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)     # a reused profile's old port
        self._log = open(profile / "chromium.log", "w")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)   # a pipe could fill up
        try:
            self._connect(profile / "DevToolsActivePort", start_timeout)
            self.resize(width, height)
        except Exception as exc:
            stop_group(self.proc, grace=5)
            self._log.close()
            err = (profile / "chromium.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise BrowserUnavailable(f"{binary} did not start: {exc}; {' | '.join(err)}") from exc

    def _connect(self, port_file: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no DevTools port within {timeout:.0f}s")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.call("Page.enable")

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited); a thrown error raises."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"page script failed: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 60, poll: float = 0.25):
        """Evaluate ``expression`` until it is truthy and return its value; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value or None
            time.sleep(poll)

    def open(self, url: str, wait_for: str | None = None, timeout: float = 60) -> bool:
        """Navigate to ``url``; wait until the page has loaded and, given ``wait_for``, its text holds it
        (True) or ``timeout`` passed (False)."""
        self.call("Page.navigate", url=url)
        test = "document.readyState === 'complete'"
        if wait_for is not None:
            test += f" && document.body && document.body.innerText.includes({json.dumps(wait_for)})"
        return bool(self.wait(test, timeout))

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            stop_group(self.proc, grace=5)
            self._log.close()


class MlflowUI:
    """``mlflow ui`` over ``tracking_uri`` on 127.0.0.1:``port`` (``--workers 1``, telemetry off), in its
    own process group; ``wait()`` until ``/health`` answers, ``stop()`` ends the group by its PID."""

    def __init__(self, tracking_uri: str, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, timeout: float = 120) -> float:
        """Seconds until ``/health`` answered; raises when the server exits or ``timeout`` passes."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow ui did not answer within {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()
