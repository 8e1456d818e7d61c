"""MLflow tracking for sweeps: the only package that imports mlflow.

One writer: a :class:`SweepTracker` lives in the driver process (a Ray Tune callback feeds it) and talks to
MLflow through ``MlflowClient`` only, never through the fluent ``mlflow.start_run`` stack, so no run state
leaks between trials. Layout in one experiment:

- a **sweep** run per sweep (tags ``disparse.sweep_id``, ``disparse.role=sweep``): sampler, seed, trials,
  concurrency, objectives and budgets as params; the space file, the resolved config and the code version
  as artifacts; after :meth:`SweepTracker.finish_sweep` the front (CSV, PNG, HTML) and the hypervolume.
- a nested **trial** run per trial key (``mlflow.parentRunId`` = the sweep run, ``disparse.trial_key``,
  ``disparse.role=trial``): the flattened trial config as params, metrics with their step, the mask-IoU
  artifacts; ``disparse.early_stopped``, ``disparse.failure``, ``disparse.pareto`` and (a chart that could
  not be drawn) ``disparse.plot_error`` tags. ``mask_iou.png`` is drawn and logged by a background thread
  of the tracker, so it lands shortly after the run is FINISHED; :meth:`SweepTracker.flush`,
  ``finish_sweep`` and ``abort`` wait for it.
- **baseline** runs (``disparse.role=baseline``, ``disparse.baseline_key``): dense runs shared by every
  sweep of the experiment whose training settings hash to the same key (:func:`baseline_key`).

Everything the query commands need is read back from MLflow (:func:`load_trials`), so answers work long
after the sweep and after a resume.

The modules: ``store`` (URI validation, opening the store, tag names; mlflow is imported there, lazily,
on first use), ``values`` (params, metric values, baseline key, code version), ``writer`` (batched low-level
writes), ``tracker`` (:class:`SweepTracker`), ``artifacts`` (the tracker's chart worker thread), ``read``
(readers), ``front`` (eligibility, front indices, hypervolume, the front's files) and ``links`` (the
``mlflow ui`` command and the UI's page addresses). This package's
``__init__`` is their public face.
"""

from __future__ import annotations

from ..objectives import normalize_directions
from .front import eligible_for_front, front_csv, front_indices
from .links import (UI_HOST, UI_PORT, artifact_route, dashboard_command, experiment_route, experiment_url,
                    mlflow_ui_command, run_route, run_url, runs_filter_route, ui_base)
from .read import list_artifacts, load_baseline_for, load_sweep, load_trials
from .store import (DEFAULT_EXPERIMENT, TAG_BASELINE_KEY, TAG_BASELINE_RUN, TAG_CODE_VERSION, TAG_EARLY_STOPPED,
                    TAG_FAILURE, TAG_HV_REFERENCE, TAG_OPTUNA_NUMBER, TAG_PARENT, TAG_PARETO, TAG_ROLE, TAG_SWEEP_ID,
                    TAG_TRIAL_KEY, sweep_tag,
                    default_tracking_uri, probe_http_store, validate_tracking_uri)
from .tracker import SweepTracker
from .values import (BASELINE_FIELDS, baseline_key, clip_sentences, code_version, flatten_params, sanitize_name,
                     unflatten_params)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "SweepTracker",
    "default_tracking_uri",
    "validate_tracking_uri",
    "probe_http_store",
    "baseline_key",
    "BASELINE_FIELDS",
    "code_version",
    "flatten_params",
    "unflatten_params",
    "clip_sentences",
    "sanitize_name",
    "load_trials",
    "load_sweep",
    "load_baseline_for",
    "list_artifacts",
    "eligible_for_front",
    "front_indices",
    "front_csv",
    "normalize_directions",
    "UI_HOST", "UI_PORT", "ui_base", "experiment_route", "run_route", "artifact_route", "experiment_url",
    "run_url", "runs_filter_route", "mlflow_ui_command", "dashboard_command",
    "TAG_SWEEP_ID", "TAG_ROLE", "TAG_TRIAL_KEY", "TAG_EARLY_STOPPED", "TAG_FAILURE", "TAG_PARETO",
    "TAG_BASELINE_KEY", "TAG_BASELINE_RUN", "TAG_OPTUNA_NUMBER", "TAG_PARENT", "TAG_CODE_VERSION",
    "TAG_HV_REFERENCE", "sweep_tag",
]
