"""What each method does to the net during training (private; :mod:`disparse_core._train_loop` asks).

One :class:`Pruner` per trial, chosen once from the method (:func:`make_pruner`, the table
:data:`PRUNERS`: adding a method is one row there). It answers the training loop's questions:

- :meth:`Pruner.setup`: build what the method needs before step 0 (and before a resume);
- :meth:`Pruner.before_step`: the prune events of a step (before its update);
- :meth:`Pruner.recording` / :meth:`Pruner.backward`: the training forward's wrapper and the backward;
- :meth:`Pruner.final_mask_iou`, :attr:`Pruner.starved`, :attr:`Pruner.ownership`: the keep-sets'
  IoU, the starved layers and the ownership the pruning saw, at the end of training;
- :meth:`Pruner.state_dict` / :meth:`Pruner.load_state_dict`: its part of a checkpoint.

The pruners (``disparse_core.trial`` says when each method prunes):

- :class:`Pruner` itself, the null pruner: ``dense`` never prunes;
- :class:`AtInitPruner`: ``disparse_static``, ``snip``, ``random``: one-shot ``sparsify`` at step 0;
- :class:`PretrainedPruner`: ``disparse_pretrained``, ``magnitude``: dense until ``pretrain_steps``,
  then ``finetune_lr`` and a one-shot prune (or the events of a ``GradualPruner``);
- :class:`DynamicPruner`: ``disparse_dynamic``, ``rigl``: a ``DynamicSparsifier`` from step 0.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

import torch
from torch import nn

from .config import TrialConfig, gradual_start
from .masks import buffers_kept, get_masks
from .tasks import weighted_total

__all__ = ["LoopParts", "Pruner", "AtInitPruner", "PretrainedPruner", "DynamicPruner", "PRUNERS",
           "make_pruner"]


@dataclass(frozen=True)
class LoopParts:
    """What a pruner may use of the trial: its config, model, optimizer, losses and scoring batches."""

    cfg: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    losses: Mapping[str, Callable]
    loss_weights: Mapping[str, float]
    score_batches: Callable[[int], list]    # the first n batches of the scoring stream (on the CPU)
    sample_batch: Callable[[], Any]         # the first scoring batch, on the trial's device


class Pruner:
    """The null pruner (``dense``) and the defaults every method shares: no prune event, the weighted
    loss's backward, keep-sets from the last prune event (none here), masks restored from a checkpoint.

    ``per_task``: the method keeps a keep-set per task (DiSparse), so a mask IoU exists; the baselines
    collapse the task dimension and have none."""

    def __init__(self, parts: LoopParts, per_task: bool = False):
        self.parts, self.per_task = parts, per_task
        self.mask_iou: dict[str, float] | None = None   # of the last prune event's keep-sets
        self.starved: list[str] = []                    # shared layers some task kept (almost) nothing of
        self._ownership: dict | None = None             # {layer: tasks using it}, from the last prune

    # ---------------------------------------------------------------------------- the loop's questions
    def setup(self) -> None:
        """Before step 0 (and before a resume loads a checkpoint)."""

    def before_step(self, step: int) -> None:
        """The prune events of ``step``, before its update."""

    def recording(self, step: int) -> ContextManager:
        """Wraps the training forward of ``step``."""
        return nullcontext()

    def backward(self, step: int, task_losses: Mapping[str, torch.Tensor]) -> None:
        weighted_total(task_losses, self.parts.loss_weights).backward()

    def final_mask_iou(self) -> dict[str, float] | None:
        """Per shared layer IoU of the tasks' keep-sets at the end of training (None: no keep-sets);
        :attr:`starved` then holds the layers some task kept (almost) nothing of."""
        return dict(self.mask_iou) if self.mask_iou is not None else None

    @property
    def ownership(self) -> dict | None:
        """``{layer: tasks}`` as the pruning saw it (None: not known, e.g. dense or a resumed static run)."""
        return self._ownership

    # ------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """This pruner's entries of a checkpoint (the masks are saved by the loop)."""
        return {"dynamic": None, "pruner": None,
                "mask_iou": dict(self.mask_iou) if self.mask_iou is not None else None,
                "starved": list(self.starved)}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from a checkpoint, before the model's own state is loaded (masks first)."""
        self._load_masks(state)
        self.mask_iou = state["mask_iou"]
        self.starved = list(state.get("starved") or [])

    def _load_masks(self, state: Mapping) -> None:
        from .masks import attach_masks
        if state["masks"] is not None:
            attach_masks(self.parts.model, state["masks"])


