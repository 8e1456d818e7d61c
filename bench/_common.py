"""Shared helpers of the issue-5 benchmarks: machine description, interleaved timing, JSON output.

Timing rule (bench/RESULTS.md): the things compared are timed in the same process, interleaved round by
round (order reversed every other round), and summarised by medians, so that load from other processes
hits every series alike. Wall time and this process's CPU time are both kept; on a loaded CPU the CPU
time is the steadier of the two.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, cores, load, Python/torch versions and, when CUDA is up, the GPU's name and memory."""
    info: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                  "platform": platform.platform()}
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
            info["cuda"] = torch.version.cuda
        else:
            info["gpu"] = None
    except ImportError:
        info["torch"] = None
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    for mod in ("ray", "optuna", "mlflow"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    return info


def sync(device) -> None:
    if str(device).startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def interleaved(jobs: Mapping[str, Callable[[], object]], rounds: int, device="cpu") -> dict:
    """Run every job once per round, order reversed on odd rounds; returns
    ``{name: {"wall": [...], "cpu": [...]}}`` in seconds."""
    names = list(jobs)
    out = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(rounds):
        for name in (reversed(names) if r % 2 else names):
            sync(device)
            w0, c0 = time.perf_counter(), time.process_time()
            jobs[name]()
            sync(device)
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["cpu"].append(time.process_time() - c0)
    return out


def medians(series: dict) -> dict:
    """``{name: {"wall": median, "cpu": median, "wall_iqr": [q1, q3]}}``."""
    out = {}
    for name, s in series.items():
        w = sorted(s["wall"])
        q = statistics.quantiles(w, n=4) if len(w) >= 4 else [w[0], w[-1]]
        out[name] = {"wall": statistics.median(w), "cpu": statistics.median(s["cpu"]),
                     "wall_iqr": [q[0], q[-1]]}
    return out


def ratio(med: dict, a: str, b: str) -> dict:
    return {k: med[a][k] / med[b][k] if med[b][k] > 0 else float("nan") for k in ("wall", "cpu")}


def write_result(name: str, result: dict, out: str | os.PathLike | None = None) -> Path:
    """Write ``result`` (with date and machine added) to ``out`` or bench/results/<name>.json."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"benchmark": name, "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine_info(), **result}
    path.write_text(json.dumps(full, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj):
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


class fresh_local_ray:
    """Context manager for the benchmarks that start Ray: loopback environment, and ``RAY_ADDRESS=local``
    while inside (restored after), so that ``ray.init()`` without an address starts a fresh local Ray.

    Without it ``ray.init()`` joins whatever Ray another process on this machine started last
    (/tmp/ray/ray_current_cluster) and then refuses ``num_cpus`` ("When connecting to an existing
    cluster, num_cpus and num_gpus must not be provided"): ``sweeps.ray.connect`` fails whenever
    another Ray runs here (reported to the lead; the fix is ``ray.init(address="local", ...)``).
    """

    def __enter__(self):
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
        self._saved = os.environ.get("RAY_ADDRESS")
        if self._saved is None:
            os.environ["RAY_ADDRESS"] = "local"
        return self

    def __exit__(self, *exc):
        if self._saved is None:
            os.environ.pop("RAY_ADDRESS", None)
        return False
