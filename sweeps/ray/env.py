"""The environment a local Ray is started in: set by :mod:`sweeps.ray` before Ray is imported. Ray-free."""

from __future__ import annotations

import os

__all__ = ["LOOPBACK_ENV", "set_loopback_env"]

#: Keeps a local Ray on 127.0.0.1, no auth prompt, no usage stats, no MLflow telemetry.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def set_loopback_env() -> None:
    for name, value in LOOPBACK_ENV.items():
        os.environ.setdefault(name, value)
    # Tune checks that every result carries the scheduler's metric; the one marker result a trial sends
    # before a deterministic error (sweeps.ray.trainable.FATAL) carries none on purpose.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