class _OneShotPruner(Pruner):
    """A method that prunes with :func:`~disparse_core.sparsify.sparsify` (or its gradual schedule)."""

    def _sparsify_once(self) -> None:
        from .sparsify import sparsify
        p, cfg = self.parts, self.parts.cfg
        result = sparsify(p.model, p.score_batches(cfg.score_batches), p.losses, sparsity=cfg.sparsity,
                          method=cfg.method, criterion=cfg.resolved_criterion,
                          loss_weights=p.loss_weights, seed=cfg.seed, **self._options())
        self._after_prune(result)

    def _options(self) -> dict:
        """The scoring and allotment options every one-shot method gets alike (sparsify's options);
        ``distribution`` only matters to ``random``, ``erk_power`` to the ERK allotments."""
        cfg = self.parts.cfg
        return {"score_batches": cfg.score_batches, "distribution": cfg.distribution,
                "erk_power": cfg.dynamic.erk_power, "score_on": cfg.resolved_score_on,
                "allotment": cfg.allotment, "floor": cfg.layer_floor, "rounds": cfg.score_rounds}

    def _after_prune(self, result) -> None:
        self.parts.optimizer.state.clear()   # masked weights stay exactly zero; a finetune starts fresh
        if result.ownership:
            self._ownership = dict(result.ownership)
        if self.per_task:
            from .iou import starved_layers
            self.mask_iou = result.mask_iou()
            self.starved = starved_layers(result.task_keep, result.ownership)


class AtInitPruner(_OneShotPruner):
    """One-shot prune at step 0, before any update; the masks then stay."""

    def before_step(self, step: int) -> None:
        if step == 0:
            self._sparsify_once()


