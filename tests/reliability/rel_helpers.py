"""Shared by the reliability tests: tiny spaces, the CLI as a subprocess, readers of Ray, Optuna and MLflow.

Deliberately independent of tests/sweeps/sweep_helpers.py (owned by the runner's tests), so either can
change without breaking the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TUNE_PY = REPO_ROOT / "tune.py"
FAULT_PLUGIN = Path(__file__).resolve().parent / "fault_plugin"

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}

# seconds per trial on a loaded 2-core machine: scenes 32x32, 32 training images, 6 steps
TINY_WORKLOAD = {"workload": "scenes", "tasks": ["seg", "normal"], "image_size": 32, "train_size": 32,
                 "test_size": 16, "width": 8, "steps": 6, "batch_size": 8, "eval_every": 3,
                 "method": "snip", "sparsity": 0.7, "num_threads": 1}


def write_space(folder: Path, name: str = "rel", *, workload: dict | None = None,
                parameters: dict | None = None, **top) -> Path:
    """A tiny, valid space (objectives compression + seg.miou, no baseline) with overrides."""
    space = {
        "name": name,
        "workload": {**TINY_WORKLOAD, **(workload or {})},
        "parameters": parameters if parameters is not None else {
            "lr": {"distribution": "log_uniform", "low": 1.0e-3, "high": 1.0e-2}},
        "objectives": [{"name": "compression", "direction": "maximize"},
                       {"name": "seg.miou", "direction": "maximize"}],
        "sampler": {"type": "random", "seed": 0},
        "trials": 2, "concurrency": 1, "resources": {"cpu": 1},
        "early_stopping": {"type": "none"}, "baseline": False, "max_retries": 0,
    }
    space.update(top)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(LOOPBACK_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def fault_env(folder: Path, by_seed: dict[int, str]) -> dict:
    """The environment of a tune.py subprocess whose trials fail on purpose (see fault_plugin/)."""
    markers = folder / "fault_markers"
    markers.mkdir(parents=True, exist_ok=True)
    spec = folder / "faults.json"
    spec.write_text(json.dumps({"markers": str(markers), "by_seed": {str(k): v for k, v in by_seed.items()}}))
    env = cli_env(DISPARSE_TEST_FAULTS=str(spec))
    env["PYTHONPATH"] = os.pathsep.join([str(FAULT_PLUGIN), env["PYTHONPATH"]])
    return env


def attempts(folder: Path, seed: int) -> int:
    path = folder / "fault_markers" / f"seed{seed}.attempts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_cli(args, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TUNE_PY), *map(str, args)], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def popen_cli(args, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """tune.py in its own process group (so a test can kill the driver and everything it started)."""
    return subprocess.Popen([sys.executable, str(TUNE_PY), *map(str, args)], cwd=cwd, env=env or cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


# --- readers -----------------------------------------------------------------------------------------

def load_study(results_dir: Path, sweep_id: str):
    from sweeps.run import load_sweep_study

    return load_sweep_study(results_dir, sweep_id)


def study_keys(results_dir: Path, sweep_id: str, state: str = "COMPLETE") -> set:
    """Trial keys with a trial in ``state`` (empty while the study does not exist yet)."""
    if not (Path(results_dir) / "optuna.journal").exists():
        return set()
    try:
        study = load_study(results_dir, sweep_id)
    except Exception:  # created but not written yet
        return set()
    return {t.user_attrs.get("trial_key") for t in study.trials if t.state.name == state}


def latest_by_key(study) -> dict:
    latest = {}
    for t in sorted(study.trials, key=lambda t: t.number):
        latest[t.user_attrs["trial_key"]] = t
    return latest


def mlflow_runs(tracking_uri: str, role: str, sweep_id: str | None = None,
                experiment: str = "disparse-tune") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    where = f"tags.`disparse.role` = '{role}'"
    if sweep_id is not None:
        where += f" and tags.`disparse.sweep_id` = '{sweep_id}'"
    return client.search_runs([exp.experiment_id], filter_string=where, max_results=1000)


def ray_trial_states(results_dir: Path) -> dict[str, str]:
    """``{trial key: Ray Tune status}`` (TERMINATED / ERROR / ...) from every run's experiment state,
    the last run winning (a resumed sweep writes ray/run-2, ...)."""
    states: dict[str, str] = {}
    runs = sorted((Path(results_dir) / "ray").glob("run-*"), key=lambda p: int(p.name.split("-")[1]))
    for run in runs:
        files = sorted(run.glob("experiment_state-*.json"))
        if not files:
            continue
        data = json.loads(files[-1].read_text())
        for entry in data.get("trial_data", []):
            trial = json.loads(entry[0]) if isinstance(entry, list) else entry
            config = trial.get("config") or {}
            if isinstance(config, str):
                continue
            key = config.get("trial_key") or trial.get("trial_id")
            states[key] = trial.get("status")
    return states


def result_rows(results_dir: Path) -> list[dict]:
    """Every result Ray Tune wrote (``ray/run-*/<trial>/result.json``, one JSON object a line)."""
    rows = []
    for path in Path(results_dir).glob("ray/run-*/*/result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def listing(folder: Path) -> list[str]:
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- processes and sockets (from /proc: no psutil on this machine) ------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def process_tree(root: int) -> set[int]:
    """``root`` and every live descendant."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[int(entry.name)] = st[1]
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in tree and p not in tree}
        tree |= new
        grew = bool(new)
    return {p for p in tree if p in parents or p == root}


def alive(pids) -> list[int]:
    """The processes of ``pids`` still running (zombies count as gone)."""
    out = []
    for pid in pids:
        st = _stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            out.append(pid)
    return out


def _listen_inodes() -> dict[str, str]:
    """``{socket inode: local IP}`` of every listening TCP socket (IPv4 and IPv6)."""
    import ipaddress

    found = {}
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A":                 # TCP_LISTEN
                continue
            hex_ip = parts[1].split(":")[0]
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = str(ipaddress.IPv4Address(raw[::-1]))
            else:                                # four little-endian 32-bit words
                addr = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                ip = str(addr.ipv4_mapped or addr)
            found[parts[9]] = ip
    return found


def listening_ips(pids) -> set[str]:
    """Local addresses of the TCP sockets that any of ``pids`` listens on."""
    inodes = _listen_inodes()
    ips = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                ips.add(inodes[target[8:-1]])
    return ips
