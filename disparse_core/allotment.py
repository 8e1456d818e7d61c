"""How the pruning budget is split across layers, with a guard against layer collapse.

A one-shot method makes two choices that are easy to confuse: *how many* weights each layer keeps (the
allotment) and *which* weights inside a layer stay (the criterion, and for DiSparse the unanimous union
of the tasks' keep-sets). Published work (DISPARSE.md §3, "Pitfalls of pruning at init") found that the
first choice decides most of a pruned net's accuracy, so it is an option of its own here, shared by
every scored criterion (DiSparse's per-task scores and the collapsed SNIP / magnitude baselines) through
:func:`allotted_keep`:

============ ==========================================================================================
allotment    how many weights a layer keeps
============ ==========================================================================================
``global``   what one ranking over all layers gives (per task; DiSparse: the unanimous union of each
             task's global top-``k``) — the paper's and the reference's choice
``layer``    the same, after each task's scores are divided by their mean over each layer's candidates,
             so a layer whose scores are small as a whole (a head with a small init, a wide middle
             layer under a gradient score) competes on relative importance
``iterative````global`` in several rounds of rising sparsity, re-scoring the masked net each round
             (FORCE / SynFlow-style; :func:`disparse_core.sparsify.sparsify` runs the rounds)
``erk``      fixed per-layer budgets from ERK (:func:`disparse_core.erk.erk_densities`); inside each
             layer the criterion (DiSparse: one ``k`` per layer, calibrated to its budget) decides
``uniform``  fixed per-layer budgets, every layer at the target density; inside, as for ``erk``
============ ==========================================================================================

The guard (``floor``): every layer some task uses keeps at least ``max(1, ceil(floor · (1 − S) · n))``
of its ``n`` weights (capped by what is still alive), i.e. ``floor`` is a fraction of the target
density. Layers the decision would leave thinner are given their floor (their best weights by the same
decision), and the rest of the budget is decided again over the other layers, so the total stays
exactly ``round((1 − S) · N)``. ``floor = 0`` switches the guard off.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import torch
from torch import Tensor

from .config import ALLOTMENTS, SCORE_ON
from .decision import calibrated_keep
from .erk import erk_densities, mask_counts, uniform_densities

__all__ = ["ALLOTMENTS", "SCORE_ON", "allotted_keep", "layer_floors", "normalised_per_layer", "fixed_layer_counts",
           "settle_counts"]


Scores = Mapping[str, Mapping[str, Tensor]]
Ownership = Mapping[str, frozenset]


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape)


def layer_floors(ownership: Ownership, shapes: Mapping[str, tuple], sparsity: float, floor: float,
                 alive: Mapping[str, Tensor] | None = None) -> dict[str, int]:
    """``{layer: the fewest weights it may keep}`` for every layer some task owns (see the module doc)."""
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be a number in [0, 1], got floor={floor!r}")
    out = {}
    for name, owners in ownership.items():
        if not owners or floor <= 0.0:
            continue
        n = _numel(shapes[name])
        live = n if alive is None else int(alive[name].sum())
        out[name] = min(live, max(1, math.ceil(floor * (1.0 - sparsity) * n)))
    return out


def normalised_per_layer(scores: Scores, alive: Mapping[str, Tensor] | None = None) -> dict:
    """Each task's scores divided by their mean over each layer's candidates (``alive``, default all);
    a layer whose candidates all score 0 is left as it is."""
    out: dict[str, dict[str, Tensor]] = {}
    for task, by_name in scores.items():
        out[task] = {}
        for name, s in by_name.items():
            s = s.float()
            pick = s if alive is None else s[alive[name].to(s.device, torch.bool)]
            mean = float(pick.mean()) if pick.numel() else 0.0
            out[task][name] = s / mean if mean > 0 and math.isfinite(mean) else s
    return out


def fixed_layer_counts(ownership: Ownership, shapes: Mapping[str, tuple], keep: int, allotment: str, *,
                       erk_power: float = 1.0, floors: Mapping[str, int] | None = None,
                       alive: Mapping[str, Tensor] | None = None) -> dict[str, int]:
    """``{layer: kept weights}`` for the fixed-budget allotments (``erk``, ``uniform``) over the owned
    layers, ``keep`` in all (unowned layers keep nothing), each at least its floor and at most what is
    alive in it. Largest-remainder rounding: the counts add up to ``keep`` exactly when feasible."""
    owned = {n: tuple(shapes[n]) for n, o in ownership.items() if o}
    limit = {n: (_numel(s) if alive is None else int(alive[n].sum())) for n, s in owned.items()}
    keep = min(int(keep), sum(limit.values()))
    if not owned or keep <= 0:
        return {n: 0 for n in ownership}
    density = keep / sum(_numel(s) for s in owned.values())
    densities = (erk_densities(owned, density, power=erk_power) if allotment == "erk"
                 else uniform_densities(owned, density))
    counts = mask_counts(owned, densities)
    counts = settle_counts(counts, {n: min(limit[n], (floors or {}).get(n, 0)) for n in owned}, limit, keep)
    return {n: counts.get(n, 0) for n in ownership}


def settle_counts(counts: Mapping[str, int], low: Mapping[str, int], high: Mapping[str, int],
                  keep: int) -> dict[str, int]:
    """Clamp every count into ``[low, high]`` and move the difference to the layers with room, in
    proportion to their counts (largest first), so that the total is ``keep``."""
    counts = {n: max(low[n], min(high[n], c)) for n, c in counts.items()}
    diff = keep - sum(counts.values())
    while diff != 0:
        room = ([n for n in counts if counts[n] < high[n]] if diff > 0
                else [n for n in counts if counts[n] > low[n]])
        if not room:
            break
        weight = sum(counts[n] for n in room) or len(room)
        moved = 0
        for n in sorted(room, key=lambda n: (-counts[n], n)):
            share = max(1, round(abs(diff) * (counts[n] or 1) / weight))
            step = min(share, abs(diff) - moved, high[n] - counts[n] if diff > 0 else counts[n] - low[n])
            counts[n] += step if diff > 0 else -step
            moved += step
            if moved == abs(diff):
                break
        diff += -moved if diff > 0 else moved
    return counts


def _subset(scores: Scores, ownership: Ownership, names, alive):
    names = [n for n in ownership if n in set(names)]
    sub_scores = {t: {n: by_name[n] for n in names if n in by_name} for t, by_name in scores.items()}
    sub_own = {n: ownership[n] for n in names}
    sub_alive = None if alive is None else {n: alive[n] for n in names}
    return sub_scores, sub_own, sub_alive


def _keep_count(scores: Scores, ownership: Ownership, names, count: int, alive, shapes):
    """The unanimous decision over ``names`` only, keeping exactly ``count`` of their weights."""
    sub_scores, sub_own, sub_alive = _subset(scores, ownership, names, alive)
    total = sum(_numel(shapes[n]) for n in sub_own)
    if not sub_own:
        return {}, {}, 0.0
    target = min(max(1.0 - count / total, 0.0), 1.0 - 1e-12) if total else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the caller checks the total once
        masks, task_keep, k, _ = calibrated_keep(sub_scores, sub_own, target, alive=sub_alive,
                                                 exact=True)
    return masks, task_keep, k


def _merge(into_masks, into_keep, masks, task_keep) -> None:
    into_masks.update(masks)
    for t, by_name in task_keep.items():
        into_keep.setdefault(t, {}).update(by_name)


def allotted_keep(scores: Scores, ownership: Ownership, sparsity: float, *, shapes: Mapping[str, tuple],
                  allotment: str = "global", floor: float = 0.0, erk_power: float = 1.0,
                  alive: Mapping[str, Tensor] | None = None, tol: float = 0.001
                  ) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], float, float]:
    """``(masks, task_keep, keep_fraction, achieved_sparsity)`` like
    :func:`~disparse_core.decision.calibrated_keep`, with the budget split across layers by
    ``allotment`` and the layer floor applied (module doc). ``iterative`` decides like ``global`` here
    (one round; the caller re-scores between rounds). ``keep_fraction`` is the ``k`` of the layers
    decided together (``global``/``layer``), or the mean of the per-layer ``k`` (``erk``/``uniform``).
    """
    if allotment not in ALLOTMENTS:
        raise ValueError(f"allotment must be one of {', '.join(ALLOTMENTS)}, got {allotment!r}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {sparsity}")
    names = list(ownership)
    total = sum(_numel(shapes[n]) for n in names)
    want = int(round((1.0 - float(sparsity)) * total))
    floors = layer_floors(ownership, shapes, float(sparsity), floor, alive)
    masks = {n: torch.zeros(tuple(shapes[n]), dtype=torch.bool) for n in names}
    task_keep: dict[str, dict[str, Tensor]] = {t: {} for t in scores}
    if allotment in ("erk", "uniform"):
        counts = fixed_layer_counts(ownership, shapes, want, allotment, erk_power=erk_power,
                                    floors=floors, alive=alive)
        ks = []
        for name in names:
            if not ownership[name]:
                continue
            m, tk, k = _keep_count(scores, ownership, [name], counts[name], alive, shapes)
            _merge(masks, task_keep, m, tk)
            ks.append(k)
        k = sum(ks) / len(ks) if ks else 0.0
    else:
        if allotment == "layer":
            scores = normalised_per_layer(scores, alive)
        fixed: dict[str, int] = {}
        while True:
            free = [n for n in names if n not in fixed]
            m, tk, k = _keep_count(scores, ownership, free, max(want - sum(fixed.values()), 0), alive,
                                   shapes)
            thin = [n for n in free if n in floors and int(m[n].sum()) < floors[n]]
            if not thin:
                break
            fixed.update({n: floors[n] for n in thin})
        _merge(masks, task_keep, m, tk)
        for name, count in fixed.items():
            m1, tk1, _ = _keep_count(scores, ownership, [name], count, alive, shapes)
            _merge(masks, task_keep, m1, tk1)
    device = next((s.device for by in scores.values() for s in by.values()), torch.device("cpu"))
    masks = {n: m.to(device) for n, m in masks.items()}
    kept = sum(int(m.sum()) for m in masks.values())
    achieved = 1.0 - kept / total if total else 0.0
    if abs(kept - want) > tol * total:
        warnings.warn(f"achieved sparsity {achieved:.4f} misses the target {sparsity:.4f} by more than "
                      f"{tol} (unowned or already-pruned weights, or layer floors, limit it)",
                      RuntimeWarning, stacklevel=2)
    return masks, task_keep, float(k), achieved
