"""MLflow tracking for sweeps: the only module that imports mlflow.

One writer: a :class:`SweepTracker` lives in the driver process (a Ray Tune callback feeds it) and talks to
MLflow through ``MlflowClient`` only, never through the fluent ``mlflow.start_run`` stack, so no run state
leaks between trials. Layout in one experiment:

- a **sweep** run per sweep (tags ``disparse.sweep_id``, ``disparse.role=sweep``): sampler, seed, trials,
  concurrency, objectives and budgets as params; the space file, the resolved config and the code version
  as artifacts; after :meth:`SweepTracker.finish_sweep` the front (CSV, PNG, HTML) and the hypervolume.
- a nested **trial** run per trial key (``mlflow.parentRunId`` = the sweep run, ``disparse.trial_key``,
  ``disparse.role=trial``): the flattened trial config as params, metrics with their step, the mask-IoU
  artifacts; ``disparse.early_stopped``, ``disparse.failure`` and ``disparse.pareto`` tags.
- **baseline** runs (``disparse.role=baseline``, ``disparse.baseline_key``): dense runs shared by every
  sweep of the experiment whose training settings hash to the same key (:func:`baseline_key`).

Everything the query commands need is read back from MLflow (:func:`load_trials`), so answers work long
after the sweep and after a resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlparse

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from .errors import UserInputError  # noqa: E402

__all__ = [
    "DEFAULT_EXPERIMENT",
    "SweepTracker",
    "default_tracking_uri",
    "validate_tracking_uri",
    "baseline_key",
    "code_version",
    "flatten_params",
    "load_trials",
    "load_sweep",
    "load_baseline_for",
    "list_artifacts",
    "TAG_SWEEP_ID", "TAG_ROLE", "TAG_TRIAL_KEY", "TAG_EARLY_STOPPED", "TAG_FAILURE", "TAG_PARETO",
    "TAG_BASELINE_KEY", "TAG_BASELINE_RUN", "TAG_OPTUNA_NUMBER", "TAG_PARENT",
]

DEFAULT_EXPERIMENT = "disparse-tune"

TAG_PARENT = "mlflow.parentRunId"
TAG_SWEEP_ID = "disparse.sweep_id"
TAG_ROLE = "disparse.role"                  # sweep | trial | baseline
TAG_TRIAL_KEY = "disparse.trial_key"
TAG_OPTUNA_NUMBER = "disparse.optuna_number"
TAG_EARLY_STOPPED = "disparse.early_stopped"
TAG_FAILURE = "disparse.failure"
TAG_PARETO = "disparse.pareto"
TAG_BASELINE_KEY = "disparse.baseline_key"
TAG_BASELINE_RUN = "disparse.baseline_run_id"   # on a sweep run: the dense run its Δm refers to
TAG_CODE_VERSION = "disparse.code_version"

# MLflow limits (mlflow.utils.validation); repeated here so nothing private is imported.
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

_TERMINAL = ("FINISHED", "FAILED", "KILLED")

# Trial-config fields that change what a *dense* model learns (and so its metrics). Everything else in a
# trial config (method, criterion, sparsity, gradual, dynamic, score_batches, pretrain_steps, finetune_lr,
# checkpoints, device, threads, eval cadence, baseline_metrics) only matters to sparsification or to
# bookkeeping. ``cutoff`` is here: it changes the dense architecture (where task branches split).
BASELINE_FIELDS = (
    "workload", "data_root", "image_size", "train_size", "test_size", "tasks",
    "arch", "width", "cutoff", "loss_weights",
    "steps", "batch_size", "lr", "weight_decay", "optimizer", "lr_step", "lr_gamma",
    "eval_batches", "bf16", "seed",
)


# --- store location -------------------------------------------------------------------------------------

def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """``sqlite:///<absolute cwd>/mlflow.db`` (the file store is unusable in MLflow 3.17)."""
    return "sqlite:///" + str(Path(cwd or os.getcwd()).resolve() / "mlflow.db")


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        raise UserInputError(f"tracking URI {uri!r}: expected sqlite:///<absolute or relative path>.db")
    path = rest[3:].split("?", 1)[0]
    if path in ("", ":memory:"):
        raise UserInputError(f"tracking URI {uri!r}: an in-memory store would lose the sweep; "
                             "expected sqlite:///<path>.db")
    return Path(path)


def _probe_writable(directory: Path, uri: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".disparse-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserInputError(f"tracking URI {uri!r}: directory {str(directory)!r} cannot be created or "
                             f"written ({exc.strerror or exc}); expected a writable folder") from None


