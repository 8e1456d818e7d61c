"""Where a sweep is in MLflow's UI: the ``mlflow ui`` command the sweep prints and the page addresses it
prints beside it. Pure string functions (no mlflow import), so the CLI, the run descriptions and the
browser tests build every address the same way.

Checked against the UI of MLflow 3.17.2 (its JS bundle, ``mlflow/server/js/build``):

* pages are hash routes: ``/#/experiments/<id>`` (the experiment) and ``/#/experiments/<id>/runs/<run>``
  (a run);
* the experiment page opens in the GenAI view (a trace dashboard) unless the query parameter
  ``workflowType=machine_learning`` says otherwise (or the browser remembers an earlier choice: the
  ``mlflow.workflowType`` local-storage key); the experiment tag ``mlflow.experimentKind`` does not
  change that, so every address here carries the parameter;
* the runs table reads ``searchFilter``, ``orderByKey`` and ``orderByAsc`` from an address of the form
  ``#/experiments/<id>/runs?...`` (``#/experiments/<id>?...`` redirects there and drops them); it nests
  child runs under their parent (collapsed) unless the table is sorted by something other than the start
  time, so a filter that matches trials shows them as rows only when sorted by, e.g., a metric
  (:func:`runs_filter_route` sorts by ``compression``);
* a link inside a run's description (markdown) may be relative: ``#/experiments/<id>/runs/<run>``
  resolves against whatever host and port the UI is served on (:func:`run_route`).
"""

from __future__ import annotations

import shlex
from urllib.parse import quote, urlencode

__all__ = ["UI_HOST", "UI_PORT", "DASHBOARD_PORT", "ui_base", "experiment_route", "run_route",
           "artifact_route", "runs_filter_route", "experiment_url", "run_url", "mlflow_ui_command",
           "dashboard_command"]

UI_HOST = "127.0.0.1"     # the UI has no login: loopback only (tunnel to look from elsewhere)
UI_PORT = 5000
DASHBOARD_PORT = 8080
_TRAINING_VIEW = "workflowType=machine_learning"


def ui_base(host: str = UI_HOST, port: int = UI_PORT) -> str:
    """``http://127.0.0.1:5000``: where the printed ``mlflow ui`` command serves the UI."""
    return f"http://{host}:{int(port)}"


def experiment_route(experiment_id: str) -> str:
    """The runs table of an experiment in the training view, as a hash route."""
    return f"#/experiments/{quote(str(experiment_id), safe='')}?{_TRAINING_VIEW}"


def run_route(experiment_id: str, run_id: str) -> str:
    """A run's page (Overview: description, parameters, metrics, tags), as a hash route."""
    return (f"#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}"
            f"?{_TRAINING_VIEW}")


def artifact_route(experiment_id: str, run_id: str, path: str) -> str:
    """A run's *Artifacts* tab opened on ``path`` (e.g. ``pareto_front.html``), as a hash route."""
    return (f"#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}"
            f"/artifacts/{quote(str(path))}?{_TRAINING_VIEW}")


def runs_filter_route(experiment_id: str, search_filter: str, order_by: str = "metrics.`compression`",
                      ascending: bool = False) -> str:
    """The runs table with ``search_filter`` applied, sorted by ``order_by`` (not the start time, so the
    matching trials are rows of their own rather than hidden under their collapsed sweep), as a hash route."""
    query = urlencode({"workflowType": "machine_learning", "searchFilter": search_filter, "orderByKey": order_by,
                       "orderByAsc": "true" if ascending else "false"}, quote_via=quote)
    return f"#/experiments/{quote(str(experiment_id), safe='')}/runs?{query}"


def experiment_url(experiment_id: str, host: str = UI_HOST, port: int = UI_PORT) -> str:
    """``http://127.0.0.1:5000/#/experiments/<id>?workflowType=machine_learning``."""
    return f"{ui_base(host, port)}/{experiment_route(experiment_id)}"


def run_url(experiment_id: str, run_id: str, host: str = UI_HOST, port: int = UI_PORT) -> str:
    """``http://127.0.0.1:5000/#/experiments/<id>/runs/<run id>?workflowType=machine_learning``."""
    return f"{ui_base(host, port)}/{run_route(experiment_id, run_id)}"


def mlflow_ui_command(tracking_uri: str, host: str = UI_HOST, port: int = UI_PORT) -> str:
    """The shell command that serves MLflow's UI for this store on loopback, telemetry off (these
    machines are often offline, and a sweep's store is nobody else's business)."""
    return (f"MLFLOW_DISABLE_TELEMETRY=true mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} "
            f"--host {host} --port {int(port)} --workers 1")


def dashboard_command(study_path: str, host: str = UI_HOST, port: int = DASHBOARD_PORT) -> str:
    """The shell command that serves optuna-dashboard (the ``dashboard`` extra) over the sweep's study
    file: a live Pareto front and optimisation history, objectives by name."""
    target = str(study_path)
    if target.endswith(".db"):                       # a sweep started before the journal: sqlite
        target = "sqlite:///" + target
    return f"optuna-dashboard --host {host} --port {int(port)} {shlex.quote(target)}"
