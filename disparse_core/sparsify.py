"""One entry point for one-shot sparsification: DiSparse static / pretrained and the baselines.

Every method is the same path — score, decide, attach — with the task dimension collapsed for the
baselines (one pseudo-task :data:`~disparse_core.scoring.COLLAPSED_TASK` owning every live tensor):

==================== ========================================= =====================================
method               scores                                    decision
==================== ========================================= =====================================
``disparse_static``  per task, ``snip`` (or ``gradient``,       unanimous, one calibrated ``k``
                     ``taylor``) at init
``disparse_pretrained`` per task, ``magnitude`` (or ``taylor``,  unanimous, one calibrated ``k``
                     ``snip``) on a trained net
``snip``             summed loss ``Σ λ_t L_t``, ``snip``         global top-k
``magnitude``        ``|w|`` (one-shot IMP on a trained net)   global top-k
``random``           none; ``distribution='uniform'|'erk'``    per-layer random subsets (seeded)
``dense``            none                                      all-true masks
==================== ========================================= =====================================

Weights that no task output reaches are pruned by the score-based methods (nobody uses them) and count
in the denominator of the sparsity; ``random`` and ``dense`` ignore ownership. A model that already
carries masks is re-sparsified *within* them: pruned weights stay pruned (gradual pruning relies on it).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .allotment import allotted_keep, layer_floors, settle_counts
from .config import ALLOTMENTS, SCORE_ON, SPARSIFY_METHODS
from .config import METHODS as TRIAL_METHODS
from .erk import erk_densities, mask_counts, random_masks_with_counts, uniform_densities
from .masks import (attach_masks, buffers_kept, get_masks, prunable_weights, weights_redrawn,
                    weights_tracked)
from .ownership import check_losses, forward_tasks, ownership_from_outputs
from .schedules import cubic_sparsity
from .scoring import COLLAPSED_TASK, _check_batch, _to_device, collapse_ownership, task_scores

__all__ = ["METHODS", "SCORE_ON", "SparsifyResult", "sparsify", "GradualPruner"]

#: the methods decided here -> (default criterion, allowed criteria), from the trial schema's table
METHODS: dict[str, tuple[str | None, tuple[str, ...]]] = {m: TRIAL_METHODS[m] for m in SPARSIFY_METHODS}
_COLLAPSED = {"snip", "magnitude", "random", "dense"}
_OPTIONS = {"score_batches", "distribution", "erk_power", "dense_layers", "tol", "allotment", "floor",
            "score_on", "rounds"}


@dataclass
class SparsifyResult:
    """What :func:`sparsify` decided.

    ``task_keep`` holds each task's keep-set ``K_t`` before the union (``{task: {name: bool}}``, only
    the tensors the task owns); collapsed methods have the single key ``"all_tasks"``
    (:data:`COLLAPSED_TASK`). ``achieved_sparsity`` counts all prunable weights of the model.
    """

    method: str
    criterion: str | None
    target_sparsity: float
    achieved_sparsity: float
    keep_fraction: float
    masks: dict[str, Tensor]
    task_keep: dict[str, dict[str, Tensor]]
    ownership: dict[str, frozenset[str]]
    layer_sparsity: dict[str, float] = field(default_factory=dict)

    def mask_iou(self) -> dict[str, float]:
        """Per shared layer IoU of the tasks' keep-sets (see :func:`disparse_core.iou.mask_iou`)."""
        from .iou import mask_iou
        return mask_iou(self.task_keep, self.ownership)


def _take_batches(batches, n) -> list:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"score_batches must be a positive integer, got {n!r}")
    if isinstance(batches, (Tensor, Mapping)) or batches is None:
        raise ValueError(f"batches must be a list or iterable of (inputs, {{task: target}}), "
                         f"got {type(batches).__name__}")
    taken = list(itertools.islice(batches, n)) if n is not None else list(batches)
    if not taken:
        raise ValueError("no batches given: sparsify needs at least one (inputs, {task: target}) batch")
    return taken


