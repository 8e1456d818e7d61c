"""Ray's side of a sweep: connecting, the Optuna searcher as a Ray ``Searcher``, the driver callback
and the Tuner (Ray's import paths move between releases; every Ray import lives in :mod:`sweeps.ray`).

What is here:

* :func:`connect` starts a local Ray on 127.0.0.1 (the loopback environment of :mod:`sweeps.ray.env` is
  set by :mod:`sweeps.ray` before Ray is imported) or joins a cluster the user names with ``--ray-address``.
* :class:`OptunaAskTellSearcher`, a thin Ray ``Searcher`` over :class:`sweeps.searcher.StudyDriver`
  (why not ``OptunaSearch``: see that module's docstring).
* :func:`trainable` (in :mod:`sweeps.ray.trainable`), the function trainable: ``run_trial(config,
  report=...)`` with every report sent through ``ray.tune.report``; a NaN in a watched metric raises, so
  the trial is FAILED; an error a retry would repeat is marked so that Ray does not retry it.
* :class:`SweepCallback`, the driver-side Ray Tune callback that is the only MLflow writer (it calls
  :class:`sweeps.tracking.SweepTracker`) and feeds :mod:`sweeps.run.progress`.
* :func:`run_tuner`: ``Tuner`` + ``ConcurrencyLimiter`` + ``tune.with_resources`` + optional early
  stopping (:class:`sweeps.ray.scheduler.MultiObjectiveASHA`, on every objective or on one metric) +
  ``FailureConfig(max_failures=...)``, ``reuse_actors=True``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ray
import ray.exceptions
from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.search import ConcurrencyLimiter, Searcher

from ..searcher import StudyDriver, is_final, numeric_metrics
from ..tracking import clip_sentences
from .scheduler import MultiObjectiveASHA
from .trainable import FATAL, trainable

__all__ = [
    "RaySession", "connect", "run_remote", "OptunaAskTellSearcher",
    "SweepCallback", "EarlyStopping", "TunerOutcome", "run_tuner", "trial_metrics",
]

_RAY_KEYS = set(AUTO_RESULT_KEYS) | {
    "done", "trial_id", "experiment_tag", "should_checkpoint", "__duplicate__", "node_id", "mask_iou",
    "watershed",
}


def trial_metrics(result: Mapping[str, Any] | None) -> dict[str, float]:
    """The metrics ``run_trial`` reported, without Ray's bookkeeping keys or nested entries."""
    result = result or {}
    flat = {k: v for k, v in result.items() if k not in _RAY_KEYS and "/" not in str(k)}
    return numeric_metrics(flat)


# ------------------------------------------------------------------------------------- Ray itself
@dataclass
class RaySession:
    address: str
    owned: bool  # True when this process started Ray (and stops it)
    init_s: float
    cpus: float
    gpus: float
    nodes: int
    node_cpus: float = 0.0  # the most CPUs on one node (a trial runs on one node)
    node_gpus: float = 0.0

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()


def _quiet_ray(verbose: bool) -> None:
    if not verbose:
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old engine is silent at verbose=0
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
            verbose: bool = False, user_code: Sequence[str] = ()) -> RaySession:
    """Join ``address`` (``auto`` or ``host:port``), or start a local Ray on 127.0.0.1.

    ``user_code``: the files and package folders of a workload or arch of the user's own
    (``SweepSpec.user_code``), shipped to every worker as the job's ``runtime_env`` working_dir, so a
    module file next to the space works on a cluster without installing it. A Ray already initialised in
    this process (a test fixture, a notebook) is reused as is (and ships nothing).
    """
    _quiet_ray(verbose)
    t0 = time.perf_counter()
    owned = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(log_to_driver=verbose,
                                      logging_level=logging.INFO if verbose else logging.ERROR)
        with _shipped(user_code) as runtime_env:
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if address:
                ray.init(address=address, **kwargs)
            else:
                # address="local" always starts a new Ray; without it ray.init joins whatever Ray another
                # process on this machine started last (and then refuses num_cpus).
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus,
                         include_dashboard=False, **kwargs)
        owned = True
    resources = ray.cluster_resources()
    alive = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    ctx = ray.get_runtime_context()
    return RaySession(address=str(getattr(ctx, "gcs_address", "") or address or "local"), owned=owned,
                      init_s=time.perf_counter() - t0, cpus=float(resources.get("CPU", 0)),
                      gpus=float(resources.get("GPU", 0)), nodes=len(alive),
                      node_cpus=max((float(r.get("CPU", 0)) for r in alive), default=0.0),
                      node_gpus=max((float(r.get("GPU", 0)) for r in alive), default=0.0))


