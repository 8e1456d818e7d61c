"""The sweep's Optuna side: ask for trial configs, tell results, survive an interrupted driver.

Why our own ask/tell driver instead of Ray's ``OptunaSearch``
-------------------------------------------------------------
``OptunaSearch`` (Ray 2.60) takes multi-objective metrics only as its own lists, never passes a
``constraints`` user attribute, and tells a trial that ASHA stopped early as ``COMPLETE`` with its
partial values, so the Pareto front would mix training lengths. Optuna's public ask/tell API does
all we need in a page: ``study.ask()``, define-by-run :func:`sweeps.space.suggest`,
``trial.set_user_attr("constraints", ...)`` (read by the sampler's ``constraints_func``) and
``study.tell(trial, values)`` or ``state=PRUNED/FAIL``. This module holds that logic with no Ray
import, so it is unit-testable in a second; :mod:`sweeps.ray` wraps it in a thin Ray
``Searcher``.

Rules
-----
* A trial is fully trained when its last report carries ``final == 1.0``. Only then is it told
  ``COMPLETE`` with its objective values. A trial stopped early (ASHA) is told ``PRUNED`` (no values,
  user attribute ``early_stopped=True``), so it is on no Pareto front. A trial that raised, or whose
  objectives are missing or not finite, is told ``FAIL`` with user attribute ``fail_reason``.
* Every trial carries a stable ``trial_key`` user attribute (``t0000``, ``t0001``...): MLflow runs are
  keyed by it, so a resumed sweep never duplicates a trial.
* The study lives in its own sqlite file (never MLflow's: both use alembic's version table). Every
  ``tell`` is committed at once, so the study is the resume log. On resume, a trial left ``RUNNING``
  by a killed driver is told ``FAIL`` (its key is listed in the study attribute ``interrupted``) and
  its parameters are enqueued again under the same ``trial_key``; a key counts as done only when its
  newest trial has finished, so finished trials are never rerun.
* A trial the sampler proposes with exactly the parameters (the same ``params`` dict, floats compared
  exactly) of a trial of another key that is COMPLETE, PRUNED, RUNNING or WAITING (enqueued before
  it) is not trained: it is told ``FAIL`` at once with user attribute ``duplicate_of`` (that key),
  and the sampler is asked again. A second training of one configuration repeats the first one's
  result (bit for bit on CPU) and would put the same point twice on the front; NSGA-II's crossover
  proposes such copies of its parents. A duplicate's key is no trial of the sweep: it is in neither
  :meth:`StudyDriver.done_keys` nor the budget of :meth:`StudyDriver.remaining`, and it never
  reaches Ray or MLflow. A FAIL trial's parameters may be proposed again (a failure may not repeat).
  After ``max_duplicates`` (20) duplicates in a row the space looks exhausted: one line says so,
  :meth:`StudyDriver.ask` returns None and ``remaining()`` is 0, so the sweep ends normally after the
  trials still running (a resumed driver tries again, with a new sampler seed).
* Objectives known before training (:mod:`sweeps.known`: compression, sparsity, the prunable weights
  of a cutoff), when the driver is given ``known``, are computed for every proposal and kept in its user
  attribute ``known_metrics``. A proposal whose known metrics already break a budget (``skip(known)``
  returns the reason; e.g. ``compression>=0.8`` with a known compression of 0.6: no accuracy can make
  it feasible) is not trained: it is told ``PRUNED`` at once with user attribute ``skipped`` (the
  reason), ``on_skip(key, config, known, reason, number)`` is called (the sweep records it in MLflow as
  a FINISHED run tagged with the reason), one line says so, and the sampler is asked again. Like a
  duplicate, a skipped key is no trial of the sweep's budget (``done_keys``/``remaining``); after
  ``max_skips`` (200) skips in a row the space looks exhausted, as above.
* With multi-objective ASHA, what a trial reported at each rung is kept in its user attribute ``rungs``
  (``{"15": [compression, delta_m]}``, NaN as null) as soon as it is recorded; on resume the scheduler
  gets back those of every finished (COMPLETE or PRUNED) trial (:meth:`StudyDriver.rung_history`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Asked", "StudyDriver", "TRIAL_KEY", "trial_key_of", "numeric_metrics"]

TRIAL_KEY = "trial_key"
CONSTRAINTS = "constraints"
METRICS = "metrics"
EARLY_STOPPED = "early_stopped"
INTERRUPTED = "interrupted"
FAIL_REASON = "fail_reason"
RUNGS = "rungs"
DUPLICATE_OF = "duplicate_of"
SKIPPED = "skipped"
KNOWN_METRICS = "known_metrics"
MAX_DUPLICATES = 20
MAX_SKIPS = 200


@dataclass(frozen=True)
class Asked:
    """One new trial: its stable key, the full ``run_trial`` config and the sampled parameters."""

    key: str
    config: dict
    params: dict
    number: int  # the Optuna trial number (a re-run of an interrupted trial gets a new one)


def trial_key_of(number: int) -> str:
    return f"t{number:04d}"


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The flat numeric entries of a result (drops strings, dicts, bools, Ray's bookkeeping)."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[name] = float(value)
    return out


def is_final(metrics: Mapping[str, Any] | None) -> bool:
    return bool(metrics) and float(metrics.get("final", 0.0) or 0.0) == 1.0


class StudyDriver:
    """Owns one Optuna study for one sweep.

    Args:
        study: an Optuna study (``optuna.create_study(..., load_if_exists=True)``) whose sampler was
            made by :func:`sweeps.space.make_sampler`.
        suggest: ``suggest(optuna_trial) -> config`` (the space's define-by-run sampler).
        objectives: metric names, in the study's direction order.
        n_trials: how many trials the sweep runs in all (over every resume).
        constraints: ``constraints(metrics) -> list[float]`` (<= 0 feasible), or None.
        extra_config: keys merged into every config (``baseline_metrics``, ``num_threads``...).
        max_duplicates: proposals of already-tried parameters in a row after which the space counts as
            exhausted (see the module docstring).
        note: ``note(line)`` for what the user should see (default: print to stdout).
        known: ``known(config) -> {metric: value}``, the metrics fixed before training (or None).
        skip: ``skip(known metrics) -> reason | None``: a proposal not to train (see the module docstring).
        on_skip: ``on_skip(key, config, known, reason, number)`` for each skipped proposal.
        run_options: keyword options of ``run_trial`` for every trial (``start_from``), not part of its config.
    """

    def __init__(self, study, suggest, objectives, n_trials, constraints=None, extra_config=None,
                 max_duplicates=MAX_DUPLICATES, note=None, known=None, skip=None, on_skip=None,
                 max_skips=MAX_SKIPS, run_options=None):
        if int(max_duplicates) < 1:
            raise ValueError(f"max_duplicates must be >= 1, but got {max_duplicates!r}")
        if len(objectives) != len(study.directions):
            raise ValueError(
                f"the study has {len(study.directions)} objectives, but got {list(objectives)}"
            )
        self.study = study
        self._suggest = suggest
        self.objectives = list(objectives)
        self.n_trials = int(n_trials)
        self._constraints = constraints
        self._extra = dict(extra_config or {})
        self._live: dict[str, Any] = {}
        self._rungs: dict[str, dict] = {}  # trial key -> its rung records so far (live trials)
        self.max_duplicates = int(max_duplicates)
        self._note = note if note is not None else (lambda line: print(line, file=sys.stdout, flush=True))
        self.exhausted = False             # set when max_duplicates proposals in a row were duplicates
        self._known, self._skip, self._on_skip = known, skip, on_skip
        self.max_skips = int(max_skips)
        self.run_options = dict(run_options or {})

    # -- bookkeeping ---------------------------------------------------------------------------
    def _trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def latest_by_key(self) -> dict:
        """``{trial key: its newest trial}``, without the keys whose newest trial is a duplicate or was
        skipped before training."""
        latest = {}
        for t in sorted(self._trials(), key=lambda t: t.number):
            latest[t.user_attrs.get(TRIAL_KEY, trial_key_of(t.number))] = t
        return {k: t for k, t in latest.items() if DUPLICATE_OF not in t.user_attrs and SKIPPED not in t.user_attrs}

    def skipped(self) -> dict[str, str]:
        """``{key of a proposal skipped before training: the reason}``."""
        return {t.user_attrs.get(TRIAL_KEY, trial_key_of(t.number)): t.user_attrs[SKIPPED]
                for t in self._trials() if SKIPPED in t.user_attrs}

    def duplicates(self) -> dict[str, str]:
        """``{key of a duplicate proposal: key of the trial whose parameters it repeated}``."""
        return {t.user_attrs.get(TRIAL_KEY, trial_key_of(t.number)): t.user_attrs[DUPLICATE_OF]
                for t in self._trials() if DUPLICATE_OF in t.user_attrs}

    def done_keys(self) -> set[str]:
        """Keys whose latest trial ended (COMPLETE, PRUNED or FAIL); a re-enqueued key is not done, and
        the key of a discarded duplicate is no trial of the sweep at all."""
        return {k for k, t in self.latest_by_key().items() if t.state.is_finished()}

    def remaining(self) -> int:
        """Trials still to start (the waiting, re-enqueued ones included); 0 once the space looks exhausted."""
        if self.exhausted:
            return 0
        return max(0, self.n_trials - len(self.done_keys()) - len(self._live))

    def recover_interrupted(self) -> list[str]:
        """Fail the trials a killed driver left RUNNING and enqueue them again; returns their keys.

        The failed attempt stays in the study (recorded in the study attribute ``interrupted``);
        the key's newest trial is the re-enqueued one, so the key counts as not done.
        """
        from optuna.trial import TrialState

        keys = []
        for t in self._trials((TrialState.RUNNING,)):
            key = t.user_attrs.get(TRIAL_KEY)
            if key is None:  # killed between study.ask() and the key's append: every trial gets its key
                key = trial_key_of(t.number)
                self.study._storage.set_trial_user_attr(t._trial_id, TRIAL_KEY, key)
            self.study.tell(t.number, state=TrialState.FAIL)
            if DUPLICATE_OF in t.user_attrs:  # killed while discarding a duplicate: nothing to rerun
                continue
            self.study.enqueue_trial(dict(t.params), user_attrs={TRIAL_KEY: key})
            self._live.pop(key, None)
            self._rungs.pop(key, None)
            keys.append(key)
        if keys:
            before = list(self.study.user_attrs.get(INTERRUPTED, []))
            self.study.set_user_attr(INTERRUPTED, before + keys)
        return keys

    # -- ask / tell ----------------------------------------------------------------------------
    def ask(self) -> Asked | None:
        """The next trial to train, or None when the budget is spent or the space looks exhausted.

        Proposals that repeat the parameters of a trial already tried are discarded here (module
        docstring), so every trial returned is one to train."""
        if self.remaining() <= 0:
            return None
        repeats = []                   # "t0005 = t0002": the duplicates discarded by this call
        skips = 0
        while len(repeats) < self.max_duplicates and skips < self.max_skips:
            trial = self.study.ask()
            key = trial.user_attrs.get(TRIAL_KEY)
            if key is None:
                key = trial_key_of(trial.number)
                trial.set_user_attr(TRIAL_KEY, key)
            try:
                config = dict(self._suggest(trial))
            except Exception as err:  # a space bug must not leave a RUNNING orphan
                self._tell_fail(trial, f"suggest failed: {err}")
                raise
            params = dict(trial.params)
            original = self._tried_with(params, key, trial.number)
            if original is not None:
                trial.set_user_attr(DUPLICATE_OF, original)
                self._tell_fail(trial, f"same parameters as trial {original}; not trained again")
                repeats.append(f"{key} = {original}")
                continue
            if repeats:
                self._note(f"not trained again (same parameters as an earlier trial): {', '.join(repeats)}")
                repeats = []
            if self._skip_before_training(trial, key, config):
                skips += 1
                continue
            config.update(self._extra)
            self._live[key] = trial
            return Asked(key=key, config=config, params=params, number=trial.number)
        self.exhausted = True
        trained = len(self.done_keys()) + len(self._live)
        what = (f"{self.max_duplicates} configurations in a row that were already tried"
                if len(repeats) >= self.max_duplicates
                else f"{self.max_skips} configurations in a row whose known metrics break a budget")
        self._note(f"search space looks exhausted: the sampler proposed {what}; no new trial is started "
                   f"({trained} of {self.n_trials} trials run or running)")
        return None

    def _skip_before_training(self, trial, key: str, config: dict) -> bool:
        """Record the proposal's known metrics; tell it PRUNED (and say why) when they break a budget."""
        from optuna.trial import TrialState

        if self._known is None:
            return False
        known = dict(self._known(config) or {})
        if not known:
            return False
        trial.set_user_attr(KNOWN_METRICS, known)
        reason = self._skip(known) if self._skip is not None else None
        if not reason:
            return False
        trial.set_user_attr(SKIPPED, str(reason)[:500])
        trial.set_user_attr(METRICS, {k: float(v) for k, v in known.items()})
        self.study.tell(trial, state=TrialState.PRUNED)
        self._note(f"not trained ({key}): {reason}")
        if self._on_skip is not None:
            self._on_skip(key, config, known, str(reason), trial.number)
        return True

    def _tried_with(self, params: dict, key: str, number: int) -> str | None:
        """The key of another trial whose parameters equal ``params``: COMPLETE, PRUNED, RUNNING, or WAITING
        ahead of trial ``number`` (an enqueued copy behind it is the duplicate, when its turn comes)."""
        from optuna.trial import TrialState

        for t in self._trials():
            other = t.user_attrs.get(TRIAL_KEY, trial_key_of(t.number))
            if t.number == number or other == key or DUPLICATE_OF in t.user_attrs or SKIPPED in t.user_attrs:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
                tried = t.params
            elif t.state == TrialState.WAITING and t.number < number:  # enqueued before this one: it runs
                tried = t.system_attrs.get("fixed_params") or {}        # first (its parameters wait here)
            else:
                continue
            if tried == params:
                return other
        return None

    def tell_result(self, key: str, metrics: Mapping[str, Any] | None) -> str:
        """Tell the last result of a trial that ended without error: 'complete', 'pruned' or 'failed'."""
        from optuna.trial import TrialState

        trial = self._live.pop(key)
        self._rungs.pop(key, None)
        numeric = numeric_metrics(metrics or {})
        values = [numeric.get(name, math.nan) for name in self.objectives]
        if not is_final(metrics):
            self._set_metrics(trial, numeric)
            trial.set_user_attr(EARLY_STOPPED, True)
            self.study.tell(trial, state=TrialState.PRUNED)
            return "pruned"
        bad = [n for n, v in zip(self.objectives, values) if not math.isfinite(v)]
        if bad:
            self._tell_fail(trial, f"objective {bad[0]} is {numeric.get(bad[0], 'missing')}")
            return "failed"
        self._set_metrics(trial, numeric)
        self.study.tell(trial, values)
        return "complete"

    def record_rung(self, key: str, milestone: float, values) -> None:
        """Keep what the live trial ``key`` reported at a rung (see the module docstring)."""
        trial = self._live.get(key)
        if trial is None:
            return
        rungs = self._rungs.setdefault(key, {})
        rungs[f"{float(milestone):g}"] = [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
                                          for v in values]
        trial.set_user_attr(RUNGS, dict(rungs))

    def rung_history(self) -> list[tuple[str, float, tuple]]:
        """``(trial_key, milestone, values)`` of every finished trial's rung records, as stored (None for
        a value that was not finite; :meth:`sweeps.ray.MOAshaRungs.restore` reads it as NaN)."""
        from optuna.trial import TrialState

        out = []
        for key, t in sorted(self.latest_by_key().items()):
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            for milestone, values in (t.user_attrs.get(RUNGS) or {}).items():
                try:
                    out.append((key, float(milestone), tuple(None if v is None else float(v) for v in values)))
                except (TypeError, ValueError):  # a hand-edited study: skip the record, not the sweep
                    continue
        return out

    def tell_failure(self, key: str, reason: str) -> None:
        trial = self._live.pop(key, None)
        self._rungs.pop(key, None)
        if trial is not None:
            self._tell_fail(trial, reason)

    def is_live(self, key: str) -> bool:
        return key in self._live

    def any_live(self) -> bool:
        """Whether a trial was asked for and not yet told."""
        return bool(self._live)

    def _tell_fail(self, trial, reason: str) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr(FAIL_REASON, str(reason)[:500])
        self.study.tell(trial, state=TrialState.FAIL)

    def _set_metrics(self, trial, numeric: dict[str, float]) -> None:
        finite = {k: v for k, v in numeric.items() if math.isfinite(v)}
        trial.set_user_attr(METRICS, finite)
        if self._constraints is not None:
            try:
                values = [float(c) for c in self._constraints(finite)]
            except (KeyError, ValueError) as err:  # metric missing for a budget: infeasible
                values = [math.inf]
                trial.set_user_attr("constraints_error", str(err)[:300])
            # NaN constraints are rejected by Optuna; an unknown value is treated as infeasible
            trial.set_user_attr(CONSTRAINTS, [v if not math.isnan(v) else math.inf for v in values])

    # -- read back -----------------------------------------------------------------------------
    def completed(self) -> list:
        """Fully trained, COMPLETE trials (the only ones a Pareto front may use)."""
        from optuna.trial import TrialState

        return list(self._trials((TrialState.COMPLETE,)))
