"""The writer: :class:`SweepTracker` puts one sweep into MLflow (see :mod:`sweeps.tracking` for the layout).

It lives in the driver process (a Ray Tune callback feeds it) and talks to MLflow through ``MlflowClient``
only, never through the fluent ``mlflow.start_run`` stack, so no run state leaks between trials. mlflow
is imported lazily (``open_client`` and the ``mlflow.entities`` imports below). A trial's mask-IoU chart is
drawn and logged by a background thread (:mod:`sweeps.tracking.artifacts`) so that Ray Tune's event loop,
which calls :meth:`SweepTracker.trial_completed`, is not held up by matplotlib. Private to
:mod:`sweeps.tracking`, which re-exports the class.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import UserInputError
from ..objectives import normalize_directions
from ..pareto import pareto_front
from .artifacts import PlotQueue
from .front import eligible_for_front, front_indices, front_summary, history_pairs, hypervolume_tags, write_front_files
from .read import baseline_record, run_record
from .store import (DEFAULT_EXPERIMENT, TAG_BASELINE_KEY, TAG_BASELINE_RUN, TAG_CODE_VERSION, TAG_EARLY_STOPPED,
                    TAG_FAILURE, TAG_NOT_FINITE, TAG_OPTUNA_NUMBER, TAG_PARENT, TAG_PARETO, TAG_ROLE, TAG_SWEEP_ID,
                    TAG_TRIAL_KEY, TAG_WATERSHED, get_or_create_experiment, open_client, quote_value, search_all_runs,
                    validate_tracking_uri)
from .values import (SWEEP_METRIC_PREFIX, code_version_text, flatten_params, not_finite_keys, one_line, spec_attr,
                     sweep_params)
from .values import code_version as _code_version     # start_sweep's argument shadows the name
from .attempts import AttemptWriter
from .report import ReportWriter, sweep_info
from .writer import RunWriter


class SweepTracker(AttemptWriter, ReportWriter, RunWriter):
    """Writes one sweep to MLflow from one process (the Ray Tune driver). Call it from one thread.

    Use as a context manager (or call :meth:`abort` in a ``finally``) so that an interrupted sweep
    leaves no run in RUNNING. The mask-IoU charts are logged by a worker thread of the tracker's own, a
    little after :meth:`trial_completed` returns; :meth:`finish_sweep`, :meth:`abort`, :meth:`flush`,
    :meth:`close` and leaving the ``with`` block wait for all of them.
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = DEFAULT_EXPERIMENT):
        self.tracking_uri = validate_tracking_uri(tracking_uri, create=True)
        self.experiment_name = experiment_name
        self.client = open_client(self.tracking_uri)
        self.experiment_id = get_or_create_experiment(self.client, self.tracking_uri, experiment_name)
        self.sweep_id: str | None = None
        self.parent_run_id: str | None = None
        self.front_csv_text: str | None = None    # the pareto_front.csv that finish_sweep logged
        self.eligible: list[dict[str, Any]] = []  # finish_sweep's fully trained trials (records)
        self._trials: dict[str, str] = {}          # trial key -> run id
        self._status: dict[str, str] = {}          # trial key -> status as we know it
        self._last_step: dict[str, int] = {}       # run id -> highest step logged in this session
        self._plots = PlotQueue(self.tracking_uri)  # mask-IoU charts, drawn and logged off this thread
        self._info: dict | None = None             # what the sweep run's description says of the sweep
        self._attempts: dict[str, list] = {}       # trial key -> retired attempts (number, reason, run id)
        self._live: set[str] = set()               # trial keys whose current run this tracker opened
        self._params: dict[str, dict] = {}          # trial key -> its config (a retry's fresh run logs it)
        self._numbers: dict[str, int] = {}          # trial key -> Optuna number of its current attempt
        self._aborting = False

    # context manager: anything left RUNNING is closed on the way out, queued charts are logged
    def __enter__(self) -> "SweepTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort(f"sweep interrupted: {exc_type.__name__}: {one_line(exc) if str(exc) else ''}")
        else:
            self.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every mask-IoU chart queued so far is logged (or its failure tagged as
        ``disparse.plot_error``). False when ``timeout`` (seconds) ran out first."""
        return self._plots.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """:meth:`flush` and stop the chart worker (a later chart starts a new one); runs are left as
        they are. Returns what :meth:`flush` returned."""
        return self._plots.close(timeout)

    # -- sweep ------------------------------------------------------------------------------------------

    def start_sweep(self, spec: Any, *, sweep_id: str, config: Mapping[str, Any] | None = None,
                    code_version: Any = None, space_path: str | os.PathLike | None = None,
                    space_text: str | None = None, sampler: str | None = None, seed: int | None = None,
                    resume: bool = False) -> str:
        """Open (or, with ``resume``, reopen) the sweep run; returns its run id.

        ``config``: the resolved sweep configuration (logged as ``config/sweep_config.json`` and
        ``.yaml``); ``trials``/``concurrency`` are read from it (or from ``spec``). A sweep id that already
        exists without ``resume`` is a :class:`UserInputError` (no duplicate sweep runs).
        """
        self.sweep_id = str(sweep_id)
        config = dict(config or {})
        existing = search_all_runs(
            self.client, self.experiment_id,
            f"tags.`{TAG_ROLE}` = 'sweep' and tags.`{TAG_SWEEP_ID}` = {quote_value(self.sweep_id)}",
            order_by=["attributes.start_time ASC"])
        if existing and not resume:
            raise UserInputError(f"sweep {self.sweep_id!r} already exists in experiment "
                                 f"{self.experiment_name!r}; expected a new sweep id or --resume")
        if existing:
            self.parent_run_id = existing[0].info.run_id
            if existing[0].info.status != "RUNNING":
                self.client.update_run(self.parent_run_id, status="RUNNING")
            if TAG_FAILURE in existing[0].data.tags:   # why it stopped last time; it runs again now
                self.client.delete_tag(self.parent_run_id, TAG_FAILURE)
            self._load_existing_trials()
            logged = set(existing[0].data.params)
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"sweep-{self.sweep_id}",
                                         tags={TAG_SWEEP_ID: self.sweep_id, TAG_ROLE: "sweep"})
            self.parent_run_id = run.info.run_id
            logged = set()
        cv = code_version if code_version is not None else _code_version()
        space_path = space_path if space_path is not None else spec_attr(spec, "path")
        if space_text is None:
            space_text = spec_attr(spec, "raw_text") or None
        params, sampler_options = sweep_params(spec, self.sweep_id, config, sampler=sampler, seed=seed,
                                               space_path=space_path)
        self._info = sweep_info(spec, self.sweep_id, config, params, space_path)
        flat = {k: v for k, v in flatten_params({k: v for k, v in params.items() if v is not None}).items()
                if k not in logged}
        tags = {TAG_CODE_VERSION: code_version_text(cv)}
        if isinstance(cv, Mapping) and cv.get("git_commit"):
            tags["mlflow.source.git.commit"] = cv["git_commit"]
        if space_path:
            tags["disparse.space_path"] = str(Path(space_path).resolve())
        if spec_attr(spec, "metric_directions"):     # custom tasks' metrics, for the query commands
            from ..objectives import TAG_METRIC_DIRECTIONS
            tags[TAG_METRIC_DIRECTIONS] = json.dumps(spec_attr(spec, "metric_directions"), sort_keys=True)
        self._log_batch(self.parent_run_id, params=flat, tags=tags)

        spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else (dict(spec) if isinstance(spec, Mapping)
                                                                     else None)
        resolved = {"sweep_id": self.sweep_id, "spec": spec_dict, "config": config,
                    "sampler": params["sampler"], "sampler_options": sampler_options, "seed": params["seed"]}
        files = {"config/sweep_config.json": json.dumps(resolved, indent=2, sort_keys=True, default=str),
                 "config/code_version.json": json.dumps(cv if isinstance(cv, Mapping) else {"version": cv},
                                                        indent=2, default=str)}
        try:
            import yaml
            files["config/sweep_config.yaml"] = yaml.safe_dump(json.loads(files["config/sweep_config.json"]),
                                                               sort_keys=True)
        except ImportError:
            pass
        if space_text is None and space_path and Path(space_path).is_file():
            space_text = Path(space_path).read_text()
        if space_text is not None:
            name = Path(space_path).name if space_path else "space.yaml"
            files[f"space/{name}"] = space_text
        self._log_texts(self.parent_run_id, files)
        self.refresh_report()                 # the description: what is swept, and the state so far
        return self.parent_run_id

    def set_baseline(self, run_id: str) -> None:
        """Record on the sweep run which dense baseline run its Δm and budgets refer to."""
        self._require_sweep()
        self.client.set_tag(self.parent_run_id, TAG_BASELINE_RUN, run_id)
        self.refresh_report()                 # the description names it

    # -- trials -----------------------------------------------------------------------------------------

    def trial_started(self, trial_key: str, params: Mapping[str, Any], *,
                      optuna_number: int | None = None) -> str:
        """The nested run of ``trial_key``'s attempt: created when the attempt starts; a FINISHED one is
        returned as is and never reopened; an unfinished one an earlier driver left (a ``--resume``
        reruns it) becomes a retired attempt and the trial gets a fresh run (:mod:`.attempts`), tagged
        with this attempt's Optuna number. ``params`` (the trial config) are flattened and logged as
        given; the ``trial_config.json`` artifact holds the config resolved (:func:`_resolved`)."""
        self._require_sweep()
        key = str(trial_key)
        run_id = self._trials.get(key)
        if run_id is not None and self._status.get(key) == "FINISHED":
            return run_id                              # finished: never reopened
        if run_id is not None and key in self._live and self._status.get(key) == "RUNNING":
            return run_id                              # this attempt's run, already open
        if run_id is not None:                         # left unfinished by an earlier driver
            self._retire_unfinished(key, run_id)
        if params:
            self._params[key] = dict(params)
        params = params or self._params.get(key, {})
        if optuna_number is None:
            optuna_number = self._numbers.get(key)
        tags = {TAG_PARENT: self.parent_run_id, TAG_SWEEP_ID: self.sweep_id, TAG_TRIAL_KEY: key,
                TAG_ROLE: "trial", **self._attempt_tags(key)}
        if optuna_number is not None:
            tags[TAG_OPTUNA_NUMBER] = str(optuna_number)
            self._numbers[key] = optuna_number
        run_id = self.client.create_run(self.experiment_id, run_name=key, tags=tags).info.run_id
        self._trials[key], self._status[key] = run_id, "RUNNING"
        self._live.add(key)
        self._adopt_attempts(key, run_id)
        self._log_batch(run_id, params=flatten_params(dict(params or {})))
        if params:
            self._log_texts(run_id, {"trial_config.json": json.dumps(_resolved(params), indent=2,
                                                                     sort_keys=True, default=str)})
        return run_id

    def trial_result(self, trial_key: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Per-evaluation metrics at ``step`` (default: ``metrics["step"]``); non-numbers are skipped."""
        run_id = self._writable_run(trial_key)
        if run_id is None:
            return
        self._log_metrics(run_id, metrics, step)

    def trial_completed(self, trial_key: str, metrics: Mapping[str, Any], *,
                        mask_iou: Mapping[str, Any] | None = None, watershed: Mapping[str, Any] | None = None,
                        early_stopped: bool = False) -> None:
        """Final metrics, the mask-IoU artifacts (``mask_iou.json``, ``mask_iou.png``), status FINISHED.
        ``early_stopped`` trials are tagged and never enter a front. ``watershed`` (the trial's
        ``{layer, cutoff, starved}``, :func:`disparse_core.iou.watershed_summary`) goes into
        ``mask_iou.json`` as ``watershed``, the tag ``disparse.watershed`` and the chart.

        Returns once the metrics, tags, ``mask_iou.json`` and the status are logged; the chart is queued
        for the worker thread (see :meth:`flush`). A chart that cannot be drawn or logged never raises: it
        becomes the run's ``disparse.plot_error`` tag."""
        key = str(trial_key)
        run_id = self._writable_run(key)
        if run_id is None:
            return
        metrics = dict(metrics)
        mask_iou = mask_iou if mask_iou is not None else metrics.pop("mask_iou", None)
        self._log_metrics(run_id, metrics, None)
        not_finite = not_finite_keys(metrics)
        if not_finite:    # MLflow keeps no NaN final value: readers must not take an earlier one for it
            self.client.set_tag(run_id, TAG_NOT_FINITE, ",".join(not_finite))
        self.client.set_tag(run_id, TAG_EARLY_STOPPED, "true" if early_stopped else "false")
        watershed = watershed if watershed is not None else metrics.pop("watershed", None)
        if isinstance(mask_iou, Mapping) and mask_iou:
            layers = json.loads(json.dumps(mask_iou, default=float))   # plain floats, layer order
            shed = dict(watershed) if isinstance(watershed, Mapping) else None
            payload = layers if shed is None else {**layers, "watershed": shed}
            self._log_texts(run_id, {"mask_iou.json": json.dumps(payload, indent=2, sort_keys=True,
                                                                 default=float)})
            if shed is not None and shed.get("layer"):
                self.client.set_tag(run_id, TAG_WATERSHED, str(shed["layer"]))
            self._plots.submit(run_id, layers, key, shed)
        self.client.set_terminated(run_id, "FINISHED")
        self._status[key] = "FINISHED"
        self.refresh_report()

    def trial_failed(self, trial_key: str, reason: Any) -> None:
        """Status FAILED with a one-line ``disparse.failure`` tag."""
        key = str(trial_key)
        run_id = self._writable_run(key)
        if run_id is None:
            return
        self.client.set_tag(run_id, TAG_FAILURE, one_line(reason))
        self.client.set_terminated(run_id, "FAILED")
        self._status[key] = "FAILED"
        if not self._aborting:
            self.refresh_report()

    def abort(self, reason: str = "sweep interrupted") -> None:
        """Close every run this tracker left RUNNING (trials FAILED with the reason, the sweep KILLED),
        then wait for the queued mask-IoU charts (the runs first: a second Ctrl+C stops only the wait)."""
        self._aborting = True
        for key, status in list(self._status.items()):
            if status == "RUNNING":
                try:
                    self.trial_failed(key, reason)
                except Exception:
                    pass
        if self.parent_run_id:
            try:
                self.refresh_report("interrupted (resume it: see Next)")
            except Exception:
                pass
            try:
                if self.client.get_run(self.parent_run_id).info.status == "RUNNING":
                    self.client.set_tag(self.parent_run_id, TAG_FAILURE, one_line(reason))
                    self.client.set_terminated(self.parent_run_id, "KILLED")
            except Exception:
                pass
        self._plots.close_on_abort()

    # -- end of sweep --------------------------------------------------------------------------------------

    def finish_sweep(self, *, objectives: Sequence[str], directions: Any = None,
                     reference_point: Sequence[float] | None = None,
                     hypervolume_history: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """Compute the front from the sweep's trials as stored in MLflow, log it, close the sweep run.

        Eligible: FINISHED, not early-stopped, every objective finite. ``directions``: a list parallel to
        ``objectives`` or a dict (``maximize``/``minimize``); default from the metric names.
        ``hypervolume_history``: floats (step = position) or ``(step, value)`` pairs. Returns the front
        records (as :func:`load_trials` gives them), sorted by the first objective, best first.
        """
        self._require_sweep()
        self.close()                # every trial's chart is in before the sweep run is closed
        objectives = [str(o) for o in objectives]
        dirs = normalize_directions(objectives, directions)
        records = [run_record(r) for r in self._sweep_trial_runs()]
        eligible = self.eligible = eligible_for_front(records, objectives)
        points = [[r["metrics"][o] for o in objectives] for r in eligible]
        front_idx = front_indices(pareto_front, points, dirs) if points else []
        front = [eligible[i] for i in front_idx]
        sign = 1.0 if dirs[0] == "maximize" else -1.0
        front.sort(key=lambda r: -sign * r["metrics"][objectives[0]])
        front_ids = {r["run_id"] for r in front}
        self._tag_front(records, front_ids)

        history, hv_tags = hypervolume_tags(eligible, points, front_idx, dirs, reference_point,
                                            history_pairs(hypervolume_history))
        counts, summary_tags = front_summary(records, eligible, front, objectives, dirs)
        summary_tags.update(hv_tags)
        self._log_batch(self.parent_run_id, tags=summary_tags)
        self._log_metrics(self.parent_run_id, counts, 0)
        if history:
            from mlflow.entities import Metric
            now = int(time.time() * 1000)
            self._log_metric_objects(self.parent_run_id,
                                     [Metric(f"{SWEEP_METRIC_PREFIX}hypervolume", v, now, int(s))
                                      for s, v in history])

        with tempfile.TemporaryDirectory() as tmp:
            plot_tags = write_front_files(Path(tmp), front, eligible, front_ids, objectives, dirs, history,
                                          title=f"Pareto front of sweep {self.sweep_id}")
            for path in sorted(Path(tmp).iterdir()):
                self.client.log_artifact(self.parent_run_id, str(path))
            self.front_csv_text = (Path(tmp) / "pareto_front.csv").read_text()   # the results folder's copy
            self._log_batch(self.parent_run_id, tags=plot_tags)
        if self._info is not None:
            hv = hv_tags.get("disparse.hypervolume")
            self._info["hypervolume"] = float(hv) if hv else None
        self.refresh_report("finished")
        self.client.set_terminated(self.parent_run_id, "FINISHED")
        return front

    # -- baseline ------------------------------------------------------------------------------------------

    def find_baseline(self, baseline_key: str) -> dict[str, float] | None:
        """Metrics of the latest FINISHED dense baseline run with this key in the experiment, or None."""
        rec = baseline_record(self.client, self.experiment_id, key=str(baseline_key))
        return rec["metrics"] if rec else None

    def find_baseline_run(self, baseline_key: str) -> dict[str, Any] | None:
        """Like :meth:`find_baseline` but the whole record (``run_id``, ``metrics``, ``config``...)."""
        return baseline_record(self.client, self.experiment_id, key=str(baseline_key))

    def log_baseline(self, baseline_key: str, config: Mapping[str, Any], metrics: Mapping[str, Any], *,
                     started_ms: int | None = None) -> str:
        """A FINISHED baseline run (not nested: every sweep of the experiment may reuse it). ``started_ms``:
        when its training began (epoch ms), so that the run's duration is the training's."""
        tags = {TAG_ROLE: "baseline", TAG_BASELINE_KEY: str(baseline_key)}
        if self.sweep_id:
            tags["disparse.created_by_sweep"] = self.sweep_id
        run_id = self.client.create_run(self.experiment_id, run_name=f"baseline-{baseline_key}",
                                        start_time=started_ms, tags=tags).info.run_id
        try:
            self._log_batch(run_id, params=flatten_params(dict(config)))
            self._log_metrics(run_id, {k: v for k, v in metrics.items() if k != "mask_iou"}, None)
            self._log_texts(run_id, {"trial_config.json": json.dumps(dict(config), indent=2,
                                                                     sort_keys=True, default=str)})
        except Exception as exc:
            self.client.set_tag(run_id, TAG_FAILURE, one_line(exc))
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
        if self.parent_run_id:
            self.set_baseline(run_id)
        return run_id

    # -- internals -----------------------------------------------------------------------------------------

    def _require_sweep(self) -> None:
        if self.parent_run_id is None:
            raise RuntimeError("SweepTracker: call start_sweep() first")

    def _sweep_trial_runs(self) -> list:
        return search_all_runs(self.client, self.experiment_id,
                               f"tags.`{TAG_ROLE}` = 'trial' and tags.`{TAG_SWEEP_ID}` = {quote_value(self.sweep_id)}",
                               order_by=["attributes.start_time ASC"])

    def _load_existing_trials(self) -> None:
        self._load_attempts()
        for run in self._sweep_trial_runs():
            key = run.data.tags.get(TAG_TRIAL_KEY)
            if key is None or key in self._trials:
                continue
            self._trials[key] = run.info.run_id
            self._status[key] = run.info.status

    def _writable_run(self, trial_key: str) -> str | None:
        key = str(trial_key)
        if self._status.get(key) == "FINISHED":        # finished (now or before a resume): read-only
            return None
        if key not in self._trials:
            self.trial_started(key, {})
        return self._trials[key]


def _resolved(config: Mapping[str, Any]) -> dict:
    """The trial config with every setting it runs with (``disparse_core.config.resolved_config``:
    the defaults of this code version written out), so that the logged file alone reruns the trial; a
    config the core cannot resolve is returned as given (the trial will report its error)."""
    try:
        from disparse_core.config import resolved_config

        return resolved_config(config)
    except Exception:  # noqa: BLE001 - logging the config must not depend on it being valid
        return dict(config)