@contextlib.contextmanager
def _shipped(paths: Sequence[str]):
    """``{"working_dir": folder}`` holding copies of ``paths`` (files, package folders), or None when
    there is nothing to ship. Ray packs the folder when it starts, so it is removed afterwards; with a
    working_dir Ray no longer puts the driver's folder on the workers' path, so the copies are what
    they import, on every node."""
    if not paths:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="disparse-user-code-") as folder:
        for path in map(Path, paths):
            if path.is_dir():
                shutil.copytree(path, Path(folder) / path.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, Path(folder) / path.name)
        yield {"working_dir": folder}


def run_remote(fn: Callable, *args, cpu: float = 1, gpu: float = 0):
    """Run ``fn(*args)`` as one Ray task with the given resources and return its value.

    An exception raised by ``fn`` is re-raised as itself (not wrapped in Ray's ``RayTaskError``), so
    the caller can tell a ``ValueError`` of the core (bad input) from a crash."""
    try:
        return ray.get(ray.remote(num_cpus=cpu, num_gpus=gpu, max_retries=0)(fn).remote(*args))
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


# ------------------------------------------------------------------------------------ the searcher
class OptunaAskTellSearcher(Searcher):
    """Ray ``Searcher`` over a :class:`StudyDriver`: each ``suggest`` is one ``study.ask()``.

    Results are told in :meth:`on_trial_complete` (COMPLETE when the last report is final, else PRUNED).
    Errors are told by :class:`SweepCallback.on_trial_error`, which knows the reason.
    """

    def __init__(self, driver: StudyDriver, watch=()):
        super().__init__(metric=None, mode=None)
        self.driver = driver
        self.watch = list(watch)
        self.keys: dict[str, str] = {}  # Ray trial id -> trial key
        self.interrupted = False

    def suggest(self, trial_id: str):
        if self.interrupted:
            return Searcher.FINISHED
        asked = self.driver.ask()
        if asked is None:
            return Searcher.FINISHED
        self.keys[trial_id] = asked.key
        return {"trial_key": asked.key, "optuna_number": asked.number, "params": asked.params,
                "trial": asked.config, "watch": self.watch, "run": dict(self.driver.run_options)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        key = self.keys.get(trial_id)
        if key is None or error or self.interrupted:
            return  # errors: told by the callback; interrupted: left RUNNING for --resume
        self.keys.pop(trial_id, None)
        self.driver.tell_result(key, trial_metrics(result) | {"final": (result or {}).get("final", 0.0)})

    # the study is persisted by Optuna's storage on every tell: nothing else to save
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


# ------------------------------------------------------------------------------------ the callback
_WORKER_DIED = ("worker process has died", "Worker unexpectedly exits", "actor died unexpectedly")


def _error_reason(trial) -> str:
    """Why the trial's last attempt failed, in whole sentences: the last line of its error
    (``RuntimeError: boom``), or, when its Ray worker died without a Python error, a sentence saying so
    (:func:`worker_death`); else the error's repr."""
    text = ""
    for attr in ("error_file",):
        path = getattr(trial, attr, None)
        if path and os.path.exists(str(path)):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                pass
    if not text:
        err = getattr(getattr(trial, "run_metadata", None), "error_filename", None)
        text = str(err or "the trial raised an error")
    last = text.rsplit("Failure # ", 1)[-1]           # Ray appends one block per failed attempt
    if any(sign in last for sign in _WORKER_DIED):
        return worker_death(last)
    lines = [ln.strip() for ln in last.strip().splitlines() if ln.strip()]
    return clip_sentences(lines[-1] if lines else "the trial raised an error", 500)


def worker_death(error: str) -> str:
    """The reason of an attempt whose Ray worker process died (Ray's ``ActorDiedError``). Ray 2.60 does
    not say how it died (its raylet only sees the connection close), so the sentence names what leaves
    that trace: a signal that cannot be caught, SIGKILL (``kill -9``, the kernel's out-of-memory killer,
    ``ray stop --force``), or a crash (SIGSEGV)."""
    import re

    pid = re.search(r"\bpid: (\d+)", error)
    who = f"The trial's Ray worker process (pid {pid.group(1)})" if pid else "The trial's Ray worker process"
    return (f"{who} died without a Python error, as a process does when it exits by SIGKILL (kill -9, the "
            "kernel's out-of-memory killer or `ray stop --force`) or crashes (SIGSEGV).")


class SweepCallback(tune.Callback):
    """Driver-side: the sweep's only MLflow writer, and the progress display's event source."""

    def __init__(self, searcher: OptunaAskTellSearcher, tracker=None, progress=None):
        self.searcher = searcher
        self.tracker = tracker
        self.progress = progress
        self.nodes: dict[str, str] = {}  # trial key -> Ray node id
        self.tracking_errors: list[str] = []

    def _track(self, method: str, *args, **kwargs) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, method)(*args, **kwargs)
        except Exception as err:  # MLflow down must not kill the sweep; reported at the end
            msg = f"tracking {method} failed: {type(err).__name__}: {err}"
            self.tracking_errors.append(msg)
            if self.progress is not None:
                self.progress.note(msg)

    @staticmethod
    def _key(trial) -> str:
        return trial.config["trial_key"]

    def on_trial_start(self, iteration, trials, trial, **info):
        key = self._key(trial)
        self._track("trial_started", key, trial.config.get("trial", {}),
                    optuna_number=trial.config.get("optuna_number"))
        if self.progress is not None:
            self.progress.trial_started(key)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = self._key(trial)
        if result.get(FATAL):  # a deterministic error follows: Ray must not retry it (sweeps.ray.trainable)
            trial.max_failures = 0
            return
        if result.get("node_id"):
            self.nodes[key] = result["node_id"]
        metrics = trial_metrics(result)
        if not is_final(result):  # the final result is logged once, by trial_completed
            self._track("trial_result", key, metrics, int(metrics.get("step", 0)))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.searcher.interrupted:
            return
        key = self._key(trial)
        result = trial.last_result or {}
        if result.get("node_id"):
            self.nodes[key] = result["node_id"]
        metrics = trial_metrics(result)
        full = is_final(result)
        state = self._told_state(key)
        if state == "FAIL":  # e.g. a NaN objective in the final result
            reason = self._fail_reason(key) or "objective values are not finite"
            self._track("trial_failed", key, reason)
            if self.progress is not None:
                self.progress.trial_failed(key, reason)
            return
        iou = result.get("mask_iou") if isinstance(result.get("mask_iou"), Mapping) else None
        shed = result.get("watershed") if isinstance(result.get("watershed"), Mapping) else None
        self._track("trial_completed", key, metrics, mask_iou=iou, watershed=shed, early_stopped=not full)
        if self.progress is not None:
            self.progress.trial_finished(key, metrics, full=full)

    def on_trial_recover(self, iteration, trials, trial, **info):
        reason = _error_reason(trial)
        self._track("trial_retried", self._key(trial), reason)   # the attempt's run is kept apart
        if self.progress is not None:
            self.progress.note(f"trial {self._key(trial)} failed ({reason}); retrying")

    def on_trial_error(self, iteration, trials, trial, **info):
        key = self._key(trial)
        reason = _error_reason(trial)
        self.searcher.keys.pop(trial.trial_id, None)
        self.searcher.driver.tell_failure(key, reason)
        self._track("trial_failed", key, reason)
        if self.progress is not None:
            self.progress.trial_failed(key, reason)

    def _told_state(self, key: str) -> str | None:
        for t in reversed(self.searcher.driver.study.get_trials(deepcopy=False)):
            if t.user_attrs.get("trial_key") == key:
                return t.state.name
        return None

    def _fail_reason(self, key: str) -> str | None:
        for t in reversed(self.searcher.driver.study.get_trials(deepcopy=False)):
            if t.user_attrs.get("trial_key") == key:
                return t.user_attrs.get("fail_reason")
        return None