def validate_tracking_uri(uri: str | None, *, create: bool = True) -> str:
    """Check a tracking URI before any training; returns it normalised (absolute sqlite path).

    ``create=True`` (a sweep will write): the sqlite file's folder must be creatable and writable and an
    existing file must be a writable sqlite database. ``create=False`` (queries): the file must exist.
    A bare ``*.db`` path is taken as sqlite. ``http(s)://`` servers are checked by the first request.
    Raises :class:`UserInputError` with one line naming the URI and what was expected.
    """
    if not uri:
        uri = default_tracking_uri()
    uri = str(uri)
    scheme = urlparse(uri).scheme
    if scheme == "" and uri.endswith(".db"):
        uri = "sqlite:///" + str(Path(uri).resolve())
        scheme = "sqlite"
    if scheme in ("http", "https", "databricks"):
        return uri
    if scheme in ("", "file"):
        raise UserInputError(f"tracking URI {uri!r}: the MLflow file store is not supported (it raises in "
                             "MLflow 3.17); expected sqlite:///<path>.db or http://host:port")
    if scheme != "sqlite":
        raise UserInputError(f"tracking URI {uri!r}: unsupported scheme {scheme!r}; expected "
                             "sqlite:///<path>.db or http://host:port")
    path = _sqlite_path(uri).expanduser().resolve()
    uri = "sqlite:///" + str(path)
    if not create:
        if not path.is_file():
            raise UserInputError(f"tracking URI {uri!r}: no MLflow database at {str(path)!r}; expected the "
                                 "store a sweep wrote (run a sweep first or pass --tracking-uri)")
        return uri
    _probe_writable(path.parent, uri)
    if path.exists():
        try:
            with open(path, "rb+") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is not writable "
                                 f"({exc.strerror or exc}); expected a writable sqlite file") from None
        if head and head != b"SQLite format 3\x00":
            raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is not an sqlite database")
    return uri


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def _store_error(uri: str, exc: BaseException) -> UserInputError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return UserInputError(f"tracking URI {uri!r}: cannot open the MLflow store ({first}); expected a "
                          "reachable, writable MLflow tracking store")


def _artifact_root(uri: str, experiment_name: str) -> str | None:
    """Artifacts live next to the sqlite file (not in whatever cwd first created the experiment)."""
    path = _sqlite_path(uri)
    if path is None:
        return None
    safe = re.sub(r"[^\w.-]+", "_", experiment_name).strip("._") or "experiment"
    digest = hashlib.sha1(experiment_name.encode()).hexdigest()[:8]
    return str(path.parent / "mlartifacts" / f"{safe}-{digest}")


class _QuickHttp:
    """For the first request to an ``http(s)://`` server: no retries, a short timeout (restored after)."""

    _ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}

    def __init__(self, uri: str):
        self.active = urlparse(uri).scheme in ("http", "https")
        self.saved: dict[str, str | None] = {}

    def __enter__(self):
        if self.active:
            for key, value in self._ENV.items():
                self.saved[key] = os.environ.get(key)
                os.environ[key] = value
        return self

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _get_or_create_experiment(client, uri: str, name: str) -> str:
    try:
        with _QuickHttp(uri):
            exp = client.get_experiment_by_name(name)
        if exp is None:
            return client.create_experiment(name, artifact_location=_artifact_root(uri, name))
    except UserInputError:
        raise
    except Exception as exc:  # sqlalchemy / MlflowException / connection errors: one line to the user
        raise _store_error(uri, exc) from None
    if exp.lifecycle_stage != "active":
        raise UserInputError(f"experiment {name!r} in {uri!r} is deleted; expected an active experiment "
                             f"(restore it with `mlflow experiments restore` or pick another name)")
    return exp.experiment_id


# --- values, names, params --------------------------------------------------------------------------------

_BAD_NAME_CHARS = re.compile(r"[^\w.\- :]")


def sanitize_name(name: Any) -> str:
    """A key MLflow accepts for params and metrics (no slashes, no '..', ≤ 250 chars)."""
    text = _BAD_NAME_CHARS.sub("_", str(name))
    text = re.sub(r"\.{2,}", "_", text).strip(". ") or "_"
    return text[:_MAX_KEY]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys, values strings (lists as JSON), within MLflow's limits.

    A dict whose own keys contain dots (e.g. ``baseline_metrics`` = ``{"seg.miou": …}``) is kept as one
    JSON value, so that :func:`unflatten_params` can rebuild the nesting unambiguously.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not any("." in str(k) for k in value):
            out.update(flatten_params(value, prefix=full + "."))
        else:
            out[sanitize_name(full)] = _truncate(_stringify(value), _MAX_PARAM_VALUE)
    return out