class PretrainedPruner(_OneShotPruner):
    """Dense until ``pretrain_steps``; there the learning rate becomes ``finetune_lr`` and the net is
    pruned once, or by a :class:`~disparse_core.sparsify.GradualPruner` (``gradual``) whose events
    start there."""

    def __init__(self, parts: LoopParts, per_task: bool = False):
        super().__init__(parts, per_task)
        self.gradual = None

    def setup(self) -> None:
        cfg = self.parts.cfg
        if cfg.gradual is None:
            return
        from .sparsify import GradualPruner
        g, p = cfg.gradual, self.parts
        self.gradual = GradualPruner(
            p.model, p.losses, final_sparsity=cfg.sparsity, prune_steps=g.prune_steps,
            interval=g.interval, initial_sparsity=g.initial_sparsity,
            start=gradual_start(cfg.resolved_pretrain_steps, g), method=cfg.method,
            criterion=cfg.resolved_criterion, loss_weights=p.loss_weights, seed=cfg.seed,
            **self._options())

    def before_step(self, step: int) -> None:
        cfg = self.parts.cfg
        pre = cfg.resolved_pretrain_steps
        if step == pre:
            for group in self.parts.optimizer.param_groups:
                group["lr"] = cfg.resolved_finetune_lr
        if self.gradual is not None:
            if step in self.gradual.prune_steps():
                result = self.gradual.maybe_prune(step, self.parts.score_batches(cfg.score_batches))
                if result is not None:
                    self._after_prune(result)
        elif step == pre:
            self._sparsify_once()

    def state_dict(self) -> dict:
        """Adds the GradualPruner's history: one summary per prune event done (the keep-sets of the
        last event are saved as ``mask_iou``)."""
        state = super().state_dict()
        if self.gradual is not None:
            state["pruner"] = [{"method": r.method, "criterion": r.criterion,
                                "target_sparsity": r.target_sparsity,
                                "achieved_sparsity": r.achieved_sparsity, "keep_fraction": r.keep_fraction,
                                "layer_sparsity": dict(r.layer_sparsity)} for r in self.gradual.history]
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restores the GradualPruner's history: the summaries, with the checkpoint's masks; per-task
        keep-sets and ownership are not kept (empty)."""
        super().load_state_dict(state)
        if self.gradual is not None and state.get("pruner"):
            from .sparsify import SparsifyResult
            masks = dict(state["masks"] or {})
            self.gradual.history = [SparsifyResult(masks=masks, task_keep={}, ownership={}, **dict(h))
                                    for h in state["pruner"]]


class DynamicPruner(Pruner):
    """A :class:`~disparse_core.dynamic.DynamicSparsifier` from step 0 (``rigl``: tasks collapsed): its
    recording context wraps the forward and its backward drops and grows on update steps."""

    def __init__(self, parts: LoopParts, per_task: bool = False):
        super().__init__(parts, per_task)
        self.sparsifier = None

    def setup(self) -> None:
        from .dynamic import DynamicSparsifier
        p, cfg, d = self.parts, self.parts.cfg, self.parts.cfg.dynamic
        self.sparsifier = DynamicSparsifier(
            p.model, p.optimizer, p.losses, sparsity=cfg.sparsity, t_end=cfg.t_end,
            sample_batch=p.sample_batch(), alpha0=d.alpha0, delta_t=d.delta_t, decay=d.decay,
            grow=d.grow, erk_power=d.erk_power, dense_first=d.dense_first, loss_weights=p.loss_weights,
            collapse=not self.per_task, seed=cfg.seed)

    def recording(self, step: int) -> ContextManager:
        return self.sparsifier.recording(step)

    def backward(self, step: int, task_losses: Mapping[str, torch.Tensor]) -> None:
        self.sparsifier.backward(step, task_losses)

    @property
    def ownership(self) -> dict | None:
        return self.sparsifier.ownership

    def final_mask_iou(self) -> dict[str, float] | None:
        """The unanimous decision applied once more to the trained sparse net: each task ranks the
        live weights it owns by ``taylor``; one calibrated ``k`` keeps ``1 − sparsity`` of the live
        weights (union); IoU of those keep-sets. (Keeping all live weights would make ``k`` ≈ 1 and
        every IoU ≈ 1.) BatchNorm statistics are restored; weights and ``.grad`` are left alone.
        Sets :attr:`starved` from the same keep-sets. None for ``rigl`` (no per-task keep-sets)."""
        if not self.per_task:
            return None
        from .decision import calibrated_keep
        from .iou import mask_iou, starved_layers
        from .scoring import task_scores
        p, cfg = self.parts, self.parts.cfg
        ownership = self.sparsifier.ownership
        alive = get_masks(p.model)
        live = sum(int(alive[n].sum()) for n in ownership)
        total = sum(alive[n].numel() for n in ownership)
        with buffers_kept(p.model):
            scores = task_scores(p.model, p.score_batches(cfg.score_batches), p.losses,
                                 criterion="taylor", ownership=ownership)
        target = 1.0 - (1.0 - cfg.sparsity) * live / total
        with warnings.catch_warnings():   # unowned live weights can make the union miss by a few
            warnings.simplefilter("ignore", RuntimeWarning)
            _, task_keep, _, _ = calibrated_keep(scores, ownership, target, alive=alive)
        self.starved = starved_layers(task_keep, ownership)
        return mask_iou(task_keep, ownership)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "dynamic": self.sparsifier.state_dict()}

    def _load_masks(self, state: Mapping) -> None:
        if state["dynamic"] is None:            # not written by a dynamic run: masks only
            super()._load_masks(state)
        else:
            self.sparsifier.load_state_dict(state["dynamic"])


#: method -> (its pruner, whether it keeps a keep-set per task). A new method is one row here (and its
#: criteria in ``config.METHODS``, and its group there).
PRUNERS: dict[str, tuple[type[Pruner], bool]] = {
    "dense": (Pruner, False),
    "disparse_static": (AtInitPruner, True),
    "snip": (AtInitPruner, False),
    "random": (AtInitPruner, False),
    "disparse_pretrained": (PretrainedPruner, True),
    "magnitude": (PretrainedPruner, False),
    "disparse_dynamic": (DynamicPruner, True),
    "rigl": (DynamicPruner, False),
}


def make_pruner(parts: LoopParts) -> Pruner:
    """The pruner of ``parts.cfg.method``."""
    try:
        cls, per_task = PRUNERS[parts.cfg.method]
    except KeyError:
        raise ValueError(f"method: {parts.cfg.method!r} has no pruner; expected one of "
                         f"{', '.join(PRUNERS)}") from None
    return cls(parts, per_task)