# --------------------------------------------------------------------------------------- the tuner
@dataclass(frozen=True)
class EarlyStopping:
    """ASHA (``time_attr``: a reported counter, e.g. ``step``) ranked on ``objectives`` (``(name,
    direction)`` pairs; the rule: :mod:`sweeps.ray.mo_asha`): every objective of the sweep, or one metric
    alone (single-metric ASHA). ``metric``/``mode`` name it for messages; the ranking uses ``objectives``."""

    metric: str
    mode: str  # "min" | "max"
    max_t: int
    grace_period: int = 1
    reduction_factor: float = 2
    time_attr: str = "step"
    objectives: tuple = ()
    keep_non_dominated: bool = True  # multi-objective ASHA only (sweeps.ray.mo_asha)


@dataclass
class TunerOutcome:
    interrupted: bool
    fit_s: float
    nodes: dict = field(default_factory=dict)
    tracking_errors: list = field(default_factory=list)


def run_tuner(driver: StudyDriver, *, resources: Mapping[str, float], concurrency: int,
              storage_path: str, name: str, tracker=None, progress=None,
              early_stopping: EarlyStopping | None = None, max_retries: int = 0,
              watch=(), verbose: bool = False) -> TunerOutcome:
    """Run the remaining trials of ``driver``'s study as one Ray Tune experiment."""
    searcher = OptunaAskTellSearcher(driver, watch=watch)
    callback = SweepCallback(searcher, tracker=tracker, progress=progress)
    scheduler = None
    if early_stopping is not None:
        es = early_stopping
        if not es.objectives:
            raise ValueError("EarlyStopping.objectives is empty; expected the (name, direction) pairs to rank on")
        scheduler = MultiObjectiveASHA([n for n, _ in es.objectives], [d for _, d in es.objectives],
                                       max_t=es.max_t, grace_period=es.grace_period,
                                       reduction_factor=es.reduction_factor, time_attr=es.time_attr,
                                       keep_non_dominated=es.keep_non_dominated,
                                       history=driver.rung_history(), on_record=driver.record_rung)
        if scheduler.restored and progress is not None:
            progress.note(f"early stopping: ranking against {scheduler.restored} rung records of the "
                          f"earlier runs")
    num_samples = driver.remaining()
    outcome = TunerOutcome(interrupted=False, fit_s=0.0)
    if num_samples <= 0:
        return outcome
    res = {"cpu": float(resources.get("cpu", 1))}
    if float(resources.get("gpu", 0) or 0) > 0:
        res["gpu"] = float(resources["gpu"])
    tuner = tune.Tuner(
        tune.with_resources(trainable, res),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max(1, int(concurrency))),
            scheduler=scheduler, num_samples=num_samples, reuse_actors=True,
            trial_name_creator=lambda t: t.config["trial_key"],
            trial_dirname_creator=lambda t: t.config["trial_key"],
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=2 if verbose else 0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=int(max_retries)),
        ),
    )
    t0 = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        searcher.interrupted = True
    finally:
        # Tune installs its own SIGINT handler for the run and puts the previous one back only when a
        # Ctrl+C arrives; after a run that ended by itself, the first Ctrl+C (during the front, or the
        # wait for the last charts) would only log "Stop signal received". Put the user's handler back.
        if (sigint is not None and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not sigint):
            signal.signal(signal.SIGINT, sigint)
    outcome.fit_s = time.perf_counter() - t0
    outcome.interrupted = searcher.interrupted or driver.any_live() or driver.remaining() > 0
    outcome.nodes = dict(callback.nodes)
    outcome.tracking_errors = list(callback.tracking_errors)
    return outcome
