"""Reading sweeps back from MLflow: :func:`load_sweep`, :func:`load_trials`, :func:`load_baseline_for`,
:func:`list_artifacts`. Every answer is built from what the store holds, so queries work long after the
sweep and after a resume; a missing store, experiment or sweep is a one-line :class:`UserInputError`.

Private to :mod:`sweeps.tracking`, which re-exports the public names.
"""

from __future__ import annotations

import math

from typing import Any, Mapping, Sequence

from ..errors import UserInputError
from .store import (DEFAULT_EXPERIMENT, TAG_BASELINE_KEY, TAG_BASELINE_RUN, TAG_EARLY_STOPPED, TAG_FAILURE,
                    TAG_NOT_FINITE, TAG_OPTUNA_NUMBER, TAG_PARETO, TAG_RETRIES, TAG_ROLE, TAG_SWEEP_ID, TAG_TRIAL_KEY,
                    QuickHttp, open_client, quote_value, sweep_tag, search_all_runs, store_error, validate_tracking_uri)
from .values import NOT_METRICS, baseline_key, read_name, unflatten_params


def run_record(run) -> dict[str, Any]:
    tags = run.data.tags
    params = dict(run.data.params)
    number = tags.get(TAG_OPTUNA_NUMBER)
    return {
        "run_id": run.info.run_id,
        "trial_key": tags.get(TAG_TRIAL_KEY),
        "sweep_id": tags.get(TAG_SWEEP_ID),
        "status": run.info.status,
        "early_stopped": tags.get(TAG_EARLY_STOPPED) == "true",
        "pareto": tags.get(TAG_PARETO) == "true",
        "failure": tags.get(TAG_FAILURE),
        "optuna_number": int(number) if number and number.lstrip("-").isdigit() else None,
        "retries": int(tags.get(TAG_RETRIES, "0")) if tags.get(TAG_RETRIES, "0").isdigit() else 0,
        "params": params,
        "config": unflatten_params(params),
        "metrics": _final_metrics(run.data.metrics, tags.get(TAG_NOT_FINITE)),
        "run_name": run.info.run_name,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "artifact_uri": run.info.artifact_uri,
    }


def _final_metrics(latest: Mapping[str, float], not_finite: str | None) -> dict[str, float]:
    """The run's metrics as it ended: MLflow's latest value of each key, except those whose final value
    was NaN/inf (not logged, so MLflow would show an earlier evaluation's value): NaN."""
    out = {read_name(k): v for k, v in latest.items() if k not in NOT_METRICS}
    for key in filter(None, (not_finite or "").split(",")):
        out[key] = math.nan
    return out


def _open_for_reading(tracking_uri: str | None, experiment: str | None):
    uri = validate_tracking_uri(tracking_uri, create=False)
    client = open_client(uri)
    name = experiment or DEFAULT_EXPERIMENT
    try:
        with QuickHttp(uri):  # an unreachable server: one quick failure, not minutes of retries
            exp = client.get_experiment_by_name(name)
    except Exception as exc:
        raise store_error(uri, exc) from None
    if exp is None or exp.lifecycle_stage != "active":
        try:
            with QuickHttp(uri):
                names = sorted(e.name for e in client.search_experiments())
        except Exception:
            names = []
        raise UserInputError(f"experiment {name!r} not found in {uri!r}; expected one of "
                             f"{names or '(none)'}")
    return uri, client, exp


def _sweep_runs(client, experiment_id: str) -> list:
    return search_all_runs(client, experiment_id, f"tags.`{TAG_ROLE}` = 'sweep'",
                           order_by=["attributes.start_time DESC"])


def load_sweep(tracking_uri: str | None, experiment: str | None = None,
               sweep_id: str | None = None) -> dict[str, Any]:
    """The sweep run as a record (plus ``tags`` and ``experiment_id``): the latest sweep when
    ``sweep_id`` is None. Raises :class:`UserInputError` when the experiment or the sweep is unknown."""
    uri, client, exp = _open_for_reading(tracking_uri, experiment)
    sweeps = _sweep_runs(client, exp.experiment_id)
    if sweep_id is not None:
        sweeps = [r for r in sweeps if r.data.tags.get(TAG_SWEEP_ID) == sweep_id]
    if not sweeps:
        known = sorted({r.data.tags.get(TAG_SWEEP_ID, "?") for r in _sweep_runs(client, exp.experiment_id)})
        what = f"sweep {sweep_id!r}" if sweep_id else "sweep"
        raise UserInputError(f"no {what} in experiment {exp.name!r} of {uri!r}; expected one of "
                             f"{known or '(none: run a sweep first)'}")
    run = sweeps[0]
    rec = run_record(run)
    rec.update(tags=dict(run.data.tags), experiment_id=exp.experiment_id, experiment=exp.name,
               tracking_uri=uri)
    return rec