def _check_arguments(method, criterion, sparsity, options, loss_weights) -> str | None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got sparsity={sparsity!r}")
    default, allowed = METHODS[method]
    if criterion is None:
        criterion = default
    elif criterion not in ("snip", "magnitude", "taylor", "gradient"):
        raise ValueError(f"unknown criterion {criterion!r} (expected snip, magnitude, taylor or gradient)")
    elif criterion not in allowed:
        raise ValueError(f"criterion {criterion!r} not allowed for method {method!r} "
                         f"(allowed: {', '.join(allowed) or 'none'})")
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (expected some of {', '.join(sorted(_OPTIONS))})")
    if options.get("distribution", "uniform") not in ("uniform", "erk"):
        raise ValueError(f"distribution must be 'uniform' or 'erk', got {options['distribution']!r}")
    if options.get("allotment", "global") not in ALLOTMENTS:
        raise ValueError(f"allotment must be one of {', '.join(ALLOTMENTS)}, got {options['allotment']!r}")
    if options.get("score_on", "weights") not in SCORE_ON:
        raise ValueError(f"score_on must be 'weights' or 'reinit', got {options['score_on']!r}")
    floor = options.get("floor", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be a number in [0, 1], got floor={floor!r}")
    rounds = options.get("rounds", 5)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got rounds={rounds!r}")
    tol = options.get("tol", 0.001)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a number > 0, got tol={tol!r}")
    for t, w in (loss_weights or {}).items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"loss weight of task {t!r} must be a number >= 0, got {w!r}")
    return criterion


def sparsify(model: nn.Module, batches: Iterable, losses: Mapping[str, Callable], *, sparsity: float,
             method: str = "disparse_static", criterion: str | None = None,
             loss_weights: Mapping[str, float] | None = None, seed: int = 0,
             **options) -> SparsifyResult:
    """Prune ``model`` once to ``sparsity`` with ``method`` and attach the masks (in place).

    ``batches``: a list or any iterable of ``(inputs, {task: target})``; the first
    ``options['score_batches']`` are used (default: all of them — pass an int for an endless
    loader). Score-free criteria and methods (``magnitude``, ``random``, ``dense``) read only the first
    batch, to learn the tasks and ownership. ``loss_weights`` (``{task: λ}``, default 1) weigh the
    summed loss of the collapsed ``snip`` baseline; they cannot change a per-task ranking. Only the
    masks change: the scoring forwards run in train mode, and the buffers they touch (BatchNorm running
    statistics) are put back afterwards.

    Options: ``score_batches`` (int), ``distribution`` (``random``: ``'uniform'`` or ``'erk'``),
    ``erk_power`` (default 1.0; the DiSparse reference uses 0.9), ``dense_layers`` (names kept dense
    by ``random``), ``tol`` (calibration warning threshold, default 0.001).

    Example::

        result = sparsify(model, train_batches, losses, sparsity=0.9, method="disparse_static",
                          score_batches=50)
        print(result.achieved_sparsity, result.keep_fraction)
    """
    criterion = _check_arguments(method, criterion, sparsity, options, loss_weights)
    needs_data = criterion in ("snip", "gradient", "taylor")
    taken = _take_batches(batches, options.get("score_batches") if needs_data else 1)
    inputs, _ = _check_batch(taken[0])
    params = prunable_weights(model)
    if not params:
        raise ValueError("model has no prunable tensors (weights of Conv2d or Linear layers)")
    device = next(iter(params.values())).device
    # one forward: the tasks, and ownership from the graph (frozen prunable weights tracked too)
    with buffers_kept(model), torch.enable_grad(), weights_tracked(model):
        outputs = forward_tasks(model, _to_device(inputs, device))
        ownership = ownership_from_outputs(model, outputs)
    unowned = [n for n, o in ownership.items() if not o]
    if unowned and method not in ("random", "dense"):
        warnings.warn(f"no task output reaches {len(unowned)} prunable tensor(s) {unowned[:3]}: they are "
                      f"pruned entirely (unused, or used under torch.no_grad(), .detach() or a reentrant "
                      f"checkpoint?)", RuntimeWarning, stacklevel=2)
    check_losses(outputs, losses)
    del outputs
    unknown_w = sorted(set(loss_weights or {}) - set(losses))
    if unknown_w:
        raise ValueError(f"loss weight given for unknown task {unknown_w[0]!r} (tasks: {sorted(losses)})")

    alive = get_masks(model)                # the current masks (all True when none): pruned stays pruned
    if method in ("random", "dense"):
        masks, k = _unscored_masks(model, alive, ownership, method, sparsity, seed, options)
        own = collapse_ownership(ownership)
        task_keep = {COLLAPSED_TASK: {n: masks[n] for n, o in own.items() if o}}
        achieved = _sparsity(masks)
    else:
        masks, task_keep, k, achieved = _scored_masks(model, taken, losses, method, criterion, ownership,
                                                      float(sparsity), alive, loss_weights, seed, options)
    _warn_emptied(masks, ownership, alive)
    attach_masks(model, masks)
    return SparsifyResult(method=method, criterion=criterion, target_sparsity=float(sparsity),
                          achieved_sparsity=achieved, keep_fraction=k, masks=masks,
                          task_keep=task_keep, ownership=dict(ownership),
                          layer_sparsity={n: 1.0 - float(m.float().mean()) for n, m in masks.items()})


