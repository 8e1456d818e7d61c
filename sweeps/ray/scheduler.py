"""The multi-objective ASHA scheduler as a Ray Tune scheduler (a Ray import: see :mod:`sweeps.ray`).

:class:`MultiObjectiveASHA` is a ``FIFOScheduler`` (trials start in submission order) whose
``on_trial_result`` asks :class:`sweeps.ray.mo_asha.MOAshaRungs` (pure, Ray-free; the rule is in that
module's docstring) whether a trial reaching a rung continues or stops. Unlike ``ASHAScheduler`` it does
not stop a trial at ``max_t``: a trial ends by itself when its ``steps`` are done.

With one metric it is single-metric ASHA (the rule's one-objective case) and is used for that too, in
place of Ray's ``ASHAScheduler``: the same rungs (none just before the end) and records kept for a resume.

Trials are recorded at the rungs under their sweep ``trial_key`` (Ray's trial ids change with every run
of the sweep), so that the records of an interrupted sweep, kept in its study
(:meth:`sweeps.searcher.StudyDriver.record_rung`), can be given back on ``--resume`` (``history``).
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Hashable, Iterable, Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .mo_asha import STOP, MOAshaRungs

__all__ = ["MultiObjectiveASHA"]


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving ranked on all ``metrics`` (non-dominated sorting + crowding).

    Args:
        metrics: the objectives as reported by the trainable.
        directions: ``maximize``/``minimize`` (or ``max``/``min``), one per metric.
        max_t: the longest trial (in ``time_attr`` units); rungs are below it.
        grace_period: the first rung.
        reduction_factor: rung spacing and the kept fraction (``1/reduction_factor``), > 1.
        time_attr: the reported counter rungs are measured in (``step``).
        keep_non_dominated: a trial non-dominated at a rung always continues (else only its rank counts).
        history: ``(trial_key, milestone, values)`` recorded by an earlier run of the same sweep.
        on_record: called with ``(trial_key, milestone, values)`` whenever values are recorded at a rung.
    """

    def __init__(self, metrics: Sequence[str], directions: Sequence[str], max_t: float,
                 grace_period: float = 1, reduction_factor: float = 3, time_attr: str = "step",
                 keep_non_dominated: bool = True, history: Iterable[tuple] = (),
                 on_record: Callable[[Hashable, float, tuple], None] | None = None):
        super().__init__()
        self.rungs = MOAshaRungs(list(metrics), list(directions), float(grace_period), float(max_t),
                                 float(reduction_factor), keep_non_dominated=bool(keep_non_dominated),
                                 on_record=on_record)
        self.restored = self.rungs.restore(history)
        self._time_attr = time_attr
        self._num_stopped = 0

    @staticmethod
    def _id(trial) -> Hashable:
        """The sweep's trial key (stable over resumes), else Ray's trial id."""
        return (getattr(trial, "config", None) or {}).get("trial_key") or trial.trial_id

    def set_search_properties(self, metric, mode, **spec) -> bool:
        # the objectives are given at construction; TuneConfig(metric=...) takes one metric only
        return not metric and not mode

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if float(result.get("final", 0.0) or 0.0) == 1.0:  # the trial's last report: nothing left to stop
            self.rungs.on_complete(self._id(trial), result.get(self._time_attr), result)
            return TrialScheduler.CONTINUE
        action = self.rungs.on_result(self._id(trial), result.get(self._time_attr), result)
        if action == STOP:
            self._num_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        self.rungs.on_complete(self._id(trial), (result or {}).get(self._time_attr), result)

    def debug_string(self) -> str:
        return self.rungs.debug_string()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
