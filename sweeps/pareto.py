"""Pareto fronts and exact hypervolumes of sweep results (pure Python, any number of objectives).

Points are sequences of objective values; ``directions`` names each objective ``"maximize"`` or
``"minimize"`` (Optuna's words; ``"max"``/``"min"`` also accepted). Internally everything is turned
into minimisation.

- :func:`pareto_front`: indices of the non-dominated points. ``p`` dominates ``q`` when it is at least
  as good in every objective and strictly better in one, so **duplicates never dominate each other:
  every copy of a non-dominated point is on the front**. Points with a NaN are never on it.
- :func:`hypervolume`: the exact volume dominated by the points and bounded by ``reference`` (WFG:
  While, Bradstreet & Barone, "A fast way of calculating exact hypervolumes", 2012, with an O(n log n)
  sweep for two objectives). Points that are not strictly better than the reference in every objective
  add nothing.
- :func:`default_reference`: the rule used when no reference is given: per objective, the worst value
  among the points moved outward by 10 % of the objective's range (10 % of its magnitude when the range
  is 0, or 1.0 when that is 0 too). Hypervolumes are comparable only under the same reference, so pass
  one explicitly when comparing sweeps.
- :func:`hypervolume_history`: hypervolume after each point, in order, under one fixed reference.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["pareto_front", "hypervolume", "hypervolume_history", "default_reference", "dominates",
           "OutwardHypervolume"]

Point = Sequence[float]


def _signs(directions: Sequence[str], dims: int) -> list[float]:
    if len(directions) != dims:
        raise ValueError(f"got {len(directions)} directions for points with {dims} objectives")
    signs = []
    for d in directions:
        d = str(d).lower()
        if d in ("maximize", "max"):
            signs.append(-1.0)
        elif d in ("minimize", "min"):
            signs.append(1.0)
        else:
            raise ValueError(f"direction {d!r} is not one of 'maximize', 'minimize'")
    return signs


def _as_min(points: Sequence[Point], directions: Sequence[str]) -> list[tuple[float, ...]]:
    points = [tuple(float(v) for v in p) for p in points]
    if not points:
        return []
    dims = len(points[0])
    if dims == 0 or any(len(p) != dims for p in points):
        raise ValueError("every point needs the same, non-zero number of objectives")
    signs = _signs(directions, dims)
    return [tuple(s * v for s, v in zip(signs, p)) for p in points]


def dominates(a: Point, b: Point) -> bool:
    """``a`` dominates ``b`` (both minimised): no worse anywhere, strictly better somewhere."""
    strictly = False
    for x, y in zip(a, b):
        if x > y:
            return False
        if x < y:
            strictly = True
    return strictly


def pareto_front(points: Sequence[Point], directions: Sequence[str]) -> list[int]:
    """Indices (ascending) of the non-dominated points; duplicates are all kept, NaN points never."""
    pts = _as_min(points, directions)
    valid = [i for i, p in enumerate(pts) if not any(math.isnan(v) for v in p)]
    # Sweep in lexicographic order: a point can only be dominated by one that sorts before it.
    order = sorted(valid, key=lambda i: pts[i])
    front: list[int] = []
    for i in order:
        if not any(dominates(pts[j], pts[i]) for j in front):
            front.append(i)
    return sorted(front)


def default_reference(points: Sequence[Point], directions: Sequence[str], margin: float = 0.1) -> list[float]:
    """Worst value per objective, pushed outward by ``margin`` × range (see the module notes)."""
    pts = [p for p in _as_min(points, directions) if all(math.isfinite(v) for v in p)]
    if not pts:
        raise ValueError("default_reference needs at least one finite point")
    signs = _signs(directions, len(pts[0]))
    ref = []
    for k, sign in enumerate(signs):
        column = [p[k] for p in pts]
        worst, best = max(column), min(column)
        pad = margin * (worst - best) or margin * abs(worst) or 1.0
        ref.append(sign * (worst + pad))          # back to the user's sign
    return ref


def hypervolume(points: Sequence[Point], directions: Sequence[str],
                reference: Sequence[float] | None = None) -> float:
    """Exact hypervolume of ``points`` with respect to ``reference`` (default: :func:`default_reference`)."""
    pts = _as_min(points, directions)
    if not pts:
        return 0.0
    ref = _reference(points, directions, reference, len(pts[0]))
    inside = [p for p in pts if all(v < r for v, r in zip(p, ref))]   # NaN compares False: dropped
    return _wfg(_nondominated(inside), ref)


def hypervolume_history(points_in_order: Sequence[Point], directions: Sequence[str],
                        reference: Sequence[float] | None = None) -> list[float]:
    """Hypervolume of the first ``k`` points for each ``k`` (one fixed reference for all of them)."""
    if not points_in_order:
        return []
    pts = _as_min(points_in_order, directions)
    ref = _reference(points_in_order, directions, reference, len(pts[0]))
    history, front, volume = [], [], 0.0
    for p in pts:
        inside = all(v < r for v, r in zip(p, ref))
        if inside and not any(q == p or dominates(q, p) for q in front):
            front = [q for q in front if not dominates(p, q)] + [p]
            volume = _wfg(front, ref)
        history.append(volume)
    return history


class OutwardHypervolume:
    """``hypervolume(points, directions)`` for a running sweep: the reference point is the
    :func:`default_reference` of the points so far, but never moves inward (towards better values) from
    the one used for the previous call, so the figure never decreases as points are added (a new worst
    point widens the box; a point that only narrows the range would otherwise shrink the margin and the
    hypervolume with it). ``fixed`` values (the space's ``reference`` per objective) replace the computed
    ones. ``reference`` holds the last one used (the user's signs)."""

    def __init__(self, fixed: Sequence[float | None] | None = None) -> None:
        self.reference: list[float] | None = None
        self.fixed = list(fixed) if fixed is not None else None

    def __call__(self, points: Sequence[Point], directions: Sequence[str]) -> float:
        ref = default_reference(points, directions)
        if self.reference is not None and len(self.reference) == len(ref):
            mins = _as_min([ref, self.reference], directions)
            ref = [s * max(a, b) for s, a, b in zip(_signs(directions, len(ref)), *mins)]
        ref = with_fixed(ref, self.fixed)
        self.reference = list(ref)
        return hypervolume(points, directions, ref)

    def replay(self, points_in_order: Sequence[Point], directions: Sequence[str]) -> None:
        """Move the reference as a run that saw these points one by one would have (a resumed sweep
        goes on from the reference its first run reached, not from one computed over all at once)."""
        for k in range(1, len(points_in_order) + 1):
            try:
                self(points_in_order[:k], directions)
            except ValueError:  # no finite point yet
                continue


def with_fixed(reference: Sequence[float], fixed: Sequence[float | None] | None) -> list[float]:
    """``reference`` with the values given in ``fixed`` (``None``: keep the computed one)."""
    if not fixed or len(fixed) != len(reference):
        return list(reference)
    return [float(f) if f is not None else r for r, f in zip(reference, fixed)]


def _reference(points, directions, reference, dims: int) -> tuple[float, ...]:
    if reference is None:
        reference = default_reference(points, directions)
    if len(reference) != dims or any(math.isnan(float(v)) for v in reference):
        raise ValueError(f"reference {list(reference)} does not match the {dims} objectives")
    return _as_min([reference], directions)[0]


# --- exact hypervolume (minimisation, every point strictly inside the reference box) ---------------

def _nondominated(pts: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    unique = sorted(set(pts))
    front: list[tuple[float, ...]] = []
    for p in unique:
        if not any(dominates(q, p) for q in front):
            front.append(p)
    return front


def _box(p: tuple[float, ...], ref: tuple[float, ...]) -> float:
    volume = 1.0
    for v, r in zip(p, ref):
        volume *= r - v
    return volume


def _hv2d(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    volume, y_bound = 0.0, ref[1]
    for x, y in sorted(pts):                      # x ascending; a non-dominated y then descends
        if y < y_bound:
            volume += (ref[0] - x) * (y_bound - y)
            y_bound = y
    return volume


def _wfg(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """WFG: the volume is the sum of each point's exclusive contribution w.r.t. the points after it."""
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        return _hv2d(pts, ref)
    if len(pts) == 1:
        return _box(pts[0], ref)
    pts = sorted(pts, key=lambda p: p[-1], reverse=True)   # worst last objective first: smaller limits
    total = 0.0
    for i, p in enumerate(pts):
        limited = [tuple(max(a, b) for a, b in zip(q, p)) for q in pts[i + 1:]]
        total += _box(p, ref) - _wfg(_nondominated(limited), ref)
    return total