def _warn_emptied(masks: Mapping[str, Tensor], ownership: Mapping[str, frozenset],
                  before: Mapping[str, Tensor]) -> None:
    """Warn when this pruning leaves a layer some task uses with no weight: unless a skip connection
    bypasses it, that task's output no longer depends on its input (global rankings do it at high
    sparsity, e.g. magnitude when layers' weights have different scales)."""
    emptied = [n for n, m in masks.items() if ownership.get(n) and not bool(m.any()) and bool(before[n].any())]
    if emptied:
        warnings.warn(f"{len(emptied)} layer(s) used by a task keep no weight ({', '.join(emptied[:3])}"
                      f"{', ...' if len(emptied) > 3 else ''}): the tasks using them are cut off unless a "
                      f"skip connection bypasses them; a lower sparsity or another criterion keeps them "
                      f"(run_trial reports min_layer_density)", RuntimeWarning, stacklevel=3)


def _sparsity(masks: Mapping[str, Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


def _scored_masks(model, taken, losses, method, criterion, ownership, sparsity, alive, loss_weights, seed,
                  options):
    """Score (on the model's weights or a seeded re-draw, ``score_on``) and decide with the allotment
    and layer floor of ``options``; ``iterative`` re-scores the masked net in ``rounds`` rounds of
    exponentially rising sparsity (the last at the target). The same path for every criterion: the
    collapsed baselines score one pseudo-task."""
    collapse = method in _COLLAPSED
    own = collapse_ownership(ownership) if collapse else ownership
    allotment = options.get("allotment", "global")
    rounds = int(options.get("rounds", 5)) if allotment == "iterative" else 1
    shapes = {n: tuple(p.shape) for n, p in prunable_weights(model).items()}
    decide = dict(shapes=shapes, allotment=allotment, floor=float(options.get("floor", 0.0)),
                  erk_power=float(options.get("erk_power", 1.0)), tol=float(options.get("tol", 0.001)))
    start = _sparsity(alive)
    redraw = (weights_redrawn(model, seed) if options.get("score_on", "weights") == "reinit"
              else contextlib.nullcontext())
    current = alive
    # scoring forwards are not training: BatchNorm statistics stay; frozen weights are scored too
    with redraw, buffers_kept(model), weights_tracked(model):
        for r in range(1, rounds + 1):
            target = sparsity if r == rounds else 1.0 - (1.0 - start) * (
                (1.0 - sparsity) / (1.0 - start)) ** (r / rounds)
            if r > 1:
                attach_masks(model, current)
            scores = task_scores(model, taken, losses, criterion=criterion, ownership=ownership,
                                 collapse=collapse, loss_weights=loss_weights)
            current, task_keep, k, achieved = allotted_keep(scores, own, max(target, start),
                                                            alive=current, **decide)
    return current, task_keep, k, achieved


def _unscored_masks(model, alive, ownership, method, sparsity, seed, options) -> tuple[dict[str, Tensor], float]:
    weights = prunable_weights(model)
    if method == "dense":                   # alive: all True without masks; pruned weights stay pruned
        return alive, 1.0
    shapes = {n: tuple(p.shape) for n, p in weights.items()}
    density = 1.0 - float(sparsity)
    dense = set(options.get("dense_layers", ()))
    allotment = options.get("allotment", "global")
    # random scores ranked globally, per layer or in rounds give every layer the same density in
    # law: those allotments draw uniform counts; erk / uniform are fixed budgets as for scored methods
    distribution = allotment if allotment in ("erk", "uniform") else options.get("distribution", "uniform")
    if distribution == "erk":
        densities = erk_densities(shapes, density, power=float(options.get("erk_power", 1.0)), dense=dense)
    else:
        densities = uniform_densities(shapes, density, dense=dense)
    counts = mask_counts(shapes, densities)
    floors = layer_floors(ownership, shapes, float(sparsity), float(options.get("floor", 0.0)), alive)
    live = {n: int(alive[n].sum()) for n in shapes}
    counts = settle_counts(counts, {n: floors.get(n, 0) for n in shapes}, live, sum(counts.values()))
    generator = torch.Generator().manual_seed(int(seed))
    if all(bool(a.all()) for a in alive.values()):   # no mask yet
        masks = random_masks_with_counts(shapes, counts, generator)
    else:                                            # re-sparsify within the current masks
        masks = {}
        for n, shape in shapes.items():
            idx = alive[n].flatten().nonzero().squeeze(1).cpu()
            keep = torch.zeros(alive[n].numel(), dtype=torch.bool)
            keep[idx[torch.randperm(idx.numel(), generator=generator)[:counts[n]]]] = True
            masks[n] = keep.view(shape)
    return {n: m.to(weights[n].device) for n, m in masks.items()}, density


class GradualPruner:
    """Gradual DiSparse pruning of a trained net (pretrained variant): several prune steps following
    the cubic schedule ``cubic_sparsity`` (Zhu & Gupta) with finetuning in between.

    Prune steps happen at ``start, start + interval, …, start + prune_steps · interval``; at each one
    the model is re-sparsified to the scheduled sparsity within its current masks (pruned weights stay
    pruned), so the last step reaches ``final_sparsity``. ``maybe_prune`` returns the
    :class:`SparsifyResult` of a prune step, else ``None``; ``history`` lists every result.

    Example::

        pruner = GradualPruner(model, losses, final_sparsity=0.9, prune_steps=4, interval=250,
                               method="disparse_pretrained", criterion="magnitude")
        for step in range(steps):
            pruner.maybe_prune(step, score_batches)   # before the step's update
            train_one_step(model, optimizer, next(loader))
    """

    def __init__(self, model: nn.Module, losses: Mapping[str, Callable], *, final_sparsity: float,
                 prune_steps: int, interval: int, initial_sparsity: float = 0.0, start: int = 0,
                 method: str = "disparse_pretrained", criterion: str | None = None,
                 loss_weights: Mapping[str, float] | None = None, seed: int = 0, **options):
        if method in ("random", "dense"):
            raise ValueError(f"gradual pruning needs a scored method, got method={method!r}")
        _check_arguments(method, criterion, final_sparsity, options, loss_weights)
        if not 0.0 <= initial_sparsity <= final_sparsity:
            raise ValueError(f"initial_sparsity must be in [0, final_sparsity={final_sparsity}], "
                             f"got {initial_sparsity!r}")
        for key, value in (("prune_steps", prune_steps), ("interval", interval)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.model, self.losses = model, losses
        self.schedule = dict(initial=float(initial_sparsity), final=float(final_sparsity),
                             start=int(start), n=int(prune_steps), interval=int(interval))
        self.kwargs = dict(method=method, criterion=criterion, loss_weights=loss_weights, seed=seed,
                           **options)
        self.history: list[SparsifyResult] = []

    def prune_steps(self) -> list[int]:
        s = self.schedule
        return [s["start"] + i * s["interval"] for i in range(s["n"] + 1)]

    def target(self, step: int) -> float:
        return cubic_sparsity(step, **self.schedule)

    def maybe_prune(self, step: int, batches: Iterable) -> SparsifyResult | None:
        if step not in self.prune_steps():
            return None
        target = self.target(step)
        if target <= 0.0 and not self.history:
            return None
        result = sparsify(self.model, batches, self.losses, sparsity=target, **self.kwargs)
        self.history.append(result)
        return result
