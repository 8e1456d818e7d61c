"""Shared test set-up: keep Ray on loopback, and one Ray session for the tests that need one.

The environment is set at import, before any test module imports Ray or MLflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _name, _value in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_name, _value)

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # Ray workers inherit the driver's sys.path
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray on 127.0.0.1 with 2 CPUs, shared by every test of the session that asks for it."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