def _parse_value(text: str) -> Any:
    if text in ("None", "null"):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def unflatten_params(params: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params` with values parsed back (numbers, bools, None, JSON)."""
    out: dict[str, Any] = {}
    for key in sorted(params):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = _parse_value(params[key])
    return out


def _finite_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:                                    # numpy / torch scalars
                value = float(value) if hasattr(value, "__float__") and not isinstance(value, str) else None
            except (TypeError, ValueError):
                value = None
            if value is None:
                continue
        value = float(value)
        if math.isfinite(value):
            out[sanitize_name(key)] = value
    return out


def _one_line(text: Any, limit: int = 1000) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return _truncate(lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else
                     "unknown error"), limit)


# --- baseline key and code version -----------------------------------------------------------------------

def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def baseline_key(config: Mapping[str, Any]) -> str:
    """Hash of the trial-config fields that change the dense result (:data:`BASELINE_FIELDS`).

    Sparsification-only fields (method, sparsity, criterion, gradual, dynamic, ...) do not change it;
    ``None`` values count as absent, ``tasks`` is order-free and ``1.0 == 1``. Pass a resolved config
    (defaults filled in) so that an omitted default and an explicit one give the same key.
    """
    picked = {}
    for field in BASELINE_FIELDS:
        value = config.get(field)
        if value is None:
            continue
        if field == "tasks" and isinstance(value, (list, tuple)):
            value = sorted(str(t) for t in value)
        picked[field] = _canonical(value)
    blob = json.dumps({"v": 1, "fields": picked}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_version(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"git_commit", "dirty"}`` when the code is a git checkout, else ``{"package_version"}``."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        if commit:
            return {"git_commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return {"package_version": version("disparse-tune")}
    except Exception:
        return {"package_version": "unknown"}


_code_version = code_version


def _code_version_text(cv: Any) -> str:
    if isinstance(cv, Mapping):
        if cv.get("git_commit"):
            return cv["git_commit"] + ("-dirty" if cv.get("dirty") else "")
        return str(cv.get("package_version", "unknown"))
    return str(cv)


# --- reading runs back ------------------------------------------------------------------------------------

def _quote(value: str) -> str:
    if "'" in value:
        raise UserInputError(f"identifier {value!r} contains a quote; expected letters, digits, '-', '_' or '.'")
    return f"'{value}'"


def _search(client, experiment_id: str, filter_string: str, order_by: Sequence[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                  order_by=list(order_by or []), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _record(run) -> dict[str, Any]:
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
        "params": params,
        "config": unflatten_params(params),
        "metrics": dict(run.data.metrics),
        "run_name": run.info.run_name,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "artifact_uri": run.info.artifact_uri,
    }


def _open_for_reading(tracking_uri: str | None, experiment: str | None):
    uri = validate_tracking_uri(tracking_uri, create=False)
    client = _client(uri)
    name = experiment or DEFAULT_EXPERIMENT
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as exc:
        raise _store_error(uri, exc) from None
    if exp is None or exp.lifecycle_stage != "active":
        try:
            names = sorted(e.name for e in client.search_experiments())
        except Exception:
            names = []
        raise UserInputError(f"experiment {name!r} not found in {uri!r}; expected one of "
                             f"{names or '(none)'}")
    return uri, client, exp


def _sweep_runs(client, experiment_id: str) -> list:
    return _search(client, experiment_id, f"tags.`{TAG_ROLE}` = 'sweep'",
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
        what = f"sweep {sweep_id!r}" if sweep_id else "any sweep"
        raise UserInputError(f"no {what} in experiment {exp.name!r} of {uri!r}; expected one of "
                             f"{known or '(none: run a sweep first)'}")
    run = sweeps[0]
    rec = _record(run)
    rec.update(tags=dict(run.data.tags), experiment_id=exp.experiment_id, experiment=exp.name,
               tracking_uri=uri)
    return rec


def list_artifacts(tracking_uri: str, run_id: str) -> list[str]:
    """Paths of a run's artifacts (files, recursively), relative to its artifact root."""
    client = _client(tracking_uri)
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
        filt += f" and tags.`{TAG_SWEEP_ID}` = {_quote(sid)}"
    runs = _search(client, exp.experiment_id, filt, order_by=["attributes.start_time ASC"])
    records = [_record(r) for r in runs]
    for rec in records:
        rec["tracking_uri"] = uri
        rec["experiment_id"] = exp.experiment_id
    return records


def _baseline_record(client, experiment_id: str, key: str | None = None,
                     run_id: str | None = None) -> dict[str, Any] | None:
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:
            return None
        runs = [run] if run.info.status == "FINISHED" else []
    else:
        runs = _search(client, experiment_id,
                       f"tags.`{TAG_ROLE}` = 'baseline' and tags.`{TAG_BASELINE_KEY}` = {_quote(key)} "
                       "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    rec = _record(runs[0])
    rec["baseline_key"] = runs[0].data.tags.get(TAG_BASELINE_KEY)
    return rec


def load_baseline_for(records: Sequence[Mapping[str, Any]], tracking_uri: str | None = None,
                      experiment: str | None = None) -> dict[str, Any] | None:
    """The dense baseline the trials of ``records`` compare to, as a record (``metrics``, ``run_id``,
    ``baseline_key``), or None.

    Looked up in order: the sweep run's ``disparse.baseline_run_id`` tag; a FINISHED baseline run whose
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
        client = _client(uri)
        experiment_id = records[0].get("experiment_id")
        if experiment_id is None:
            experiment_id = client.get_run(records[0]["run_id"]).info.experiment_id
    sweep_ids = [r.get("sweep_id") for r in records if r.get("sweep_id")]
    if sweep_ids:
        sid = max(set(sweep_ids), key=sweep_ids.count)
        sweeps = _search(client, experiment_id,
                         f"tags.`{TAG_ROLE}` = 'sweep' and tags.`{TAG_SWEEP_ID}` = {_quote(sid)}")
        for run in sweeps:
            linked = run.data.tags.get(TAG_BASELINE_RUN)
            rec = _baseline_record(client, experiment_id, run_id=linked) if linked else None
            if rec:
                return rec
    keys = [baseline_key(r.get("config") or {}) for r in records]
    for key in sorted(set(keys), key=lambda k: -keys.count(k)):
        rec = _baseline_record(client, experiment_id, key=key)
        if rec:
            return rec
    for r in records:
        given = (r.get("config") or {}).get("baseline_metrics")
        if isinstance(given, Mapping) and given:
            return {"run_id": None, "baseline_key": None, "metrics": dict(given),
                    "params": {}, "config": {}}
    return None


# --- the writer ---------------------------------------------------------------------------------------------

class SweepTracker:
    """Writes one sweep to MLflow from one process (the Ray Tune driver). Not thread-safe.

    Use as a context manager (or call :meth:`abort` in a ``finally``) so that an interrupted sweep
    leaves no run in RUNNING.
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = DEFAULT_EXPERIMENT):
        self.tracking_uri = validate_tracking_uri(tracking_uri, create=True)
        self.experiment_name = experiment_name
        self.client = _client(self.tracking_uri)
        self.experiment_id = _get_or_create_experiment(self.client, self.tracking_uri, experiment_name)
        self.sweep_id: str | None = None
        self.parent_run_id: str | None = None
        self._trials: dict[str, str] = {}          # trial key -> run id
        self._status: dict[str, str] = {}          # trial key -> status as we know it
        self._last_step: dict[str, int] = {}       # run id -> highest step logged in this session

    # context manager: anything left RUNNING is closed on the way out
    def __enter__(self) -> "SweepTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort(f"sweep interrupted: {exc_type.__name__}: {_one_line(exc) if str(exc) else ''}")

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
        existing = _search(self.client, self.experiment_id,
                           f"tags.`{TAG_ROLE}` = 'sweep' and tags.`{TAG_SWEEP_ID}` = {_quote(self.sweep_id)}",
                           order_by=["attributes.start_time ASC"])
        if existing and not resume:
            raise UserInputError(f"sweep {self.sweep_id!r} already exists in experiment "
                                 f"{self.experiment_name!r}; expected a new sweep id or --resume")
        if existing:
            self.parent_run_id = existing[0].info.run_id
            if existing[0].info.status != "RUNNING":
                self.client.update_run(self.parent_run_id, status="RUNNING")
            self._load_existing_trials()
            logged = set(existing[0].data.params)
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"sweep-{self.sweep_id}",
                                         tags={TAG_SWEEP_ID: self.sweep_id, TAG_ROLE: "sweep"})
            self.parent_run_id = run.info.run_id
            logged = set()
        cv = code_version if code_version is not None else _code_version()
        space_path = space_path if space_path is not None else _spec_attr(spec, "path")
        if space_text is None:
            space_text = _spec_attr(spec, "raw_text") or None
        spec_sampler = _spec_attr(spec, "sampler")
        if seed is None and isinstance(spec_sampler, Mapping):
            seed = spec_sampler.get("seed")
        objectives = _spec_attr(spec, "objectives")
        budgets = _spec_attr(spec, "budgets")
        sampler = sampler if sampler is not None else spec_sampler
        sampler_options = {}
        if isinstance(sampler, Mapping):
            sampler_options = {k: v for k, v in sampler.items() if k not in ("type", "name", "seed")}
            sampler = sampler.get("type") or sampler.get("name")
        params = {
            "sweep_id": self.sweep_id,
            "space": _spec_attr(spec, "name") or (Path(space_path).stem if space_path else None),
            "sampler": sampler,
            "sampler_options": sampler_options or None,
            "seed": seed if seed is not None else _spec_attr(spec, "seed"),
            "trials": _first_of(config, spec, ("trials", "num_trials", "n_trials", "num_samples")),
            "concurrency": _first_of(config, spec, ("concurrency", "max_concurrent", "max_concurrent_trials")),
            "objectives": _objective_text(objectives),
            "budgets": _objective_text(budgets),
        }
        flat = {k: v for k, v in flatten_params({k: v for k, v in params.items() if v is not None}).items()
                if k not in logged}
        tags = {TAG_CODE_VERSION: _code_version_text(cv)}
        if isinstance(cv, Mapping) and cv.get("git_commit"):
            tags["mlflow.source.git.commit"] = cv["git_commit"]
        if space_path:
            tags["disparse.space_path"] = str(Path(space_path).resolve())
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
        return self.parent_run_id

    def set_baseline(self, run_id: str) -> None:
        """Record on the sweep run which dense baseline run its Δm and budgets refer to."""
        self._require_sweep()
        self.client.set_tag(self.parent_run_id, TAG_BASELINE_RUN, run_id)

    # -- trials -----------------------------------------------------------------------------------------

    def trial_started(self, trial_key: str, params: Mapping[str, Any], *,
                      optuna_number: int | None = None) -> str:
        """The nested run of ``trial_key`` (created once; a resumed trial reuses its run; a FINISHED one is
        returned as is and never reopened). ``params`` (the trial config) are flattened and logged."""
        self._require_sweep()
        key = str(trial_key)
        run_id = self._trials.get(key)
        if run_id is not None and self._status.get(key) == "FINISHED":
            return run_id                              # finished: never reopened
        if run_id is None:
            tags = {TAG_PARENT: self.parent_run_id, TAG_SWEEP_ID: self.sweep_id, TAG_TRIAL_KEY: key,
                    TAG_ROLE: "trial"}
            if optuna_number is not None:
                tags[TAG_OPTUNA_NUMBER] = str(optuna_number)
            name = f"trial-{optuna_number:04d}" if isinstance(optuna_number, int) else f"trial-{key}"
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            self._trials[key], self._status[key] = run_id, "RUNNING"
            already: set[str] = set()
        else:                                          # resumed: reopen a failed / killed / running run
            run = self.client.get_run(run_id)
            already = set(run.data.params)
            if run.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            if TAG_FAILURE in run.data.tags:
                self.client.delete_tag(run_id, TAG_FAILURE)
            if optuna_number is not None and TAG_OPTUNA_NUMBER not in run.data.tags:
                self.client.set_tag(run_id, TAG_OPTUNA_NUMBER, str(optuna_number))
            self._status[key] = "RUNNING"
        flat = {k: v for k, v in flatten_params(dict(params or {})).items() if k not in already}
        self._log_batch(run_id, params=flat)
        if not already and params:
            self._log_texts(run_id, {"trial_config.json": json.dumps(dict(params), indent=2,
                                                                     sort_keys=True, default=str)})
        return run_id

    def trial_result(self, trial_key: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Per-evaluation metrics at ``step`` (default: ``metrics["step"]``); non-numbers are skipped."""
        run_id = self._writable_run(trial_key)
        if run_id is None:
            return
        self._log_metrics(run_id, metrics, step)

    def trial_completed(self, trial_key: str, metrics: Mapping[str, Any], *,
                        mask_iou: Mapping[str, Any] | None = None, early_stopped: bool = False) -> None:
        """Final metrics, the mask-IoU artifacts (``mask_iou.json``, ``mask_iou.png``), status FINISHED.
        ``early_stopped`` trials are tagged and never enter a front."""
        key = str(trial_key)
        run_id = self._writable_run(key)
        if run_id is None:
            return
        metrics = dict(metrics)
        mask_iou = mask_iou if mask_iou is not None else metrics.pop("mask_iou", None)
        self._log_metrics(run_id, metrics, None)
        self.client.set_tag(run_id, TAG_EARLY_STOPPED, "true" if early_stopped else "false")
        if isinstance(mask_iou, Mapping) and mask_iou:
            self._log_texts(run_id, {"mask_iou.json": json.dumps(mask_iou, indent=2, sort_keys=True,
                                                                 default=float)})
            try:
                from . import plots
                with tempfile.TemporaryDirectory() as tmp:
                    png = plots.mask_iou_png(mask_iou, Path(tmp) / "mask_iou.png", title=key)
                    if png is not None:
                        self.client.log_artifact(run_id, str(png))
            except Exception as exc:  # a plot must never fail a trial that trained fine
                self.client.set_tag(run_id, "disparse.plot_error", _one_line(exc, 500))
        self.client.set_terminated(run_id, "FINISHED")
        self._status[key] = "FINISHED"

    def trial_failed(self, trial_key: str, reason: Any) -> None:
        """Status FAILED with a one-line ``disparse.failure`` tag."""
        key = str(trial_key)
        run_id = self._writable_run(key)
        if run_id is None:
            return
        self.client.set_tag(run_id, TAG_FAILURE, _one_line(reason))
        self.client.set_terminated(run_id, "FAILED")
        self._status[key] = "FAILED"

    def abort(self, reason: str = "sweep interrupted") -> None:
        """Close every run this tracker left RUNNING (trials FAILED with the reason, the sweep KILLED)."""
        for key, status in list(self._status.items()):
            if status == "RUNNING":
                try:
                    self.trial_failed(key, reason)
                except Exception:
                    pass
        if self.parent_run_id:
            try:
                if self.client.get_run(self.parent_run_id).info.status == "RUNNING":
                    self.client.set_tag(self.parent_run_id, TAG_FAILURE, _one_line(reason))
                    self.client.set_terminated(self.parent_run_id, "KILLED")
            except Exception:
                pass

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
        from . import plots
        from .pareto import pareto_front, hypervolume

        self._require_sweep()
        objectives = [str(o) for o in objectives]
        dirs = normalize_directions(objectives, directions)
        records = [_record(r) for r in self._sweep_trial_runs()]
        eligible = eligible_for_front(records, objectives)
        points = [[r["metrics"][o] for o in objectives] for r in eligible]
        front_idx = front_indices(pareto_front, points, dirs) if points else []
        front = [eligible[i] for i in front_idx]
        sign = 1.0 if dirs[0] == "maximize" else -1.0
        front.sort(key=lambda r: -sign * r["metrics"][objectives[0]])
        front_ids = {r["run_id"] for r in front}

        for rec in records:                             # tags: exactly the current front members
            if rec["run_id"] in front_ids:
                self.client.set_tag(rec["run_id"], TAG_PARETO, "true")
                rec["pareto"] = True
            elif rec["pareto"]:
                self.client.delete_tag(rec["run_id"], TAG_PARETO)
                rec["pareto"] = False

        history = _history_pairs(hypervolume_history)
        hv_tags: dict[str, str] = {}
        if eligible:
            try:
                from .pareto import default_reference, hypervolume_history as hv_history
                ref = (list(map(float, reference_point)) if reference_point is not None
                       else default_reference(points, dirs))
                if not history:                         # from MLflow: fully trained trials in end order
                    ordered = sorted(range(len(eligible)), key=lambda i: eligible[i]["end_time"] or 0)
                    history = [(k + 1, float(v)) for k, v in
                               enumerate(hv_history([points[i] for i in ordered], dirs, ref))]
                hv = float(hypervolume([points[i] for i in front_idx], dirs, ref))
                hv_tags = {"disparse.hypervolume": repr(hv),
                           "disparse.reference_point": json.dumps(ref)
                           + ("" if reference_point is not None else " (auto)")}
            except Exception as exc:
                hv_tags = {"disparse.hypervolume_error": _one_line(exc, 500)}

        counts = {
            "trials_finished": sum(r["status"] == "FINISHED" for r in records),
            "trials_failed": sum(r["status"] == "FAILED" for r in records),
            "trials_early_stopped": sum(r["status"] == "FINISHED" and r["early_stopped"] for r in records),
            "front_size": len(front),
        }
        summary_tags = {"disparse.front_size": str(len(front)),
                        "disparse.objectives": ",".join(objectives),
                        "disparse.directions": ",".join(dirs)}
        for obj, d in zip(objectives, dirs):
            if eligible:
                pick = max if d == "maximize" else min
                best = pick(eligible, key=lambda r: r["metrics"][obj])
                summary_tags[f"disparse.best.{sanitize_name(obj)}"] = \
                    f"{best['metrics'][obj]:.6g} (run {best['run_id']})"
        summary_tags.update(hv_tags)
        self._log_batch(self.parent_run_id, tags=summary_tags)
        self._log_metrics(self.parent_run_id, counts, 0)
        if history:
            from mlflow.entities import Metric
            now = int(time.time() * 1000)
            self._log_metric_objects(self.parent_run_id,
                                     [Metric("hypervolume", v, now, int(s)) for s, v in history])

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            param_keys = plots.key_params(front or eligible)
            (out / "pareto_front.csv").write_text(front_csv(front, objectives, param_keys))
            if history:
                (out / "hypervolume.csv").write_text(
                    "step,hypervolume\n" + "".join(f"{s},{v!r}\n" for s, v in history))
            made, errors = [], []
            try:                               # a picture must never lose the front itself
                made = plots.pareto_pngs(eligible, front_ids, objectives, dirs, out)
            except Exception as exc:
                errors.append(f"png: {_one_line(exc, 300)}")
            try:
                plots.pareto_html(eligible, front_ids, objectives, dirs, out / "pareto_front.html",
                                  title=f"Pareto front of sweep {self.sweep_id}", param_keys=param_keys)
            except Exception as exc:
                errors.append(f"html: {_one_line(exc, 300)}")
            for path in sorted(out.iterdir()):
                self.client.log_artifact(self.parent_run_id, str(path))
            plot_tags = {"disparse.plots": ",".join(p.name for p in made)}
            if errors:
                plot_tags["disparse.plot_error"] = "; ".join(errors)
            self._log_batch(self.parent_run_id, tags=plot_tags)
        self.client.set_terminated(self.parent_run_id, "FINISHED")
        return front

    # -- baseline ------------------------------------------------------------------------------------------

    def find_baseline(self, baseline_key: str) -> dict[str, float] | None:
        """Metrics of the latest FINISHED dense baseline run with this key in the experiment, or None."""
        rec = _baseline_record(self.client, self.experiment_id, key=str(baseline_key))
        return rec["metrics"] if rec else None

    def find_baseline_run(self, baseline_key: str) -> dict[str, Any] | None:
        """Like :meth:`find_baseline` but the whole record (``run_id``, ``metrics``, ``config``...)."""
        return _baseline_record(self.client, self.experiment_id, key=str(baseline_key))

    def log_baseline(self, baseline_key: str, config: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
        """A FINISHED baseline run (not nested: every sweep of the experiment may reuse it)."""
        tags = {TAG_ROLE: "baseline", TAG_BASELINE_KEY: str(baseline_key)}
        if self.sweep_id:
            tags["disparse.created_by_sweep"] = self.sweep_id
        run_id = self.client.create_run(self.experiment_id, run_name=f"baseline-{baseline_key}",
                                        tags=tags).info.run_id
        try:
            self._log_batch(run_id, params=flatten_params(dict(config)))
            self._log_metrics(run_id, {k: v for k, v in metrics.items() if k != "mask_iou"}, None)
            self._log_texts(run_id, {"trial_config.json": json.dumps(dict(config), indent=2,
                                                                     sort_keys=True, default=str)})
        except Exception as exc:
            self.client.set_tag(run_id, TAG_FAILURE, _one_line(exc))
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
        return _search(self.client, self.experiment_id,
                       f"tags.`{TAG_ROLE}` = 'trial' and tags.`{TAG_SWEEP_ID}` = {_quote(self.sweep_id)}",
                       order_by=["attributes.start_time ASC"])

    def _load_existing_trials(self) -> None:
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

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None) -> None:
        from mlflow.entities import Metric
        if step is None:                   # final values: never at a step below the last one logged
            raw = metrics.get("step")
            step = int(raw) if isinstance(raw, (int, float)) and math.isfinite(raw) else 0
            step = max(step, self._last_step.get(run_id, 0))
        self._last_step[run_id] = max(int(step), self._last_step.get(run_id, 0))
        now = int(time.time() * 1000)
        values = {k: v for k, v in _finite_numbers(metrics).items() if k != "final"}
        self._log_metric_objects(run_id, [Metric(k, v, now, int(step)) for k, v in values.items()])

    def _log_metric_objects(self, run_id: str, items: list) -> None:
        for i in range(0, len(items), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + _MAX_METRICS_PER_BATCH])

    def _log_batch(self, run_id: str, params: Mapping[str, str] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Param, RunTag
        ps = [Param(k, v) for k, v in (params or {}).items()]
        ts = [RunTag(k, _truncate(str(v), _MAX_TAG_VALUE)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ps), len(ts)), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=ps[i:i + _MAX_PARAMS_PER_BATCH],
                                  tags=ts[i:i + _MAX_PARAMS_PER_BATCH])

    def _log_texts(self, run_id: str, files: Mapping[str, str]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in files.items():
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            for entry in sorted(Path(tmp).iterdir()):
                if entry.is_dir():
                    self.client.log_artifacts(run_id, str(entry), artifact_path=entry.name)
                else:
                    self.client.log_artifact(run_id, str(entry))


# --- helpers shared with queries ------------------------------------------------------------------------------

def _spec_attr(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def _first_of(config: Mapping[str, Any], spec: Any, names: Sequence[str]) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
        value = _spec_attr(spec, name)
        if value is not None:
            return value
    return None


def _objective_text(value: Any) -> Any:
    """Objectives / budgets as readable text: a list of strings or objects with a ``name``/``key``."""
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps({str(k): _objective_text(v) if not isinstance(v, (int, float, str)) else v
                           for k, v in value.items()}, sort_keys=True, default=str)
    items = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        elif hasattr(item, "raw") and item.raw:
            items.append(str(item.raw))
        elif hasattr(item, "direction") and (hasattr(item, "name") or hasattr(item, "metric")):
            items.append(f"{getattr(item, 'name', None) or getattr(item, 'metric')}:{item.direction}")
        elif hasattr(item, "text"):
            items.append(str(item.text))
        else:
            items.append(str(item))
    return ",".join(items)


def normalize_directions(objectives: Sequence[str], directions: Any) -> list[str]:
    """``["maximize" | "minimize", ...]`` parallel to ``objectives``."""
    words = {"max": "maximize", "maximize": "maximize", "maximise": "maximize", "higher": "maximize",
             "min": "minimize", "minimize": "minimize", "minimise": "minimize", "lower": "minimize"}
    out = []
    for i, obj in enumerate(objectives):
        if directions is None:
            d = _default_direction(obj)
        elif isinstance(directions, Mapping):
            d = directions.get(obj) or _default_direction(obj)
        else:
            d = list(directions)[i]
        d = str(getattr(d, "value", d)).lower().rsplit(".", 1)[-1]
        if d not in words:
            raise ValueError(f"direction {d!r} of objective {obj!r}: expected maximize or minimize")
        out.append(words[d])
    return out


_HIGHER = {"compression", "delta_m", "sparsity", "miou", "pixel_acc", "acc", "within_11", "within_22",
           "within_30", "delta1", "delta2", "delta3"}
_LOWER = {"mean", "median", "abs_err", "rel_err", "rmse", "loss", "nonzero_params", "wall_time_s"}


def _default_direction(key: str) -> str:
    """Direction of a metric key: a local table for the known names (importing the core would pull in
    torch), ``disparse_core.metrics.higher_is_better`` for the rest, else maximize."""
    last = str(key).rsplit(".", 1)[-1]
    if last in _HIGHER or last in _LOWER:
        return "maximize" if last in _HIGHER else "minimize"
    try:
        from disparse_core.metrics import higher_is_better
        return "maximize" if higher_is_better(key) else "minimize"
    except Exception:
        return "maximize"


def eligible_for_front(records: Iterable[Mapping[str, Any]], objectives: Sequence[str]) -> list[dict]:
    """FINISHED, fully trained (not early-stopped) trials with every objective finite."""
    out = []
    for rec in records:
        if rec.get("status") != "FINISHED" or rec.get("early_stopped"):
            continue
        m = rec.get("metrics") or {}
        if all(isinstance(m.get(o), (int, float)) and math.isfinite(m[o]) for o in objectives):
            out.append(dict(rec))
    return out


def front_indices(pareto_front, points: list[list[float]], directions: list[str]) -> list[int]:
    """Indices of the non-dominated ``points`` using ``sweeps.pareto.pareto_front``."""
    result = list(pareto_front(points, directions))
    if not result:
        return []
    if all(isinstance(x, int) and not isinstance(x, bool) for x in result):
        return sorted(result)
    remaining = {i: tuple(p) for i, p in enumerate(points)}
    idx = []
    for point in result:                               # the front given as points: map back to indices
        target = tuple(point)
        for i, p in list(remaining.items()):
            if p == target:
                idx.append(i)
                del remaining[i]
                break
    return sorted(idx)


def _history_pairs(history: Iterable[Any] | None) -> list[tuple[int, float]]:
    pairs: list[tuple[int, float]] = []
    for i, item in enumerate(history or []):
        if isinstance(item, Mapping):
            step, value = item.get("step", i), item.get("hypervolume", item.get("value"))
        elif isinstance(item, (list, tuple)):
            step, value = item
        else:
            step, value = i, item
        if value is not None and math.isfinite(float(value)):
            pairs.append((int(step), float(value)))
    return pairs


def front_csv(front: Sequence[Mapping[str, Any]], objectives: Sequence[str], param_keys: Sequence[str]) -> str:
    """CSV text: run_id, trial_key, each objective, then the key params."""
    import csv
    import io
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_id", "trial_key", *objectives, *param_keys])
    for rec in front:
        writer.writerow([rec["run_id"], rec.get("trial_key") or "",
                         *[repr(float(rec["metrics"][o])) for o in objectives],
                         *[rec.get("params", {}).get(k, "") for k in param_keys]])
    return buf.getvalue()
