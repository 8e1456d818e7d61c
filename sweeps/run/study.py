"""The sweep's Optuna study in ``<results>/optuna.journal``: opening it, the driver that asks and tells it,
making MLflow agree with it after a hard kill, counting its trial states.

Optuna is imported only inside these functions. Part of :mod:`sweeps.run`, which re-exports the public
names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserInputError
from .baseline import absolute_paths
from .files import STUDY_FILE, study_file
from .settings import trial_threads

__all__ = ["open_study", "load_sweep_study", "study_storage", "make_driver", "trial_file_paths", "reconcile",
           "state_counts", "record_skipped", "TAG_SKIPPED"]


def open_study(plan):
    """The sweep's Optuna study (created on first use) in ``plan.study_path``."""
    import optuna

    from ..space import directions, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=study_storage(plan.study_path), study_name=plan.sweep_id,
                                directions=directions(plan.spec), sampler=make_sampler(plan.spec),
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions(plan.spec)]:
        raise UserInputError(f"objectives: the study in {plan.study_path} has directions "
                             f"{[d.name.lower() for d in study.directions]}; expected the space's "
                             f"{directions(plan.spec)}")
    if study.metric_names is None:   # optuna-dashboard and Optuna's plots name the objectives, not 0 and 1
        _name_objectives(study, plan.spec.metric_names)
    # a resumed sweep: a sampler seeded as on the first run would draw the first run's configurations
    # again (a random or start-up trial after the resume = trial 0); seed it from the seed and the count
    asked = sum(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))
    if asked:
        study.sampler = make_sampler(plan.spec, asked_before=asked)
    return study


def _name_objectives(study, names) -> None:
    import warnings

    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():       # set_metric_names is marked experimental (since Optuna 3.2)
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(list(names))


