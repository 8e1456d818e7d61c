"""The browser tests' set-up: one headless Chromium, one tiny real sweep and one ``mlflow ui`` over its
store, each shared by the browser tests and released when they end (package scope).

The browser is Debian's ``chromium`` (``.ci/run`` installs it), driven over the DevTools protocol by
``scripts/headless_chromium.py``, the driver the screenshot script uses too. Where no browser can start,
the tests are skipped with the line that installs one (pytest's ``-ra`` summary shows it); under CI
(``CI=true``) they fail instead, so a CI machine without a browser cannot pass them by skipping.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The driver lives with the screenshot script; the tiny space and MLflow readers with the sweep tests.
for _folder in (REPO_ROOT / "scripts", REPO_ROOT / "tests" / "sweeps"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from headless_chromium import INSTALL_HINT, Browser, BrowserUnavailable, MlflowUI, free_port  # noqa: E402

WIDTH, HEIGHT = 1280, 800         # the window the issue asks the pages to fit


def no_browser(reason: str):
    """Skip (fail under ``CI=true``), naming the reason and the line that installs a browser."""
    message = f"{reason} (install: {INSTALL_HINT})" if INSTALL_HINT not in reason else reason
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no browser: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="package")
def browser(tmp_path_factory):
    """A headless Chromium page, 1280 x 800; each test opens the page it needs."""
    try:
        page = Browser(tmp_path_factory.mktemp("chromium-profile"), WIDTH, HEIGHT)
    except BrowserUnavailable as exc:
        no_browser(str(exc))
    try:
        yield page
    finally:
        page.close()


@dataclass
class Sweep:
    """A finished tiny sweep, as the MLflow client reads it back."""
    tracking_uri: str
    sweep_id: str
    printed: str                 # what run_sweep printed (the links among it)
    client: object               # MlflowClient
    experiment_id: str
    parent: object               # the sweep's run
    trials: list                 # its trial runs
    ui: MlflowUI                 # started on its store (the mlflow_ui fixture waits for it)


@pytest.fixture(scope="package")
def sweep(browser, ray_local, tmp_path_factory) -> Sweep:
    """Four trials of the tiny space (real Ray, Optuna, MLflow sqlite, run_trial; ~30 s on 2 cores).
    Asks for the browser first, so that a machine without one skips before training anything. The
    ``mlflow ui`` of :func:`mlflow_ui` starts on the new store while the sweep trains (its start takes
    15-35 s here); it is stopped when the browser tests end."""
    from mlflow.tracking import MlflowClient
    from sweep_helpers import sqlite_uri, sweep_run, trial_runs, write_space
    from sweeps.run import RunOptions, make_plan, run_sweep

    folder = tmp_path_factory.mktemp("browser-sweep")
    uri = sqlite_uri(folder / "mlflow.db")
    MlflowClient(uri).search_experiments()          # the store, created and migrated before the UI reads it
    ui = MlflowUI(uri, free_port(), folder / "mlflow-ui.log")
    try:
        plan = make_plan(RunOptions(space=str(write_space(folder)), results_dir=str(folder / "results"),
                                    tracking_uri=uri))
        out = io.StringIO()
        try:
            summary = run_sweep(plan, out=out)
        finally:
            print(out.getvalue())
        assert not summary.interrupted and summary.states == {"COMPLETE": 4}, out.getvalue()
        client, parent = sweep_run(plan.tracking_uri, plan.sweep_id)
        yield Sweep(plan.tracking_uri, plan.sweep_id, out.getvalue(), client, parent.info.experiment_id,
                    parent, trial_runs(plan.tracking_uri, plan.sweep_id), ui)
    finally:
        ui.stop()


@pytest.fixture(scope="package")
def mlflow_ui(sweep):
    """``mlflow ui`` on 127.0.0.1 (a free port) over the sweep's store, once it answers."""
    sweep.ui.wait()
    return sweep.ui
