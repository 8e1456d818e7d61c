"""Multi-objective ASHA, without Ray: rungs, what is recorded at each, the ranking and the decision.

Ray's ``ASHAScheduler`` compares trials on one metric. In a multi-objective sweep that kills the
trials a Pareto front needs: with (compression, delta_m) a high-sparsity trial has a low delta_m at
every rung and is stopped, although nothing dominates its compression. This module ranks on all the
objectives instead; :mod:`sweeps.ray.scheduler` wraps it as a Ray Tune scheduler.

The rule (asynchronous, like ASHA; https://arxiv.org/abs/1810.05934):

* Rungs are at ``grace * reduction_factor**k`` steps (``k = 0, 1, ...``): the first one if below
  ``max_t``, each later one only if it leaves at least ``grace`` steps before ``max_t`` (a rung just before
  the end would save almost nothing and throw away trials that were nearly done: grace 22, factor 3,
  200 steps give rungs 22 and 66, not 198).
* A trial whose report reaches a rung is compared with the trials already recorded at that rung, then
  recorded there (its objective values at that report). Earlier decisions are never revisited.
* The recorded set including the new trial is ranked: non-dominated sorting on all objectives (each in
  its own direction), then within a front by crowding distance, largest first (a front's boundary
  points have infinite distance and come first). A trial with a NaN (or missing, non-numeric) objective
  is ranked after every trial with finite values. On an exact tie the new trial goes first (ASHA keeps a
  trial equal to its cutoff).
* The new trial continues when it is the first at the rung, when it is non-dominated there (front 0,
  finite values), when it is best so far at the rung on any one objective (ties included), or when its
  1-based position ``p`` among the ``n`` ranked trials is within the top ``1/reduction_factor``:
  ``p <= n / reduction_factor``. Otherwise it is stopped.
* With ``keep_non_dominated=False`` the second clause goes. A trial that is best so far at the rung on
  any one objective still always continues (the third clause: a boundary point of front 0 need not rank
  first, and with fewer than ``reduction_factor`` trials recorded even rank 1 would fail the rank test),
  but an interior point of a large front 0 can be stopped. Fewer trials are trained in
  full; bench/RESULTS.md ("replay") measured what that saves on the demo workload.

With one objective this is ASHA's rule with its ``(1 - 1/rf)`` quantile taken as an order statistic
over the recorded set including the new trial: for ``reduction_factor = 2`` and an odd number of trials
already recorded the two agree exactly; for ``rf >= 2`` it never keeps a trial that ASHA would stop, but
it can stop one that ASHA's interpolated percentile keeps: one rank position earlier at ``rf`` 2 and 3,
up to two at ``rf`` 4 and more for larger factors. The best so far always continues, as in ASHA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

__all__ = ["CONTINUE", "STOP", "rung_milestones", "dominates", "non_dominated_fronts", "crowding_distance",
           "rank_order", "decide", "Decision", "MOAshaRungs"]

CONTINUE = "CONTINUE"
STOP = "STOP"

_SIGN = {"maximize": 1.0, "max": 1.0, "minimize": -1.0, "min": -1.0}


def _signs(directions: Sequence[str]) -> tuple[float, ...]:
    try:
        return tuple(_SIGN[str(d).lower()] for d in directions)
    except KeyError:
        raise ValueError(f"directions: {list(directions)!r}; expected each to be maximize or minimize") from None


def rung_milestones(grace: float, max_t: float, reduction_factor: float) -> list[float]:
    """``grace * rf**k``, ascending: ``grace`` if below ``max_t``, then each that is at least ``grace`` below
    ``max_t``."""
    if grace <= 0 or reduction_factor <= 1:
        raise ValueError(f"grace={grace!r}, reduction_factor={reduction_factor!r}; expected grace > 0 and "
                         f"reduction_factor > 1")
    out = [float(grace)] if grace < max_t else []
    k = 1
    while max_t - grace * reduction_factor ** k >= grace:
        out.append(float(grace * reduction_factor ** k))
        k += 1
    return out


def _finite(point: Sequence[float] | None) -> bool:
    return point is not None and all(isinstance(v, (int, float)) and math.isfinite(v) for v in point)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (both as "larger is better")."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated_fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of ``points`` (larger is better in every coordinate, all finite) by front, best first."""
    n = len(points)
    dominated_by = [0] * n
    dominating: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                dominating[j].append(i)
                dominated_by[i] += 1
    fronts, current = [], [i for i in range(n) if dominated_by[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def crowding_distance(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point of one front: per objective, the normalised gap between
    its neighbours; a point at either end of any objective gets ``inf``."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, n - 1):
            dist[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return dist


def rank_order(points: Sequence[Sequence[float] | None], directions: Sequence[str],
               favour: int | None = None) -> tuple[list[int], list[int]]:
    """Rank ``points`` (raw objective values, in ``directions``): ``(order, front_of)``.

    ``order``: indices best first (front, then crowding distance descending; ties: ``favour`` first, then
    index order). Points with a non-finite or missing value come last (``front_of`` = -1), in index order.
    """
    signs = _signs(directions)
    finite = [i for i, p in enumerate(points) if _finite(p) and len(p) == len(signs)]
    bad = [i for i in range(len(points)) if i not in set(finite)]
    oriented = [tuple(s * float(v) for s, v in zip(signs, points[i])) for i in finite]
    front_of = [-1] * len(points)
    keys: dict[int, tuple] = {}
    for f, front in enumerate(non_dominated_fronts(oriented)):
        cd = crowding_distance([oriented[k] for k in front])
        for k, d in zip(front, cd):
            i = finite[k]
            front_of[i] = f
            keys[i] = (f, -d, 0 if i == favour else 1, i)
    order = sorted(keys, key=keys.__getitem__) + bad
    return order, front_of


@dataclass(frozen=True)
class Decision:
    action: str          # CONTINUE | STOP
    position: int        # 1-based rank of the new trial among ``n``
    n: int               # trials ranked: those recorded before + the new one
    front: int           # the new trial's front (0 = non-dominated), -1 for non-finite values
    reason: str


def decide(recorded: Sequence[Sequence[float] | None], new: Sequence[float] | None,
           directions: Sequence[str], reduction_factor: float, keep_non_dominated: bool = True) -> Decision:
    """The decision for ``new`` reaching a rung where ``recorded`` are already (see the module docstring)."""
    points = list(recorded) + [new]
    n = len(points)
    if n == 1:
        front = 0 if _finite(new) else -1
        return Decision(CONTINUE, 1, 1, front, "first at this rung")
    order, front_of = rank_order(points, directions, favour=n - 1)
    position = order.index(n - 1) + 1
    front = front_of[n - 1]
    if front == 0 and keep_non_dominated:
        return Decision(CONTINUE, position, n, front, "non-dominated at this rung")
    best_on = _best_on(points, directions)
    if best_on is not None:
        return Decision(CONTINUE, position, n, front, f"best so far at this rung on objective {best_on + 1}")
    if position * reduction_factor <= n * (1 + 1e-12):
        return Decision(CONTINUE, position, n, front, f"rank {position} of {n} within the top 1/{reduction_factor:g}")
    return Decision(STOP, position, n, front, f"rank {position} of {n} below the top 1/{reduction_factor:g}")


def _best_on(points: Sequence[Sequence[float] | None], directions: Sequence[str]) -> int | None:
    """The index of an objective on which the last point is at least as good as every other finite
    point, or None (also when its values are not finite)."""
    new = points[-1]
    if not _finite(new):
        return None
    others = [p for p in points[:-1] if _finite(p)]
    for m, sign in enumerate(_signs(directions)):
        if all(sign * float(new[m]) >= sign * float(p[m]) for p in others):
            return m
    return None


def _values(result: Mapping[str, Any], metrics: Sequence[str]) -> tuple | None:
    """The objective values of a report, NaN for a non-numeric one; None when one is missing."""
    out = []
    for name in metrics:
        if name not in result:
            return None
        value = result[name]
        try:
            out.append(float(value) if not isinstance(value, bool) else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return tuple(out)


@dataclass
class MOAshaRungs:
    """The scheduler's state: rung milestones and, per rung, ``{trial id: objective values}`` recorded.

    ``on_record(trial_id, milestone, values)``, when given, is called each time values are recorded at a
    rung (the sweep persists them in its study); :meth:`restore` puts such records back after a restart,
    so a resumed sweep ranks new trials against every trial that reached a rung before.
    """

    metrics: Sequence[str]
    directions: Sequence[str]
    grace: float
    max_t: float
    reduction_factor: float = 3.0
    keep_non_dominated: bool = True
    on_record: Callable[[Hashable, float, tuple], None] | None = None
    milestones: list = field(init=False)
    recorded: dict = field(init=False)          # milestone -> {trial_id: values}
    decisions: list = field(init=False)         # (trial_id, milestone, Decision), in order

    def __post_init__(self) -> None:
        if len(self.metrics) != len(self.directions) or not self.metrics:
            raise ValueError(f"metrics {list(self.metrics)!r} and directions {list(self.directions)!r}; expected "
                             f"one direction per metric, at least one metric")
        _signs(self.directions)
        self.milestones = rung_milestones(self.grace, self.max_t, self.reduction_factor)
        self.recorded = {m: {} for m in self.milestones}
        self.decisions = []

    def restore(self, records: Iterable[tuple[Hashable, float, Sequence[float]]]) -> int:
        """Record ``(trial_id, milestone, values)`` of an earlier run without a decision (and without
        ``on_record``); a milestone that is not a rung of this scheduler is skipped. Returns how many were
        recorded."""
        n = 0
        for trial_id, milestone, values in records:
            rung = next((m for m in self.milestones if abs(m - float(milestone)) < 1e-9), None)
            if rung is not None and values is not None and len(values) == len(self.metrics):
                self.recorded[rung][trial_id] = tuple(math.nan if v is None else float(v) for v in values)
                n += 1
        return n

    def _record(self, trial_id: Hashable, rung: float, values: tuple) -> None:
        self.recorded[rung][trial_id] = values
        if self.on_record is not None:
            self.on_record(trial_id, rung, values)

    def _rung(self, trial_id: Hashable, t: float) -> float | None:
        """The highest milestone reached at ``t``, if the trial is not recorded there yet (as Ray's ASHA:
        a report that skips a rung is recorded at the highest one only)."""
        reached = [m for m in self.milestones if t >= m]
        if not reached or trial_id in self.recorded[reached[-1]]:
            return None
        return reached[-1]

    def on_result(self, trial_id: Hashable, t: float | None, result: Mapping[str, Any]) -> str:
        """CONTINUE or STOP for one intermediate report (``t``: its step). A report without the time or
        without one of the objectives is not a decision point (CONTINUE, nothing recorded)."""
        if t is None:
            return CONTINUE
        values = _values(result, self.metrics)
        if values is None:
            return CONTINUE
        rung = self._rung(trial_id, float(t))
        if rung is None:
            return CONTINUE
        recorded = self.recorded[rung]
        decision = decide(list(recorded.values()), values, self.directions, self.reduction_factor,
                          self.keep_non_dominated)
        self._record(trial_id, rung, values)
        self.decisions.append((trial_id, rung, decision))
        return decision.action

    def on_complete(self, trial_id: Hashable, t: float | None, result: Mapping[str, Any] | None) -> None:
        """Record the last result of a finished trial at the rung it reached, if not yet (no decision)."""
        if t is None or not result:
            return
        values = _values(result, self.metrics)
        rung = self._rung(trial_id, float(t))
        if values is not None and rung is not None:
            self._record(trial_id, rung, values)

    @property
    def stopped(self) -> list:
        return [tid for tid, _, d in self.decisions if d.action == STOP]

    def debug_string(self) -> str:
        return "MO-ASHA: " + " | ".join(f"step {m:g}: {len(r)} recorded" for m, r in self.recorded.items()) + \
            f"; stopped {len(self.stopped)}"
