"""Run a sweep end to end: spec → plan → MLflow sweep run → Ray → dense baseline → Tuner → front.

:func:`make_plan` validates everything the user gave (space, overrides, flags, paths, tracking URI)
and writes nothing, so ``--dry-run`` and every input error leave no trace. :func:`run_sweep` executes
a plan; Ray, Optuna, MLflow and torch are imported only there.

Results directory (``--results-dir``, default ``./disparse_results/<space name>``; a taken default gets
``-2``, ``-3``... so rerunning the demo starts a new sweep)::

    sweep.json      what --resume needs: sweep id, space file, overrides, tracking URI, experiment
    space.yaml      the space file as given (the spec is rebuilt from it on --resume)
    optuna.journal  the Optuna study (an append-only journal; never the MLflow file); the resume log
                    (a sweep started before the journal has optuna.db, sqlite, and keeps it)
    ray/run-N/      one Ray Tune experiment folder per run / resume
    pareto_front.csv  the front, also logged to MLflow with its plots

Resume: the study says which trials finished; those are neither rerun nor logged again (MLflow runs are
keyed by the trial key); trials a killed driver left running are told FAIL and enqueued again under the
same key; the MLflow run of the stopped attempt is kept apart and the rerun logs to a fresh one
(:mod:`sweeps.tracking.attempts`).

This module holds :func:`run_sweep`; the steps are its neighbours in :mod:`sweeps.run`: ``plan`` (options →
:class:`Plan`, ``--dry-run`` text), ``files`` and ``state`` (the results folder, ``sweep.json``), ``settings``
(resources, early stopping, hypervolume from the space), ``baseline`` (the dense baseline), ``study`` (the
Optuna study and its driver), ``progress`` (the live progress line) and ``output`` (front table, UI
command).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import UserInputError
from . import signals
from .baseline import run_baseline, shared_dense
from .files import lock_results_dir, next_ray_run, write_front_csv
from .output import browse_lines
from .plan import Plan
from .progress import SweepProgress
from .settings import early_stopping, final_hypervolume, fixed_reference, trial_resources, watched_metrics
from .state import write_state
from .study import make_driver, open_study, reconcile, record_skipped, state_counts

__all__ = ["SweepSummary", "run_sweep"]

_INTERRUPTED = "sweep interrupted; continue it with --resume"


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
    eligible: list = field(default_factory=list)        # MLflow records of every fully trained trial
    nodes: dict = field(default_factory=dict)           # trial key -> Ray node id
    baseline: dict | None = None
    timings: dict = field(default_factory=dict)
    tracking_errors: list = field(default_factory=list)
    hypervolume: float | None = None
    experiment_id: str | None = None                    # the MLflow experiment and sweep run (for links)
    sweep_run_id: str | None = None


def run_sweep(plan: Plan, out: TextIO | None = None) -> SweepSummary:
    """Execute a plan. Prints progress to ``out``; returns the summary (``interrupted`` on Ctrl+C).

    What is opened is closed in the one ``finally`` (Ray's session, the results folder's lock); the sweep
    is marked interrupted or failed through the tracker once it is open. The tracker opens on a thread
    beside ``ray.init`` (MLflow's first contact: schema creation/migration on a new sqlite file), or after
    it when a cluster or GPUs must be checked first (before MLflow or the results folder is written);
    a local Ray of CPUs only was checked by the plan against ``os.cpu_count()``, and Ray's own count has
    the last word once the tracker is open.
    """
    out = out or sys.stdout
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    from .. import ray as backend  # Ray: the heavy import
    timings["imports_s"] = time.perf_counter() - t0
    if not plan.verbose:
        _quiet_libraries()

    summary = SweepSummary(sweep_id=plan.sweep_id, results_dir=plan.results_dir,
                           tracking_uri=plan.tracking_uri, experiment=plan.experiment,
                           interrupted=False, total=plan.spec.trials, timings=timings)
    check_first = bool(plan.ray_address) or trial_resources(plan.spec)[1] > 0
    opening = _TrackerOpening(plan)
    lock = lock_results_dir(plan.results_dir) if plan.resume else None  # a resumed folder: at once
    session = tracker = None
    try:
        if not check_first:
            opening.start()                           # MLflow's first contact overlaps ray.init
        session = _start_ray(plan, backend, opening)  # if Ray fails, the opening is joined first
        signals.reinstall()  # ray.init replaced the SIGTERM handler with sys.exit
        if check_first:
            _check_cluster(plan.spec, session)
            opening.start()
        tracker = opening.result()                    # joins; raises what opening the tracker raised
        summary.experiment_id, summary.sweep_run_id = tracker.experiment_id, tracker.parent_run_id
        timings["ray_init_s"] = session.init_s
        timings["mlflow_s"] = opening.seconds
        if lock is None:
            lock = lock_results_dir(plan.results_dir)
        if not check_first:
            _check_cluster(plan.spec, session)
        write_state(plan, "running")
        summary.baseline, timings["baseline_s"] = run_baseline(plan, tracker, backend, out)
        _run_trials(plan, summary, session, tracker, backend, out)
        return summary
    except KeyboardInterrupt:
        summary.interrupted = True
        if tracker is not None:
            _stop(plan, tracker, _INTERRUPTED, "interrupted")
        else:
            _close_opened(opening, _INTERRUPTED)
        return summary
    except BaseException as err:
        if tracker is not None:
            _stop(plan, tracker, f"sweep failed: {type(err).__name__}: {err}", "failed")
        else:
            _close_opened(opening, f"sweep failed: {type(err).__name__}: {err}")
        raise
    finally:
        if session is not None:
            timings["ray_shutdown_s"] = _close_ray(session, out)
        if lock is not None:
            lock.close()
        timings["total_s"] = time.perf_counter() - t_all


# ------------------------------------------------------------------------------------- start-up
def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    import logging
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _TrackerOpening(threading.Thread):
    """The MLflow sweep run, started (or reopened with ``--resume``) on a thread of its own.

    :meth:`result` joins the thread and returns the :class:`~sweeps.tracking.SweepTracker`, or raises
    what opening it raised; :attr:`seconds` is how long the opening took (0.0 until it ended). A daemon:
    one left behind by a Ctrl+C during the wait does not keep the process alive.
    """

    def __init__(self, plan: Plan):
        super().__init__(name="mlflow-open", daemon=True)
        self._plan = plan
        self._tracker = None
        self._error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._tracker = _open_tracker(self._plan)
        except BaseException as err:  # noqa: BLE001 - raised by result(), in the thread that waits
            self._error = err
        self.seconds = time.perf_counter() - t0

    def wait(self) -> None:
        """Join the thread if it was started (a no-op otherwise)."""
        if self.ident is not None:
            self.join()

    def opened(self):
        """The tracker, if the opening has ended with one (None while it runs, or when it failed)."""
        return None if self.is_alive() else self._tracker

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._tracker


def _close_opened(opening: _TrackerOpening, reason: str) -> None:
    """Ray failed (or Ctrl+C came) while the sweep run was being opened beside it: a sweep run that did
    open is closed with the reason, never left RUNNING; the results folder was not written yet, so
    only the run is touched (a warning if even that fails: the first error goes on)."""
    tracker = opening.opened()
    if tracker is None:
        return
    try:
        tracker.abort(reason)
    except Exception as err:  # noqa: BLE001 - the error that stopped the sweep is the one to show
        print(f"warning: while closing the sweep run: {type(err).__name__}: "
              f"{(str(err).splitlines() or [''])[0][:200]}", file=sys.stderr)


def _open_tracker(plan: Plan):
    """Start (or reopen) the MLflow sweep run; returns its tracker."""
    from ..tracking import SweepTracker

    spec = plan.spec
    tracker = SweepTracker(plan.tracking_uri, plan.experiment)
    tracker.start_sweep(spec, sweep_id=plan.sweep_id, config={
        "trials": spec.trials, "concurrency": spec.concurrency,
        "results_dir": str(plan.results_dir), "overrides": list(plan.overrides)},
        space_path=plan.space_file, space_text=spec.raw_text or None, resume=plan.resume)
    return tracker


def _start_ray(plan: Plan, backend, opening: _TrackerOpening):
    """Start or join Ray (beside ``opening`` when it was started) and return the session to close.

    When Ray fails or Ctrl+C stops it, the opening is waited for before the error goes on, so MLflow's
    first writes are not cut off by the process ending. When Ray answers, the caller waits for the
    opening (``opening.result()``) holding the session, which it closes even if that wait is interrupted.
    """
    try:
        return _connect(plan, backend)
    except BaseException:
        opening.wait()
        raise


def _connect(plan: Plan, backend):
    gpu = trial_resources(plan.spec)[1]
    try:
        return backend.connect(plan.ray_address, num_gpus=None if gpu else 0, verbose=plan.verbose,
                               user_code=getattr(plan.spec, "user_code", ()))
    except ConnectionError as err:
        raise UserInputError(f"--ray-address: cannot join {plan.ray_address!r} ({err}); expected "
                             f"a running Ray cluster") from None


def _check_cluster(spec, session) -> None:
    """One trial must fit one node of the cluster, or Tune would wait for ever."""
    cpu, gpu = trial_resources(spec)
    for key, want, node, total, what in (("resources.cpu", cpu, session.node_cpus, session.cpus, "CPUs"),
                                         ("resources.gpu", gpu, session.node_gpus, session.gpus, "GPUs")):
        have = node or total  # node_* unknown (0) when Ray did not list its nodes: the total
        if want > have:
            where = (f"the Ray cluster has {total:g} {what}" if session.nodes <= 1 else
                     f"the largest of the Ray cluster's {session.nodes} nodes has {have:g} {what}")
            raise UserInputError(f"{key}: {want:g} per trial, but {where}; expected at most {have:g}")


def _close_ray(session, out: TextIO) -> float:
    """Stop Ray when this process started it; returns the seconds it took."""
    t0 = time.perf_counter()
    try:
        session.close()
    except KeyboardInterrupt:  # Ctrl+C while Ray shuts down: the sweep's state is written already
        print("Ray's shutdown was interrupted (Ctrl+C); the sweep's results are saved", file=out)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------- trials
def _run_trials(plan: Plan, summary: SweepSummary, session, tracker, backend, out: TextIO) -> None:
    """Open the study, run the Tuner over it, then close the sweep (front, state) or mark it interrupted."""
    from ..pareto import OutwardHypervolume
    from ..space import directions

    spec, timings = plan.spec, summary.timings
    t0 = time.perf_counter()
    study = open_study(plan)
    driver = make_driver(spec, study, summary.baseline, plan.sweep_id,
                         note=lambda line: print(line, file=out, flush=True),
                         on_skip=lambda *skipped: record_skipped(tracker, *skipped),
                         start_from=shared_dense(spec, plan.results_dir.parent).folder)
    if plan.resume:
        again = driver.recover_interrupted()
        if again:
            print(f"resume: rerunning interrupted trials {', '.join(again)}", file=out)
        reconcile(driver, tracker)
    timings["study_s"] = time.perf_counter() - t0

    # the live hypervolume: a reference from the points so far that only moves outward, so the figure
    # never decreases, over a resume too (the space's reference values where given); the final figure
    # uses one reference from all the trials, so it does not depend on the order they finished in
    before = sorted(driver.completed(), key=lambda t: (t.datetime_complete is None, t.datetime_complete
                                                       or 0, t.number))
    points_before = [tuple(t.values) for t in before]
    live_hv = OutwardHypervolume(fixed_reference(spec))
    live_hv.replay(points_before, directions(spec))
    progress = SweepProgress(spec.trials, spec.metric_names, directions(spec), stream=out,
                             hypervolume=live_hv, done_before=len(driver.done_keys()),
                             points_before=points_before)
    _announce(plan, driver, session, timings, out, tracker)
    progress.render()
    outcome = backend.run_tuner(
        driver, resources=spec.resources, concurrency=spec.concurrency,
        storage_path=str(plan.results_dir / "ray"), name=next_ray_run(plan.results_dir),
        tracker=tracker, progress=progress, early_stopping=early_stopping(spec),
        max_retries=spec.max_retries, watch=watched_metrics(spec), verbose=plan.verbose)
    timings["tuner_s"] = outcome.fit_s
    summary.nodes = outcome.nodes
    summary.tracking_errors = outcome.tracking_errors
    summary.states = state_counts(study)
    if outcome.interrupted:
        summary.interrupted = True
        _stop(plan, tracker, _INTERRUPTED, "interrupted")
        return
    _finish(plan, summary, tracker, progress.points)


def _announce(plan: Plan, driver, session, timings: dict, out: TextIO, tracker) -> None:
    spec = plan.spec
    if plan.verbose:
        print("start-up: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items()), file=out)
    print(f"sweep {plan.sweep_id}: {driver.remaining()} of {spec.trials} trials to run, "
          f"{spec.concurrency} at a time on {session.cpus:g} CPUs"
          + (f" / {session.gpus:g} GPUs" if session.gpus else "")
          + (f", {session.nodes} nodes" if session.nodes > 1 else ""), file=out)
    for line in browse_lines(plan.tracking_uri, tracker.experiment_id, tracker.parent_run_id, plan.study_path):
        print(line, file=out)
    out.flush()


def _finish(plan: Plan, summary: SweepSummary, tracker, points: list) -> None:
    """Close the MLflow sweep run with the front and hypervolume; write the CSV and the final state."""
    from ..space import directions

    spec = plan.spec
    dirs = directions(spec)
    reference, history = final_hypervolume(points, dirs, fixed_reference(spec))
    summary.front = tracker.finish_sweep(objectives=spec.metric_names, directions=dirs,
                                         reference_point=reference, hypervolume_history=history)
    summary.eligible = tracker.eligible
    summary.hypervolume = history[-1] if history else None
    write_front_csv(plan.results_dir, tracker.front_csv_text, summary.front, spec.metric_names)
    write_state(plan, "finished")


def _stop(plan: Plan, tracker, reason: str, status: str) -> None:
    """Close the sweep run and record the status; on the failure path neither may hide the first error
    (the folder or the store that failed may fail again), so their own errors are only warnings."""
    for step in (lambda: tracker.abort(reason), lambda: write_state(plan, status)):
        try:
            step()
        except Exception as err:  # noqa: BLE001 - see above
            print(f"warning: while stopping the sweep: {type(err).__name__}: "
                  f"{(str(err).splitlines() or [''])[0][:200]}", file=sys.stderr)
