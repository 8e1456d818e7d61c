"""The MLflow store: where it lives, how to open it, and the tags that lay a sweep out in it.

Private to :mod:`sweeps.tracking` (which re-exports the public names). ``validate_tracking_uri`` checks
a URI before any training; ``open_client`` and ``get_or_create_experiment`` open the store (mlflow is
imported only there, lazily); ``search_all_runs`` pages through ``search_runs``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Sequence
from urllib.parse import quote, urlparse

from ..errors import UserInputError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_EXPERIMENT = "disparse-tune"

TAG_PARENT = "mlflow.parentRunId"
TAG_SWEEP_ID = "disparse.sweep_id"
TAG_ROLE = "disparse.role"                  # sweep | trial | baseline
TAG_TRIAL_KEY = "disparse.trial_key"
TAG_OPTUNA_NUMBER = "disparse.optuna_number"
TAG_EARLY_STOPPED = "disparse.early_stopped"
TAG_FAILURE = "disparse.failure"
TAG_PARETO = "disparse.pareto"
TAG_NOT_FINITE = "disparse.not_finite"     # final metrics that were NaN/inf (MLflow keeps an older value)
TAG_BASELINE_KEY = "disparse.baseline_key"
# Keys on the sweep run are short enough for the UI's tag chips (about 20 characters show whole); the
# longer keys of older stores are still read (LEGACY_SWEEP_TAGS).
TAG_BASELINE_RUN = "disparse.baseline"       # on a sweep run: the dense run its Δm refers to
TAG_CODE_VERSION = "disparse.code"
TAG_HV_REFERENCE = "disparse.hv_ref"          # the hypervolume's reference point
LEGACY_SWEEP_TAGS = {TAG_BASELINE_RUN: "disparse.baseline_run_id", TAG_CODE_VERSION: "disparse.code_version",
                     TAG_HV_REFERENCE: "disparse.reference_point"}


def sweep_tag(tags, key: str):
    """A sweep run's tag under its current key, else under the key older stores used."""
    return tags.get(key) or tags.get(LEGACY_SWEEP_TAGS.get(key, key))
TAG_WATERSHED = "disparse.watershed"         # on a trial: the watershed layer of its mask IoU
TAG_WITHIN_BUDGETS = "disparse.within_budgets"   # on a fully trained trial: meets the sweep's budgets
TAG_RETRIES = "disparse.retries"            # on a trial: its attempts before the one its run holds
TAG_ATTEMPT = "disparse.attempt"            # on a retired attempt's run (role attempt): its number
ATTEMPT_REASON = "disparse.attempt_"        # + N, on a trial: why its attempt N did not count


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
    existing file must be a writable MLflow sqlite store (an empty file counts as new).
    ``create=False`` (queries, resume): the file must exist and be an MLflow store. An existing file is
    only ever read here (never given MLflow's tables).
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
        if not _check_existing_store(path, uri):
            raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is an empty file, not an MLflow "
                                 "store; expected the store a sweep wrote (run a sweep first or pass "
                                 "--tracking-uri)")
        return uri
    _probe_writable(path.parent, uri)
    if path.exists():
        _check_existing_store(path, uri)  # an empty (0-byte) file is taken as a new store
        try:
            with open(path, "rb+"):
                pass
        except OSError as exc:
            raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is not writable "
                                 f"({exc.strerror or exc}); expected a writable sqlite file") from None
    return uri


_SQLITE_MAGIC = b"SQLite format 3\x00"
_MLFLOW_TABLES = frozenset({"experiments", "alembic_version"})


def _check_existing_store(path: Path, uri: str) -> bool:
    """An existing file must already be an MLflow sqlite store: never create MLflow's tables inside
    someone else's file. Reads only (the file is opened read-only). Returns False for an empty
    (0-byte) file, True for an MLflow store; raises :class:`UserInputError` otherwise."""
    if path.is_dir():
        raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is a folder; expected an MLflow "
                             "sqlite database or a new file path")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} cannot be read "
                             f"({exc.strerror or exc}); expected a readable sqlite file") from None
    if not head:
        return False
    if head != _SQLITE_MAGIC:
        raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is not an sqlite database; expected "
                             "an MLflow database or a new file path")
    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} cannot be read as an sqlite database "
                             f"({first}); expected an MLflow database or a new file path") from None
    if not _MLFLOW_TABLES <= tables:
        raise UserInputError(f"tracking URI {uri!r}: {str(path)!r} is an sqlite database but not an MLflow "
                             "store; expected an MLflow database or a new file path")
    return True


def open_client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def store_error(uri: str, exc: BaseException) -> UserInputError:
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


class QuickHttp:
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


def probe_http_store(uri: str) -> None:
    """One quick request (no retries, short timeout) to an ``http(s)://`` MLflow server; a local store is
    not touched. Raises :class:`~sweeps.errors.UserInputError` (one line) when the server does not answer."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        with QuickHttp(uri):
            open_client(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, HTTP errors: one line
        raise store_error(uri, exc) from None


def get_or_create_experiment(client, uri: str, name: str) -> str:
    try:
        with QuickHttp(uri):
            exp = client.get_experiment_by_name(name)
        if exp is None:
            return client.create_experiment(name, artifact_location=_artifact_root(uri, name))
    except UserInputError:
        raise
    except Exception as exc:  # sqlalchemy / MlflowException / connection errors: one line to the user
        raise store_error(uri, exc) from None
    if exp.lifecycle_stage != "active":
        raise UserInputError(f"experiment {name!r} in {uri!r} is deleted; expected an active experiment "
                             f"(restore it with `mlflow experiments restore` or pick another name)")
    return exp.experiment_id


# --- searching runs -------------------------------------------------------------------------------------

def quote_value(value: str) -> str:
    if "'" in value:
        raise UserInputError(f"identifier {value!r} contains a quote; expected letters, digits, '-', '_' or '.'")
    return f"'{value}'"


def search_all_runs(client, experiment_id: str, filter_string: str, order_by: Sequence[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                  order_by=list(order_by or []), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