def load_sweep_study(results_dir, sweep_id: str | None = None):
    """The Optuna study of the sweep in ``results_dir`` (its ``optuna.journal``, or the ``optuna.db`` of
    an older sweep), for reading: ``sweep_id`` defaults to the one study stored there."""
    import optuna

    folder = Path(results_dir)
    path = study_file(folder)
    if not path.exists():
        raise UserInputError(f"results folder: {str(folder)!r} holds no {STUDY_FILE}; expected the "
                             f"results folder of a sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(path.resolve())
    if sweep_id is None:
        names = [s.study_name for s in storage.get_all_studies()]
        if len(names) != 1:
            raise UserInputError(f"results folder: {str(path)!r} holds {len(names)} studies; expected one "
                                 f"(name the sweep id)")
        sweep_id = names[0]
    return optuna.load_study(study_name=sweep_id, storage=storage)


def study_storage(path: Path):
    """Optuna storage for a study file: a journal (``*.journal``) or, for sweeps started before the
    journal, sqlite (``*.db``).

    Why a journal: Optuna's RDB storage re-reads every trial from sqlite for each ``suggest_*`` call, so an
    ``ask`` cost 0.13 s at the first trials and 0.39 s by trial 30 on the 2-core machine (growing with the
    sweep), ``tell`` 0.05-0.14 s; the journal keeps the study in memory and appends one fsync'ed line
    per change: 4-50 ms and 1-6 ms (``bench/RESULTS.md``, benchmark 5). It is as durable (every change is
    on disk when the call returns) and is read incrementally by other processes."""
    import optuna

    path = Path(path)
    if path.suffix == ".db":
        return _sqlite_storage(optuna, f"sqlite:///{path}")
    from optuna.storages.journal import JournalFileBackend

    _drop_torn_tail(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _drop_torn_tail(path: Path) -> None:
    """A driver killed in the middle of an append can leave a last line without its newline; Optuna
    would then fail on the next line appended after it. Cut the journal back to its last whole line."""
    try:
        with open(path, "rb+") as f:
            f.seek(0, 2)
            size = f.tell()
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
            cut = tail.rfind(b"\n")
            f.truncate(size - back + cut + 1 if cut >= 0 else 0)
    except FileNotFoundError:
        return


def _sqlite_storage(optuna, url: str, tries: int = 3):
    """Optuna's RDB storage. Two first openers of a new file (this driver and a reader such as a monitor
    polling ``optuna.load_study``) both create the schema, and one of them fails on alembic's version row
    (``UNIQUE constraint failed: alembic_version.version_num``); the schema then exists, so retry."""
    import time

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        except Exception as err:  # noqa: BLE001 - only the creation race is retried
            if "alembic_version" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.5)


def make_driver(spec, study, baseline: dict | None, sweep_id: str | None = None, note=None, on_skip=None,
                start_from=None):
    """A :class:`~sweeps.searcher.StudyDriver` sampling full trial configs from ``spec``, with the
    baseline metrics (for ``delta_m``) and the thread count added, and the space's budgets as constraints.
    With ``sweep_id``, each trial's checkpoints and export go to its own folder (:func:`trial_file_paths`).
    ``note(line)``: where the driver's lines for the user go (repeated configurations, exhaustion).
    The metrics known before training (:mod:`sweeps.known`) are computed for every proposal; one whose
    known metrics break a budget is not trained (``on_skip``: see :class:`~sweeps.searcher.StudyDriver`).
    ``start_from``: the folder of the dense baseline's snapshots its pretrained trials start from
    (:func:`sweeps.run.baseline.shared_dense`)."""
    from ..budgets import constraint_values
    from ..known import known_metrics, known_violation
    from ..searcher import TRIAL_KEY, StudyDriver
    from ..space import suggest

    extra = {"num_threads": trial_threads(spec)}
    if baseline:
        extra["baseline_metrics"] = baseline
    constraints = (lambda m: constraint_values(spec.budgets, m, baseline)) if spec.budgets else None

    def sample(trial) -> dict:
        config = absolute_paths(suggest(spec, trial))
        key = trial.user_attrs.get(TRIAL_KEY)
        return trial_file_paths(config, sweep_id, key) if sweep_id and key else config

    skip = (lambda known: known_violation(spec.budgets, known)) if spec.budgets else None
    return StudyDriver(study, sample, spec.metric_names, spec.trials, constraints=constraints,
                       extra_config=extra, note=note, known=known_metrics, skip=skip, on_skip=on_skip,
                       run_options={"start_from": str(start_from)} if start_from else None)


TAG_SKIPPED = "disparse.skipped"
"""MLflow tag of a trial run that was not trained: its known metrics broke a budget (the reason)."""


def record_skipped(tracker, key: str, config: dict, known: dict, reason: str, number: int) -> None:
    """A proposal skipped before training, in MLflow: a FINISHED, early-stopped trial run with its config,
    its known metrics and the tag :data:`TAG_SKIPPED` (the reason), so the user sees it next to the trained
    ones. A tracking error is printed, never raised (the sweep goes on, as for any trial's logging)."""
    if tracker is None:
        return
    try:
        run_id = tracker.trial_started(key, config, optuna_number=number)
        tracker.client.set_tag(run_id, TAG_SKIPPED, str(reason)[:500])
        tracker.trial_completed(key, dict(known), early_stopped=True)
    except Exception as err:  # noqa: BLE001 - MLflow down must not kill the sweep
        print(f"tracking a skipped trial failed: {type(err).__name__}: {err}", file=sys.stderr)


def trial_file_paths(config: dict, sweep_id: str, trial_key: str) -> dict:
    """A trial's own place for the files the space names: ``checkpoint_dir: D`` becomes
    ``D/<sweep_id>/<trial_key>`` and ``export_path: P/model.pt`` becomes ``P/<sweep_id>/<trial_key>/model.pt``.

    Without this every trial would write the same files (and ``resume: true`` would load another trial's
    checkpoint). The key stays with a trial over Ray's retries and ``--resume``, so with ``resume: true`` a
    retried or interrupted trial goes on from its last checkpoint."""
    out = dict(config)
    if out.get("checkpoint_dir"):
        out["checkpoint_dir"] = str(Path(out["checkpoint_dir"]) / sweep_id / trial_key)
    if out.get("export_path"):
        path = Path(out["export_path"])
        out["export_path"] = str(path.parent / sweep_id / trial_key / path.name)
    return out


def reconcile(driver, tracker) -> None:
    """After a hard kill: make MLflow agree with the study for every trial that ended.

    The study keeps only numeric metrics, so a trial finished here gets no ``mask_iou`` artifacts.
    """
    from optuna.trial import TrialState

    from ..searcher import EARLY_STOPPED, FAIL_REASON, METRICS

    for key, t in driver.latest_by_key().items():
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            tracker.trial_completed(key, dict(t.user_attrs.get(METRICS, {})),
                                    early_stopped=bool(t.user_attrs.get(EARLY_STOPPED)))
        elif t.state == TrialState.FAIL:  # idempotent: a FINISHED run is never touched
            tracker.trial_failed(key, t.user_attrs.get(FAIL_REASON, "failed"))


def state_counts(study) -> dict:
    """``{"COMPLETE": n, "PRUNED": n, "FAIL": n, ...}`` over the newest attempt of each trial key, and
    ``"RERUN"``: the attempts an interruption stopped, each run again since (a FAIL in the study, but not
    a failed trial); ``"DUPLICATE"``: proposals of parameters already tried, never trained (a FAIL in
    the study too); ``"SKIPPED"``: proposals whose known metrics broke a budget, never trained (PRUNED in
    the study)."""
    from ..searcher import DUPLICATE_OF, SKIPPED, TRIAL_KEY, trial_key_of

    latest: dict = {}
    rerun = 0
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        key = t.user_attrs.get(TRIAL_KEY, trial_key_of(t.number))
        rerun += key in latest
        latest[key] = t
    counts: dict[str, int] = {}
    for t in latest.values():
        name = ("DUPLICATE" if DUPLICATE_OF in t.user_attrs else "SKIPPED" if SKIPPED in t.user_attrs
                else t.state.name)
        counts[name] = counts.get(name, 0) + 1
    if rerun:
        counts["RERUN"] = rerun
    return counts
