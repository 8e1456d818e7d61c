"""The sweep's Optuna study in ``<results>/optuna.db``: opening it, the driver that asks and tells it,
making MLflow agree with it after a hard kill, counting its trial states.

Optuna is imported only inside these functions. Private to :mod:`sweeps.runner`, which re-exports
:func:`open_study`.
"""

from __future__ import annotations

from ._runner_baseline import absolute_paths
from ._runner_spec import trial_threads
from .errors import UserInputError

__all__ = ["open_study", "make_driver", "reconcile", "state_counts"]


def open_study(plan):
    """The sweep's Optuna study (created on first use) in ``<results>/optuna.db``."""
    import optuna

    from .space import directions, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(optuna, plan.study_url)
    study = optuna.create_study(storage=storage, study_name=plan.sweep_id,
                                directions=directions(plan.spec), sampler=make_sampler(plan.spec),
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions(plan.spec)]:
        raise UserInputError(f"objectives: the study in {plan.study_url} has directions "
                             f"{[d.name.lower() for d in study.directions]}; expected the space's "
                             f"{directions(plan.spec)}")
    return study


def _storage(optuna, url: str, tries: int = 3):
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


def make_driver(spec, study, baseline: dict | None):
    """A :class:`~sweeps.searcher.StudyDriver` sampling full trial configs from ``spec``, with the
    baseline metrics (for ``delta_m``) and the thread count added, and the space's budgets as constraints."""
    from .budgets import constraint_values
    from .searcher import StudyDriver
    from .space import suggest

    extra = {"num_threads": trial_threads(spec)}
    if baseline:
        extra["baseline_metrics"] = baseline
    constraints = (lambda m: constraint_values(spec.budgets, m, baseline)) if spec.budgets else None
    return StudyDriver(study, lambda trial: absolute_paths(suggest(spec, trial)), spec.metric_names,
                       spec.trials, constraints=constraints, extra_config=extra)


def reconcile(driver, tracker) -> None:
    """After a hard kill: make MLflow agree with the study for every trial that ended.

    The study keeps only numeric metrics, so a trial finished here gets no ``mask_iou`` artifacts.
    """
    from optuna.trial import TrialState

    from .searcher import EARLY_STOPPED, FAIL_REASON, METRICS

    for key, t in driver._latest_by_key().items():
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            tracker.trial_completed(key, dict(t.user_attrs.get(METRICS, {})),
                                    early_stopped=bool(t.user_attrs.get(EARLY_STOPPED)))
        elif t.state == TrialState.FAIL:  # idempotent: a FINISHED run is never touched
            tracker.trial_failed(key, t.user_attrs.get(FAIL_REASON, "failed"))


def state_counts(study) -> dict:
    """``{"COMPLETE": n, "PRUNED": n, "FAIL": n, ...}`` over every trial of the study."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts
