"""Run a sweep end to end: spec → plan → MLflow sweep run → Ray → dense baseline → Tuner → front.

:func:`make_plan` validates everything the user gave (space, overrides, flags, paths, tracking URI)
and writes nothing, so ``--dry-run`` and every input error leave no trace. :func:`run_sweep` executes
a plan; Ray, Optuna, MLflow and torch are imported only there.

Results directory (``--results-dir``, default ``./disparse_results/<space name>``; a taken default gets
``-2``, ``-3``... so rerunning the demo starts a new sweep)::

    sweep.json      what --resume needs: sweep id, space file, overrides, tracking URI, experiment
    space.yaml      the space file as given (the spec is rebuilt from it on --resume)
    optuna.db       the Optuna study (sqlite, never the MLflow file); the resume log
    ray/run-N/      one Ray Tune experiment folder per run / resume
    pareto_front.csv  the front, also logged to MLflow with its plots

Resume: the study says which trials finished; those are neither rerun nor logged again (MLflow runs are
keyed by the trial key); trials a killed driver left running are told FAIL and enqueued again under the
same key, and the MLflow run of that key is reopened.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

from .errors import UserInputError

__all__ = ["RunOptions", "Plan", "SweepSummary", "make_plan", "describe_plan", "run_sweep",
           "baseline_config", "format_front"]

STATE_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
STUDY_FILE = "optuna.db"
DEFAULT_RESULTS_ROOT = "disparse_results"

# run_trial keys that only matter to sparsification: a dense baseline drops them
_SPARSE_ONLY = ("criterion", "sparsity", "distribution", "score_batches", "pretrain_steps",
                "finetune_lr", "gradual", "dynamic", "checkpoint_dir", "checkpoint_every", "resume",
                "export_path", "baseline_metrics")


@dataclass
class RunOptions:
    space: str | None = None
    overrides: Sequence[str] = ()
    trials: int | None = None
    concurrency: int | None = None
    seed: int | None = None
    ray_address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    results_dir: str | None = None
    resume: bool = False
    dry_run: bool = False
    verbose: bool = False


@dataclass
class Plan:
    spec: Any
    sweep_id: str
    results_dir: Path
    tracking_uri: str
    experiment: str
    ray_address: str | None
    resume: bool
    overrides: list[str]
    space_file: Path | None
    verbose: bool = False

    @property
    def study_url(self) -> str:
        return f"sqlite:///{(self.results_dir / STUDY_FILE).resolve()}"


@dataclass
class SweepSummary:
    sweep_id: str
    results_dir: Path
    tracking_uri: str
    experiment: str
    interrupted: bool
    total: int
    states: dict = field(default_factory=dict)          # COMPLETE / PRUNED / FAIL counts
    front: list = field(default_factory=list)           # MLflow records of the front
    nodes: dict = field(default_factory=dict)           # trial key -> Ray node id
    baseline: dict | None = None
    timings: dict = field(default_factory=dict)
    tracking_errors: list = field(default_factory=list)
    hypervolume: float | None = None


# --------------------------------------------------------------------------------------------- plan
def _overrides(opts: RunOptions) -> list[str]:
    out = [str(o) for o in opts.overrides]
    if opts.trials is not None:
        out.append(f"trials={opts.trials}")
    if opts.concurrency is not None:
        out.append(f"concurrency={opts.concurrency}")
    if opts.seed is not None:
        out.append(f"sampler.seed={opts.seed}")
    return out


def _read_state(results_dir: Path) -> dict:
    path = results_dir / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserInputError(f"--resume: {str(results_dir)!r} holds no readable {STATE_FILE} "
                             f"({type(err).__name__}); expected the results folder of a sweep") from None


def _latest_results_dir(root: Path, name: str) -> Path | None:
    found = [p for p in root.glob(f"{name}*") if (p / STATE_FILE).is_file()
             and (p.name == name or p.name[len(name):].lstrip("-").isdigit())]
    return max(found, key=lambda p: (p / STATE_FILE).stat().st_mtime) if found else None


def _free_results_dir(root: Path, name: str) -> Path:
    candidate, n = root / name, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def _check_address(address: str | None) -> None:
    if address is None:
        return
    text = address.strip()
    if text == "auto" or text.startswith("ray://"):
        return
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserInputError(f"--ray-address: {address!r} is not valid; expected 'auto' or HOST:PORT "
                             f"(e.g. 127.0.0.1:6379)")
    import socket

    try:  # the user named this address: one TCP connect tells a typo from a cluster, in seconds
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise UserInputError(f"--ray-address: nothing answers at {address!r} ({err.strerror or err}); "
                             f"expected the address of a running Ray head (ray start --head)") from None


def _check_resources(spec) -> None:
    cpu = float(spec.resources.get("cpu", 1) or 0)
    gpu = float(spec.resources.get("gpu", 0) or 0)
    if cpu <= 0 and gpu <= 0:
        raise UserInputError(f"resources: cpu={cpu:g}, gpu={gpu:g}; expected cpu > 0 or gpu > 0")


def make_plan(opts: RunOptions) -> Plan:
    """Validate the options into a plan. Writes nothing; raises UserInputError (one line)."""
    from .space import DEFAULT_SPACE, load_space
    from .tracking import DEFAULT_EXPERIMENT, default_tracking_uri, validate_tracking_uri

    if opts.resume and opts.dry_run:
        raise UserInputError("--resume and --dry-run: cannot be combined; expected one of them")
    for flag, value in (("--trials", opts.trials), ("--concurrency", opts.concurrency)):
        if value is not None and value < 1:
            raise UserInputError(f"{flag}: {value} is not allowed; expected an integer >= 1")
    if opts.seed is not None and opts.seed < 0:
        raise UserInputError(f"--seed: {opts.seed} is not allowed; expected an integer >= 0")
    _check_address(opts.ray_address)
    overrides = _overrides(opts)
    cwd = Path.cwd()
    root = cwd / DEFAULT_RESULTS_ROOT

    if opts.resume:
        if opts.results_dir:
            results_dir = Path(opts.results_dir).expanduser().resolve()
        else:
            name = Path(opts.space).stem if opts.space else DEFAULT_SPACE
            found = _latest_results_dir(root, name)
            if found is None:
                raise UserInputError(f"--resume: no sweep named {name!r} under {str(root)!r}; expected "
                                     f"--results-dir DIR of the sweep to continue")
            results_dir = found
        state = _read_state(results_dir)
        space_file = results_dir / SPACE_COPY
        if not space_file.is_file():
            raise UserInputError(f"--resume: {str(space_file)!r} is missing; expected the space copy "
                                 f"written when the sweep started")
        if opts.space:
            given = load_space(opts.space)  # validates; a different file cannot continue this sweep
            if given.raw_text != space_file.read_text(encoding="utf-8"):
                raise UserInputError(f"--space: {opts.space!r} differs from the space this sweep started "
                                     f"with ({str(space_file)!r}); expected the same file or no --space")
        all_overrides = list(state.get("overrides", [])) + overrides
        spec = load_space(str(space_file), all_overrides)
        spec.name = state.get("space_name", spec.name)
        sweep_id = state["sweep_id"]
        tracking_uri = opts.tracking_uri or state["tracking_uri"]
        experiment = opts.experiment or state.get("experiment", DEFAULT_EXPERIMENT)
        ray_address = opts.ray_address or state.get("ray_address")
        tracking_uri = validate_tracking_uri(tracking_uri, create=False)
        _check_resources(spec)
        return Plan(spec=spec, sweep_id=sweep_id, results_dir=results_dir, tracking_uri=tracking_uri,
                    experiment=experiment, ray_address=ray_address, resume=True,
                    overrides=all_overrides, space_file=space_file, verbose=opts.verbose)

    # cheap checks before the space (whose validation loads the core, i.e. torch)
    tracking_uri = _check_tracking_uri(opts.tracking_uri or default_tracking_uri(cwd))
    results_dir = None
    if opts.results_dir:
        results_dir = Path(opts.results_dir).expanduser().resolve()
        if results_dir.exists() and not results_dir.is_dir():
            raise UserInputError(f"--results-dir: {str(results_dir)!r} is a file; expected a folder")
        if (results_dir / STATE_FILE).exists():
            raise UserInputError(f"--results-dir: {str(results_dir)!r} already holds a sweep; expected "
                                 f"--resume to continue it or another folder")
    spec = load_space(opts.space or DEFAULT_SPACE, overrides)
    _check_resources(spec)
    if results_dir is None:
        results_dir = _free_results_dir(root, spec.name)
    experiment = opts.experiment or DEFAULT_EXPERIMENT
    sweep_id = _free_sweep_id(results_dir.name, tracking_uri, experiment)
    return Plan(spec=spec, sweep_id=sweep_id, results_dir=results_dir,
                tracking_uri=tracking_uri, experiment=experiment,
                ray_address=opts.ray_address, resume=False, overrides=overrides,
                space_file=Path(spec.path) if spec.path else None, verbose=opts.verbose)


def _free_sweep_id(name: str, tracking_uri: str, experiment: str) -> str:
    """``name``, or ``name-2``, ``name-3``... when the MLflow experiment already has that sweep."""
    path = Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") else None
    if path is not None and not path.is_file():
        return name  # a new store: every id is free (and nothing is created to find out)
    from .tracking import load_sweep

    candidate, n = name, 1
    while True:
        try:
            load_sweep(tracking_uri, experiment, candidate)
        except UserInputError:
            return candidate
        n += 1
        candidate = f"{name}-{n}"


def _check_tracking_uri(uri: str) -> str:
    """Validate a store a sweep will write, without creating anything (no folder, no file)."""
    from urllib.parse import urlparse

    from .tracking import validate_tracking_uri

    text = str(uri)
    if urlparse(text).scheme == "sqlite" and text.startswith("sqlite:///"):
        path = Path(text[len("sqlite:///"):].split("?", 1)[0]).expanduser().resolve()
        if not path.parent.exists():
            ancestor = path.parent
            while not ancestor.exists():
                ancestor = ancestor.parent
            if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
                raise UserInputError(f"--tracking-uri: {text!r}: folder {str(path.parent)!r} cannot be "
                                     f"created ({str(ancestor)!r} is not writable); expected a "
                                     f"writable location")
            return "sqlite:///" + str(path)
    return validate_tracking_uri(text, create=True)


def baseline_config(spec) -> dict:
    """The dense run every trial is compared with: the space's fixed base, same training budget."""
    config = json.loads(json.dumps(spec.workload))
    for key in _SPARSE_ONLY:
        config.pop(key, None)
    config["method"] = "dense"
    return _absolute_paths(config)


def _absolute_paths(config: dict) -> dict:
    for key in ("data_root", "checkpoint_dir", "export_path"):
        if isinstance(config.get(key), str) and config[key]:
            config[key] = str(Path(config[key]).expanduser().resolve())
    return config


def _early_stopping(spec):
    es = dict(spec.early_stopping or {})
    if es.get("type", "none") in (None, "none"):
        return None
    from .ray_backend import EarlyStopping

    mode = str(es.get("mode") or "").lower()
    mode = {"maximize": "max", "minimize": "min"}.get(mode, mode)
    if mode not in ("max", "min"):
        from .budgets import higher_is_better
        mode = "max" if higher_is_better(es["metric"]) else "min"
    max_t = int(es.get("max_steps") or _max_steps(spec))
    return EarlyStopping(metric=es["metric"], mode=mode, max_t=max_t,
                         grace_period=int(es.get("grace_steps", es.get("grace_period", 1))),
                         reduction_factor=float(es.get("reduction_factor", 2)), time_attr="step")


def _max_steps(spec) -> int:
    param = spec.param.get("steps") if hasattr(spec, "param") else None
    if param is not None:
        values = param.possible_values()
        return int(max(values) if values else param.high)
    return int(spec.workload.get("steps", 300))


def describe_plan(plan: Plan) -> str:
    """The --dry-run text: what would run, with which settings, and where things would be written."""
    spec = plan.spec
    lines = [f"sweep {plan.sweep_id!r} ({'resume' if plan.resume else 'new'})"
             f" from space {spec.name!r}" + (f" ({spec.path})" if spec.path else "")]
    if getattr(spec, "description", ""):
        lines.append(f"  {spec.description.strip().splitlines()[0]}")
    base = spec.workload
    lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in base.items() if v is not None))
    lines.append("parameters:")
    for p in spec.parameters:
        lines.append(f"  {p.name}: {json.dumps(p.to_dict(), default=str)}")
    lines.append("objectives: " + ", ".join(f"{o.name} ({o.direction})" for o in spec.objectives))
    lines.append("budgets: " + (", ".join(b.text for b in spec.budgets) or "none"))
    lines.append(f"sampler: {json.dumps(spec.sampler, default=str)}")
    lines.append(f"trials: {spec.trials}, concurrency: {spec.concurrency}, "
                 f"resources per trial: {json.dumps(spec.resources)}, max retries: {spec.max_retries}")
    es = spec.early_stopping or {}
    lines.append("early stopping: " + ("none" if es.get("type", "none") in (None, "none")
                                       else json.dumps(es, default=str)))
    lines.append(f"dense baseline: {'reused from MLflow or run first' if spec.baseline else 'off'}")
    lines.append("ray: " + (f"cluster at {plan.ray_address}" if plan.ray_address
                            else f"local on 127.0.0.1, {os.cpu_count()} CPUs"))
    lines.append(f"mlflow: {plan.tracking_uri}, experiment {plan.experiment!r}")
    lines.append(f"results: {plan.results_dir} (sweep.json, space.yaml, optuna.db, ray/)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- running
def _write_state(plan: Plan, status: str) -> None:
    plan.results_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.results_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if not state:
        state = {"sweep_id": plan.sweep_id, "space_name": plan.spec.name,
                 "space_source": str(plan.space_file) if plan.space_file else None,
                 "overrides": list(plan.overrides), "tracking_uri": plan.tracking_uri,
                 "experiment": plan.experiment, "ray_address": plan.ray_address,
                 "study": STUDY_FILE, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        copy = plan.results_dir / SPACE_COPY
        if plan.spec.raw_text:
            copy.write_text(plan.spec.raw_text, encoding="utf-8")
        elif plan.space_file:
            shutil.copyfile(plan.space_file, copy)
    else:
        state["overrides"] = list(plan.overrides)
    state["status"] = status
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path)


def _lock_results_dir(results_dir: Path):
    """An exclusive lock on ``<results>/.lock`` for the whole run (released by the OS even on SIGKILL)."""
    import fcntl

    results_dir.mkdir(parents=True, exist_ok=True)
    handle = open(results_dir / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UserInputError(f"--results-dir: {str(results_dir)!r} is in use by another running sweep; "
                             f"expected it to finish (or be stopped) first") from None
    return handle


def _next_ray_run(results_dir: Path) -> str:
    ray_dir = results_dir / "ray"
    n = 1
    while (ray_dir / f"run-{n}").exists():
        n += 1
    return f"run-{n}"


def open_study(plan: Plan):
    """The sweep's Optuna study (created on first use) in ``<results>/optuna.db``."""
    import optuna

    from .space import directions, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(plan.study_url,
                                         engine_kwargs={"connect_args": {"timeout": 30}})
    study = optuna.create_study(storage=storage, study_name=plan.sweep_id,
                                directions=directions(plan.spec), sampler=make_sampler(plan.spec),
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions(plan.spec)]:
        raise UserInputError(f"objectives: the study in {plan.study_url} has directions "
                             f"{[d.name.lower() for d in study.directions]}; expected the space's "
                             f"{directions(plan.spec)}")
    return study


def _baseline(plan: Plan, tracker, backend, out: TextIO) -> tuple[dict | None, float]:
    from .tracking import baseline_key

    if not plan.spec.baseline:
        return None, 0.0
    config = baseline_config(plan.spec)
    key = baseline_key(config)
    found = tracker.find_baseline_run(key)
    if found:
        tracker.set_baseline(found["run_id"])
        print(f"dense baseline: reusing MLflow run {found['run_id']} (key {key})", file=out)
        return dict(found["metrics"]), 0.0
    cpu = float(plan.spec.resources.get("cpu", 1) or 0)
    gpu = float(plan.spec.resources.get("gpu", 0) or 0)
    config["num_threads"] = max(1, int(cpu))
    print(f"dense baseline: training (key {key}) ...", file=out, flush=True)
    t0 = time.perf_counter()
    result = backend.run_remote(backend.baseline_task, config, cpu=cpu, gpu=gpu)
    seconds = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in result.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracker.log_baseline(key, config, metrics)
    print(f"dense baseline: done in {seconds:.1f}s", file=out, flush=True)
    return metrics, seconds


def _reconcile(driver, tracker) -> None:
    """After a hard kill: make MLflow agree with the study for every trial that ended."""
    from optuna.trial import TrialState

    from .searcher import EARLY_STOPPED, FAIL_REASON, METRICS

    for key, t in driver._latest_by_key().items():
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            tracker.trial_completed(key, dict(t.user_attrs.get(METRICS, {})),
                                    early_stopped=bool(t.user_attrs.get(EARLY_STOPPED)))
        elif t.state == TrialState.FAIL:  # idempotent: a FINISHED run is never touched
            tracker.trial_failed(key, t.user_attrs.get(FAIL_REASON, "failed"))


def _reference_point(spec) -> list[float] | None:
    ref = getattr(spec, "reference_point", None)
    return list(ref) if ref else None


def run_sweep(plan: Plan, out: TextIO | None = None) -> SweepSummary:
    """Execute a plan. Prints progress to ``out``; returns the summary (``interrupted`` on Ctrl+C)."""
    out = out or sys.stdout
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    from . import ray_backend as backend
    from .progress import SweepProgress
    from .searcher import StudyDriver
    from .space import suggest
    from .tracking import SweepTracker
    timings["imports_s"] = time.perf_counter() - t0
    spec = plan.spec

    if not plan.verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
        import logging
        for name in ("mlflow", "alembic", "optuna"):
            logging.getLogger(name).setLevel(logging.WARNING)

    # MLflow's first contact (schema creation/migration on a new sqlite file) overlaps with ray.init
    import threading

    opened: dict[str, Any] = {}

    def open_tracker() -> None:
        t_start = time.perf_counter()
        try:
            tracker = SweepTracker(plan.tracking_uri, plan.experiment)
            tracker.start_sweep(spec, sweep_id=plan.sweep_id, config={
                "trials": spec.trials, "concurrency": spec.concurrency,
                "results_dir": str(plan.results_dir), "overrides": list(plan.overrides)},
                space_path=plan.space_file, space_text=spec.raw_text or None, resume=plan.resume)
            opened["tracker"] = tracker
        except BaseException as err:  # re-raised in the main thread
            opened["error"] = err
        opened["seconds"] = time.perf_counter() - t_start

    lock = _lock_results_dir(plan.results_dir) if plan.resume else None
    mlflow_thread = threading.Thread(target=open_tracker, name="mlflow-open", daemon=True)
    mlflow_thread.start()

    session = None
    tracker = None
    summary = SweepSummary(sweep_id=plan.sweep_id, results_dir=plan.results_dir,
                           tracking_uri=plan.tracking_uri, experiment=plan.experiment,
                           interrupted=False, total=spec.trials, timings=timings)
    try:
        gpu = float(spec.resources.get("gpu", 0) or 0)
        try:
            session = backend.connect(plan.ray_address, num_gpus=None if gpu else 0,
                                      verbose=plan.verbose)
        except ConnectionError as err:
            raise UserInputError(f"--ray-address: cannot join {plan.ray_address!r} ({err}); expected "
                                 f"a running Ray cluster") from None
        finally:
            mlflow_thread.join()
        timings["ray_init_s"] = session.init_s
        timings["mlflow_s"] = opened.get("seconds", 0.0)
        if "error" in opened:
            raise opened["error"]
        tracker = opened["tracker"]
        if lock is None:
            lock = _lock_results_dir(plan.results_dir)
        _write_state(plan, "running")
        need = float(spec.resources.get("cpu", 1) or 0)
        if need > session.cpus:
            raise UserInputError(f"resources.cpu: {need:g} per trial, but the Ray cluster has "
                                 f"{session.cpus:g} CPUs; expected at most {session.cpus:g}")
        if gpu > session.gpus:
            raise UserInputError(f"resources.gpu: {gpu:g} per trial, but the Ray cluster has "
                                 f"{session.gpus:g} GPUs; expected at most {session.gpus:g}")
        baseline, timings["baseline_s"] = _baseline(plan, tracker, backend, out)
        summary.baseline = baseline

        t0 = time.perf_counter()
        study = open_study(plan)
        from .budgets import constraint_values

        extra = {"num_threads": max(1, int(float(spec.resources.get("cpu", 1) or 1)))}
        if baseline:
            extra["baseline_metrics"] = baseline
        driver = StudyDriver(
            study, lambda trial: _absolute_paths(suggest(spec, trial)), spec.metric_names,
            spec.trials,
            constraints=(lambda m: constraint_values(spec.budgets, m, baseline)) if spec.budgets else None,
            extra_config=extra)
        if plan.resume:
            again = driver.recover_interrupted()
            if again:
                print(f"resume: rerunning interrupted trials {', '.join(again)}", file=out)
            _reconcile(driver, tracker)
        timings["study_s"] = time.perf_counter() - t0

        done_before = len(driver.done_keys())
        points = [tuple(t.values) for t in driver.completed()]
        dirs = [d for d in (o.direction for o in spec.objectives)]
        progress = SweepProgress(spec.trials, spec.metric_names, dirs, stream=out,
                                 hypervolume=_hv_function(spec), done_before=done_before,
                                 points_before=points)
        if plan.verbose:
            print("start-up: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items()),
                  file=out)
        print(f"sweep {plan.sweep_id}: {driver.remaining()} of {spec.trials} trials to run, "
              f"{spec.concurrency} at a time on {session.cpus:g} CPUs"
              + (f" / {session.gpus:g} GPUs" if session.gpus else "")
              + (f", {session.nodes} nodes" if session.nodes > 1 else ""), file=out, flush=True)
        progress.render()
        outcome = backend.run_tuner(
            driver, resources=spec.resources, concurrency=spec.concurrency,
            storage_path=str(plan.results_dir / "ray"), name=_next_ray_run(plan.results_dir),
            tracker=tracker, progress=progress, early_stopping=_early_stopping(spec),
            max_retries=spec.max_retries, watch=_watched(spec), verbose=plan.verbose)
        timings["tuner_s"] = outcome.fit_s
        summary.nodes = outcome.nodes
        summary.tracking_errors = outcome.tracking_errors
        summary.states = _state_counts(study)
        if outcome.interrupted:
            summary.interrupted = True
            tracker.abort("sweep interrupted; continue it with --resume")
            _write_state(plan, "interrupted")
            return summary
        reference, history = _final_hypervolume(progress.points, dirs, spec)
        summary.front = tracker.finish_sweep(objectives=spec.metric_names, directions=dirs,
                                             reference_point=reference,
                                             hypervolume_history=history)
        summary.hypervolume = history[-1] if history else None
        _write_front_csv(plan, summary.front, spec.metric_names)
        _write_state(plan, "finished")
        return summary
    except KeyboardInterrupt:
        summary.interrupted = True
        if tracker is not None:
            tracker.abort("sweep interrupted; continue it with --resume")
            _write_state(plan, "interrupted")
        return summary
    except BaseException as err:
        if tracker is not None:
            tracker.abort(f"sweep failed: {type(err).__name__}: {err}")
            _write_state(plan, "failed")
        raise
    finally:
        if session is not None:
            t0 = time.perf_counter()
            session.close()
            timings["ray_shutdown_s"] = time.perf_counter() - t0
        if lock is not None:
            lock.close()
        timings["total_s"] = time.perf_counter() - t_all


def _watched(spec) -> list[str]:
    names = list(spec.metric_names)
    es = spec.early_stopping or {}
    if es.get("metric") and es["metric"] not in names:
        names.append(es["metric"])
    return names


def _hv_function(spec):
    """Hypervolume for the live display: a fixed reference if the space gives one, else the worst
    point seen so far (an indicator while running; the logged history uses one final reference)."""
    from .pareto import hypervolume

    ref = _reference_point(spec)
    return lambda points, dirs: hypervolume(points, dirs, ref)


def _final_hypervolume(points: list, dirs: list, spec) -> tuple[list | None, list | None]:
    """(reference point, hypervolume after each fully trained trial) with one fixed reference."""
    if not points:
        return None, None
    from .pareto import default_reference, hypervolume_history

    ref = _reference_point(spec) or default_reference(points, dirs)
    try:
        return list(ref), hypervolume_history(points, dirs, ref)
    except ValueError:
        return None, None


def _state_counts(study) -> dict:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _write_front_csv(plan: Plan, front: list, objectives: Sequence[str]) -> None:
    from .tracking import front_csv

    try:
        text = front_csv(front, objectives, [])
    except Exception:  # the MLflow copy is the reference; the local one is a convenience
        return
    (plan.results_dir / "pareto_front.csv").write_text(text)


# -------------------------------------------------------------------------------------------- output
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def format_front(front: Sequence[dict], objectives: Sequence[str], max_rows: int = 30) -> str:
    """The front as a plain-text table: trial, objectives, method, sparsity, key params."""
    if not front:
        return "(empty Pareto front: no trial completed its full training)"
    param_cols = []
    for name in ("method", "sparsity", "cutoff", "criterion"):
        if any(name in (r.get("config") or {}) for r in front):
            param_cols.append(name)
    header = ["trial"] + list(objectives) + param_cols
    rows = []
    for r in front[:max_rows]:
        cfg = r.get("config") or {}
        rows.append([str(r.get("trial_key") or r.get("run_id", "")[:8])]
                    + [_fmt(r["metrics"].get(o)) for o in objectives]
                    + [_fmt(cfg.get(c)) for c in param_cols])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    text = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if len(front) > max_rows:
        text.append(f"... {len(front) - max_rows} more (see pareto_front.csv)")
    return "\n".join(text)


def mlflow_ui_command(tracking_uri: str) -> str:
    return (f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 "
            f"--port 5000")
