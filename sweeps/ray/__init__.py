"""Ray Tune for sweeps: every Ray import of disparse-tune lives in this package (Ray's import paths move
between releases).

- ``env``: the loopback environment, set here before any module below imports Ray.
- ``backend``: :func:`connect` (a local Ray on 127.0.0.1 or a cluster), the Optuna ask/tell
  ``Searcher``, the driver callback that feeds :class:`sweeps.tracking.SweepTracker`, :func:`run_tuner`.
- ``trainable``: what runs on a worker (``run_trial`` in a Tune session, the dense baseline task).
- ``scheduler``: :class:`MultiObjectiveASHA`, the early-stopping scheduler.
- ``mo_asha``: its Ray-free ranking rule (:class:`MOAshaRungs`).

Importing this package imports Ray; the rest of ``sweeps`` imports it only where a sweep runs.
"""

from .env import LOOPBACK_ENV, set_loopback_env

set_loopback_env()

from .backend import (EarlyStopping, OptunaAskTellSearcher, RaySession, SweepCallback,  # noqa: E402
                      TunerOutcome, connect, run_remote, run_tuner, trial_metrics)
from .mo_asha import (CONTINUE, STOP, Decision, MOAshaRungs, crowding_distance, decide,  # noqa: E402
                      dominates, non_dominated_fronts, rank_order, rung_milestones)
from .scheduler import MultiObjectiveASHA  # noqa: E402
from .trainable import FATAL, baseline_task, current_node_id, is_retryable, trainable  # noqa: E402

__all__ = [
    "LOOPBACK_ENV", "set_loopback_env",
    "RaySession", "connect", "run_remote", "OptunaAskTellSearcher", "SweepCallback",
    "EarlyStopping", "TunerOutcome", "run_tuner", "trial_metrics",
    "FATAL", "trainable", "baseline_task", "current_node_id", "is_retryable",
    "MultiObjectiveASHA",
    "CONTINUE", "STOP", "rung_milestones", "dominates", "non_dominated_fronts", "crowding_distance",
    "rank_order", "decide", "Decision", "MOAshaRungs",
]
