#!/usr/bin/env python
"""Screenshots of the MLflow UI over a sweep's store, taken with a headless Chromium (for docs/images/).

    python scripts/mlflow_ui_screenshots.py --tracking-uri sqlite:////abs/path/mlflow.db [--sweep ID]

What it does, in order:

1. starts ``mlflow ui --backend-store-uri URI --host 127.0.0.1 --port <free port> --workers 1`` in its
   own process group and waits until ``/health`` answers;
2. looks up the experiment, the sweep's parent run and its Pareto-front image in the store;
3. opens, in a headless Chromium (loopback only, a fresh profile, no background networking), the
   experiment page, the runs table with the parent run expanded to show its nested trial runs, the
   parent run's page, and the Pareto image artifact, and saves one PNG each to ``--out``
   (default docs/images/);
4. stops the server by its process id (its whole process group).

Needs ``chromium`` (Debian: ``apt-get install -y chromium``). Not run by CI. See docs/mlflow-ui.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio", "--disable-extensions",
                  "--proxy-server=direct://", "--proxy-bypass-list=*"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_chromium(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(name) if name else None
        if path:
            return path
    sys.exit("error: chromium not found; expected `apt-get install -y chromium` or --chromium PATH")


class MlflowUI:
    """``mlflow ui`` on 127.0.0.1 in its own process group; ``stop()`` ends that group by the PID."""

    def __init__(self, tracking_uri: str, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, timeout: float = 120) -> float:
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


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


class WebSocket:
    """The few lines of RFC 6455 the DevTools protocol needs (stdlib only: text frames, loopback)."""

    def __init__(self, url: str, timeout: float = 60):
        from urllib.parse import urlparse

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
    """A headless Chromium driven over the DevTools protocol (a websocket on 127.0.0.1)."""

    def __init__(self, chromium: str, profile: Path, width: int, height: int):
        self.width, self.height = width, height
        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.call("Page.enable")
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
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, wait_for: str | None = None, timeout: float = 60, settle: float = 2.0) -> bool:
        """Navigate; wait until the page's text contains ``wait_for`` (True) or the timeout (False)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        found = wait_for is None
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            found = wait_for in text
        if self.evaluate(CLOSE_SIDE_PANEL) == "closed":   # the UI's chat side panel hides the page
            time.sleep(1)
        time.sleep(settle)
        return found

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            stop_group(self.proc)


def sweep_runs(tracking_uri: str, experiment: str, sweep: str | None):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"error: experiment {experiment!r} not found in {tracking_uri}; expected a sweep's store")
    where = "tags.`disparse.role` = 'sweep'" + (f" and tags.`disparse.sweep_id` = '{sweep}'" if sweep else "")
    parents = client.search_runs([exp.experiment_id], where, order_by=["attributes.start_time DESC"])
    if not parents:
        sys.exit(f"error: no sweep {sweep or ''} in experiment {experiment!r}; expected a finished sweep")
    parent = parents[0]
    images = [a.path for a in client.list_artifacts(parent.info.run_id) if a.path.endswith(".png")]
    preferred = [p for p in images if "delta_m" in p] or images
    return exp, parent, (preferred[0] if preferred else None)


CLOSE_SIDE_PANEL = """
(() => {
  const panel = [...document.querySelectorAll('div, aside, section')]
    .find(e => e.innerText && e.innerText.startsWith('MLflow Assistant') && e.querySelector('button'));
  if (!panel) return 'no panel';
  const close = [...panel.querySelectorAll('button')]
    .find(b => /close/i.test((b.getAttribute('aria-label') || '') + (b.getAttribute('title') || '')));
  if (!close) return 'no close button';
  close.click();
  return 'closed';
})()
"""

EXPAND_PARENT = """
(() => {
  const rows = [...document.querySelectorAll('[role="row"], .ag-row, tr')];
  const row = rows.find(r => r.innerText && r.innerText.includes(%s));
  if (!row) return 'no row';
  const button = row.querySelector('button[aria-label*="xpand"], button[title*="xpand"], [aria-expanded="false"], button');
  if (!button) return 'no button';
  button.click();
  return 'clicked';
})()
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    ap.add_argument("--experiment", default="disparse-tune")
    ap.add_argument("--sweep", help="sweep id (default: the latest)")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "images"))
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--chromium", help="browser binary (default: chromium on PATH)")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    chromium = find_chromium(args.chromium)
    exp, parent, image = sweep_runs(args.tracking_uri, args.experiment, args.sweep)
    sweep_id = parent.data.tags["disparse.sweep_id"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlflow-shots-"))
    ui = MlflowUI(args.tracking_uri, args.port or free_port(), work / "mlflow-ui.log")
    browser = None
    shots = []
    try:
        print(f"mlflow ui (pid {ui.proc.pid}) answered after {ui.wait():.1f}s at {ui.url}")
        profile = work / "chromium-profile"
        profile.mkdir()
        browser = Browser(chromium, profile, args.width, args.height)
        base = f"{ui.url}/#/experiments/{exp.experiment_id}"
        run = parent.info.run_id

        ok = browser.open(f"{base}/runs", wait_for=parent.info.run_name)
        shots.append(("mlflow_experiment.png", ok))
        browser.screenshot(out / shots[-1][0])

        state = browser.evaluate(EXPAND_PARENT % json.dumps(parent.info.run_name))
        time.sleep(2)
        ok = state == "clicked" and bool(browser.evaluate("document.body.innerText.includes('trial-')"))
        shots.append(("mlflow_nested_trials.png", ok))
        browser.screenshot(out / shots[-1][0])

        ok = browser.open(f"{base}/runs/{run}", wait_for="disparse.sweep_id")
        shots.append(("mlflow_parent_run.png", ok))
        browser.screenshot(out / shots[-1][0])

        if image:
            ok = browser.open(f"{base}/runs/{run}/artifacts/{image}", wait_for=image.rsplit("/", 1)[-1],
                              settle=4)
            shots.append(("mlflow_pareto_artifact.png", ok))
            browser.screenshot(out / shots[-1][0])
    finally:
        if browser is not None:
            browser.close()
        ui.stop()
        print(f"mlflow ui stopped (pid {ui.proc.pid}, exit {ui.proc.returncode})")
    for name, ok in shots:
        print(f"{'saved' if ok else 'saved (page not confirmed)'}: {out / name}")
    print(f"sweep {sweep_id}, experiment {exp.name} ({exp.experiment_id}), parent run {parent.info.run_id}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in shots) else 1


if __name__ == "__main__":
    sys.exit(main())
