"""The unanimous decision (DISPARSE.md §2): keep a weight when some task that uses it wants it.

Each task ``t`` ranks the weights it owns by its own score, globally over all its tensors, and keeps
the top fraction ``k`` (``K_t``). A tensor's mask is the OR of its owners' keep-sets, so a weight is
pruned only when every owner agrees. A tensor that no task owns (no output reaches it: dead) is pruned
entirely — the OR over an empty set of owners — and still counts in the density's denominator.

Ties are broken deterministically: equal scores rank by position (the tensor's order in
``ownership``, then the flat index inside the tensor), earlier first.

How ``k`` maps to keep-sets: a task with ``N_t`` candidate weights keeps the weight of rank ``r``
(0 = best) iff ``(r + 1) / N_t <= k``, i.e. its top ``floor(k · N_t)``. Call ``(r + 1) / N_t`` the
weight's *entry point* for the task; the union keeps weight ``i`` iff ``min_t entry_t(i) <= k``. So the
overall density is a step function of ``k`` whose steps are the entry points: :func:`calibrated_keep`
reads the ``k`` that meets the target as the ``round((1 − S) · N)``-th smallest entry point — the
fixed point a bisection on ``k`` would converge to, found exactly with one sort per task and one
selection (``kthvalue``), never a re-sort per trial ``k``.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import torch
from torch import Tensor

__all__ = ["unanimous_keep", "calibrated_keep"]

Scores = Mapping[str, Mapping[str, Tensor]]
Ownership = Mapping[str, frozenset]
Masks = dict[str, Tensor]
TaskKeep = dict[str, dict[str, Tensor]]


def unanimous_keep(task_scores: Scores, ownership: Ownership, keep_fraction: float, *,
                   alive: Mapping[str, Tensor] | None = None) -> tuple[Masks, TaskKeep]:
    """``(masks, task_keep)`` for one keep fraction ``k`` shared by every task.

    ``masks``: ``{name: bool}`` for every tensor in ``ownership``; ``task_keep``: ``{task: {name: bool}}``
    for the tensors each task owns (``K_t`` before the union). ``alive`` (optional ``{name: bool}``)
    restricts the candidates: a weight outside it is never kept and does not count in ``N_t`` (used
    by gradual pruning so that pruned weights stay pruned).
    """
    if not 0.0 <= float(keep_fraction) <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    layout = _Layout(task_scores, ownership, alive)
    return layout.decide(float(keep_fraction))


def calibrated_keep(task_scores: Scores, ownership: Ownership, target_sparsity: float,
                    tol: float = 0.001, *, alive: Mapping[str, Tensor] | None = None,
                    exact: bool = False) -> tuple[Masks, TaskKeep, float, float]:
    """``(masks, task_keep, keep_fraction, achieved_sparsity)`` with one ``k`` for every task, chosen
    so that the kept weights are ``round((1 − S) · N)`` of all ``N`` weights in ``ownership``.

    Exact up to ties between entry points (at most one weight per task lands on the same step), so
    the achieved sparsity is within a few weights of the target. When the target cannot be met
    (the dead or non-``alive`` weights alone exceed it), the closest achievable mask is returned
    and a ``RuntimeWarning`` says by how much it misses; ``tol`` is that warning's threshold.

    ``exact=True`` removes the ties too: when several weights enter the union at the same step ``k``
    (two tasks owning layers of the same size reach the same rank together), only as many of them as
    the count needs are kept, earliest position first, and each task's keep-set loses the weights the
    union dropped (``K_t ∩ mask``), so the masks hold exactly ``round((1 − S) · N)`` weights whenever
    enough weights are owned and alive.
    """
    if not 0.0 <= float(target_sparsity) < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
    layout = _Layout(task_scores, ownership, alive)
    total = layout.total
    want = int(round((1.0 - float(target_sparsity)) * total))
    entry = layout.union_entry()
    finite = entry[torch.isfinite(entry)]
    if want <= 0 or finite.numel() == 0:
        k = 0.0
    else:
        k = float(torch.kthvalue(finite, min(want, finite.numel())).values)
    masks, task_keep = layout.decide(k)
    kept = sum(int(m.sum()) for m in masks.values())
    if exact and kept > want > 0:
        masks, task_keep = layout.trim_ties(masks, task_keep, entry, k, want)
        kept = want
    achieved = 1.0 - kept / total if total else 0.0
    if abs(kept - want) > tol * total:  # want: the closest achievable count, not the real-valued target
        warnings.warn(f"achieved sparsity {achieved:.4f} misses the target {target_sparsity:.4f} by more "
                      f"than {tol} (unowned or already-pruned weights limit it)", RuntimeWarning,
                      stacklevel=2)
    return masks, task_keep, k, achieved


class _Layout:
    """Per-task entry points of every owned weight, computed once (one sort per task)."""

    def __init__(self, task_scores: Scores, ownership: Ownership, alive):
        self.ownership = ownership
        self.shapes: dict[str, torch.Size] = {}
        self.device = None
        for task, by_name in task_scores.items():
            for name, s in by_name.items():
                if name not in ownership or task not in ownership[name]:
                    raise ValueError(f"task {task!r} has a score for {name!r}, which it does not own")
                self.shapes.setdefault(name, s.shape)
                self.device = self.device or s.device
        for name, owners in ownership.items():
            for t in owners:
                if t not in task_scores or name not in task_scores[t]:
                    raise ValueError(f"no {t!r} score for {name!r}, which task {t!r} owns")
        if alive is not None:
            missing = [n for n in ownership if n not in alive]
            if missing:
                raise ValueError(f"alive mask missing for {missing[0]!r}")
            for name in ownership:
                self.shapes.setdefault(name, alive[name].shape)
        unknown = [n for n in ownership if n not in self.shapes]
        if unknown:
            raise ValueError(f"tensor {unknown[0]!r} has no owner and no alive mask: its shape is "
                             f"unknown (pass alive= or give it an owner)")
        self.device = self.device or torch.device("cpu")
        self.total = sum(int(torch.Size(self.shapes[n]).numel()) for n in ownership)
        self.alive = alive
        # {task: (names, flat entry points in float64, inf for non-candidates)}
        self.entries = {t: self._task_entries(t, by_name) for t, by_name in task_scores.items()}

    def _task_entries(self, task: str, by_name: Mapping[str, Tensor]) -> tuple[list[str], Tensor]:
        names = [n for n in self.ownership if n in by_name]  # model order, not the dict's order
        if not names:
            return names, torch.empty(0, dtype=torch.float64, device=self.device)
        flat = torch.cat([by_name[n].detach().reshape(-1).float() for n in names])
        flat = torch.nan_to_num(flat, nan=float("-inf"))
        if self.alive is None:
            candidates = None
            pick = flat
        else:
            keep = torch.cat([self.alive[n].reshape(-1).to(flat.device, torch.bool) for n in names])
            candidates = torch.nonzero(keep).squeeze(1)
            pick = flat[candidates]
        n = pick.numel()
        order = torch.sort(pick, descending=True, stable=True).indices
        entry_sorted = torch.arange(1, n + 1, dtype=torch.float64, device=flat.device) / max(n, 1)
        entry = torch.full((flat.numel(),), float("inf"), dtype=torch.float64, device=flat.device)
        target_pos = order if candidates is None else candidates[order]
        entry[target_pos] = entry_sorted
        return names, entry

    def _split(self, names: list[str], flat: Tensor):
        offset = 0
        for name in names:
            n = int(torch.Size(self.shapes[name]).numel())
            yield name, flat[offset:offset + n]
            offset += n

    def union_entry(self) -> Tensor:
        """The smallest entry point over each weight's owners, flat in ownership order (inf: dead)."""
        offsets, offset = {}, 0
        for name in self.ownership:
            offsets[name] = offset
            offset += int(torch.Size(self.shapes[name]).numel())
        best = torch.full((offset,), float("inf"), dtype=torch.float64, device=self.device)
        for names, entry in self.entries.values():
            for name, part in self._split(names, entry):
                sl = best[offsets[name]:offsets[name] + part.numel()]
                torch.minimum(sl, part.to(sl.device), out=sl)
        return best

    def trim_ties(self, masks: Masks, task_keep: TaskKeep, entry: Tensor, k: float, want: int
                  ) -> tuple[Masks, TaskKeep]:
        """Keep only the first ``want − #(entry < k)`` of the weights entering at exactly ``k``."""
        ties = torch.nonzero(entry == k).squeeze(1)
        drop = ties[max(want - int((entry < k).sum()), 0):]
        flat = torch.cat([masks[n].reshape(-1) for n in self.ownership]).to(entry.device)
        flat[drop] = False
        offset = 0
        for name in self.ownership:
            n = int(torch.Size(self.shapes[name]).numel())
            masks[name] = flat[offset:offset + n].reshape(self.shapes[name]).to(self.device)
            offset += n
        for by_name in task_keep.values():
            for name in by_name:
                by_name[name] = by_name[name] & masks[name]
        return masks, task_keep

    def decide(self, k: float) -> tuple[Masks, TaskKeep]:
        masks = {name: torch.zeros(self.shapes[name], dtype=torch.bool, device=self.device)
                 for name in self.ownership}
        task_keep: TaskKeep = {}
        for task, (names, entry) in self.entries.items():
            task_keep[task] = {}
            for name, part in self._split(names, entry):
                keep = (part <= k).reshape(self.shapes[name]).to(self.device)
                task_keep[task][name] = keep
                masks[name] |= keep
        return masks, task_keep