def list_artifacts(tracking_uri: str, run_id: str) -> list[str]:
    """Paths of a run's artifacts (files, recursively), relative to its artifact root."""
    client = open_client(tracking_uri)
    out, todo = [], [None]
    while todo:
        for info in client.list_artifacts(run_id, todo.pop()):
            (todo if info.is_dir else out).append(info.path)
    return sorted(out)


def load_trials(tracking_uri: str | None, experiment: str | None = None,
                sweep_id: str | None = None) -> list[dict[str, Any]]:
    """Trial records ``{run_id, trial_key, sweep_id, status, early_stopped, pareto, failure, params,
    config, metrics, ...}`` read from MLflow, ordered by start time.

    ``sweep_id=None``: the latest sweep of the experiment; ``sweep_id="all"``: every sweep's trials;
    otherwise that sweep. Every status is returned (RUNNING, FINISHED, FAILED, KILLED): filter as needed.
    Raises :class:`UserInputError` (one line) for a missing store, experiment or sweep.
    """
    uri, client, exp = _open_for_reading(tracking_uri, experiment)
    filt = f"tags.`{TAG_ROLE}` = 'trial'"
    if sweep_id != "all":
        sid = load_sweep(uri, exp.name, sweep_id)["sweep_id"]
        filt += f" and tags.`{TAG_SWEEP_ID}` = {quote_value(sid)}"
    runs = search_all_runs(client, exp.experiment_id, filt, order_by=["attributes.start_time ASC"])
    records = [run_record(r) for r in runs]
    for rec in records:
        rec["tracking_uri"] = uri
        rec["experiment_id"] = exp.experiment_id
    return records


def baseline_record(client, experiment_id: str, key: str | None = None,
                    run_id: str | None = None) -> dict[str, Any] | None:
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:
            return None
        runs = [run] if run.info.status == "FINISHED" else []
    else:
        runs = search_all_runs(client, experiment_id,
                               f"tags.`{TAG_ROLE}` = 'baseline' and tags.`{TAG_BASELINE_KEY}` = {quote_value(key)} "
                               "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    rec = run_record(runs[0])
    rec["baseline_key"] = runs[0].data.tags.get(TAG_BASELINE_KEY)
    return rec


def load_baseline_for(records: Sequence[Mapping[str, Any]], tracking_uri: str | None = None,
                      experiment: str | None = None) -> dict[str, Any] | None:
    """The dense baseline the trials of ``records`` compare to, as a record (``metrics``, ``run_id``,
    ``baseline_key``), or None.

    Looked up in order: the sweep run's ``disparse.baseline`` tag; a FINISHED baseline run whose
    key equals the trials' :func:`baseline_key` (the most common one); the ``baseline_metrics`` the
    trials were given (``run_id`` None then). The store comes from the records (``load_trials`` puts it
    there) unless given.
    """
    if not records:
        return None
    uri = tracking_uri or records[0].get("tracking_uri")
    if experiment is not None:
        uri, client, exp = _open_for_reading(uri, experiment)
        experiment_id = exp.experiment_id
    else:
        uri = validate_tracking_uri(uri, create=False)
        client = open_client(uri)
        experiment_id = records[0].get("experiment_id")
        if experiment_id is None:
            experiment_id = client.get_run(records[0]["run_id"]).info.experiment_id
    sweep_ids = [r.get("sweep_id") for r in records if r.get("sweep_id")]
    if sweep_ids:
        sid = max(set(sweep_ids), key=sweep_ids.count)
        sweeps = search_all_runs(client, experiment_id,
                                 f"tags.`{TAG_ROLE}` = 'sweep' and tags.`{TAG_SWEEP_ID}` = {quote_value(sid)}")
        for run in sweeps:
            linked = sweep_tag(run.data.tags, TAG_BASELINE_RUN)
            rec = baseline_record(client, experiment_id, run_id=linked) if linked else None
            if rec:
                return rec
    keys = [baseline_key(r.get("config") or {}) for r in records]
    for key in sorted(set(keys), key=lambda k: -keys.count(k)):
        rec = baseline_record(client, experiment_id, key=key)
        if rec:
            return rec
    for r in records:
        given = (r.get("config") or {}).get("baseline_metrics")
        if isinstance(given, Mapping) and given:
            return {"run_id": None, "baseline_key": None, "metrics": dict(given),
                    "params": {}, "config": {}}
    return None
