"""The places a sweep writes are broken: MLflow unreachable or read-only, the results folder read-only or
full. Each must be one line ``error: ...`` naming the path, exit code 2, before any training starts
(no "dense baseline" line), with nothing written to the working directory.

Read-only and full file systems are real: a tmpfs mounted read-only, or 64 KiB small (needs root and
permission to mount; each test skips with the reason where that is missing). All cases run as ``tune.py``
subprocesses, in parallel.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rel_helpers import listing, popen_cli, write_space

pytestmark = pytest.mark.slow

TIMEOUT = 60   # a correct answer takes seconds (the plan is checked before Ray starts)


def _mount_tmpfs(target: Path, size: str, read_only: bool = False, seed=None) -> str | None:
    """Mounts a tmpfs on ``target``; None when it is mounted, else why not (the skip reason)."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return f"mounting a tmpfs needs root (running as uid {os.geteuid()})"
    if shutil.which("mount") is None:
        return "no mount command on this machine"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs refused as root: {(done.stderr or done.stdout).strip()[:200]}"
    if seed is not None:
        seed(target)
    if read_only:
        done = subprocess.run(["mount", "-o", "remount,ro", str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
            return f"remount,ro of a tmpfs refused: {(done.stderr or done.stdout).strip()[:200]}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sqlite_file(folder: Path) -> None:
    db = sqlite3.connect(folder / "mlflow.db")            # an existing store the sweep would write to
    db.execute("create table t (x)")
    db.commit()
    db.close()                                            # an open file would keep remount,ro busy
    (folder / "results").mkdir()


def _run(args, cwd: Path) -> dict:
    before = listing(cwd)
    proc = popen_cli(args, cwd=cwd)
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = "timeout"
    return {"code": code, "output": out, "seconds": time.monotonic() - t0, "written": listing(cwd) != before}


@pytest.fixture(scope="module")
def store_faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("store_faults")
    space = write_space(root / "in", name="sf", baseline=True,
                        objectives=["compression", "delta_m"])
    unmounted = {"ro": _mount_tmpfs(root / "ro", "1m", read_only=True, seed=_sqlite_file),
                 "full_results": _mount_tmpfs(root / "full_results", "64k"),
                 "full_store": _mount_tmpfs(root / "full_store", "64k")}
    cases = {
        "mlflow-unreachable": ["--tracking-uri", f"http://127.0.0.1:{_free_port()}"],
        "mlflow-read-only": ["--tracking-uri", f"sqlite:///{root}/ro/mlflow.db"],
        "results-read-only": ["--results-dir", f"{root}/ro/results/sweep"],
        "results-no-space": ["--results-dir", f"{root}/full_results/sweep"],
        "mlflow-no-space": ["--tracking-uri", f"sqlite:///{root}/full_store/mlflow.db"],
    }
    needs = {"mlflow-read-only": "ro", "results-read-only": "ro", "results-no-space": "full_results",
             "mlflow-no-space": "full_store"}
    skipped = {k: unmounted[needs[k]] for k in cases if k in needs and unmounted[needs[k]] is not None}
    runnable = {k: v for k, v in cases.items() if k not in skipped}
    default_store = ["--tracking-uri", f"sqlite:///{root}/store/mlflow.db"]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {}
            for name, extra in runnable.items():
                cwd = root / "cwd" / name
                cwd.mkdir(parents=True)
                args = ["--space", space] + (extra if "--tracking-uri" in extra else default_store + extra)
                futures[name] = pool.submit(_run, args, cwd)
            results = {k: f.result() for k, f in futures.items()}
    finally:
        for name in unmounted:
            subprocess.run(["umount", "-l", str(root / name)], capture_output=True)
    return {"results": results, "cases": cases, "skipped": skipped}


@pytest.mark.parametrize("case", ["mlflow-unreachable", "mlflow-read-only", "results-read-only",
                                  "results-no-space", "mlflow-no-space"])
def test_store_fault_is_one_line_before_training(store_faults, case):
    if case in store_faults["skipped"]:     # listed with its reason in the summary (-ra in pyproject)
        pytest.skip(f"store fault {case!r} not checked: {store_faults['skipped'][case]}")
    r = store_faults["results"][case]
    assert r["code"] != "timeout", f"no answer within {TIMEOUT}s: {r['output'][-800:]}"
    assert "Traceback" not in r["output"], r["output"][-1500:]
    assert "dense baseline" not in r["output"], "training started before the store was checked"
    errors = [ln for ln in r["output"].splitlines() if ln.startswith("error: ")]
    assert r["code"] == 2 and len(errors) == 1, (r["code"], r["output"][-800:])
    target = store_faults["cases"][case][1]
    if target.startswith("http://"):                       # the server, with its port
        assert target.removeprefix("http://") in errors[0], errors[0]
    else:                                                  # the file, or the folder it would be made in
        where = target.split("sqlite:///")[-1]
        assert where in errors[0] or where.rsplit("/", 1)[0] in errors[0], errors[0]
    assert not r["written"], "files were written to the working directory"
