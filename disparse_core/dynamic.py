"""DiSparse dynamic sparse training (DISPARSE.md §3 "Dynamic"); RigL is the same class, tasks collapsed.

At construction the prunable tensors get ERK layer densities (``erk_power``, DiSparse reference 0.9;
RigL's ERK is 1.0) and random masks at exactly those densities (seeded); the first conv stays dense
when ``dense_first``. Then every ``delta_t`` steps while ``step < t_end``:

1. ``α = drop_fraction(step, alpha0, t_end, decay)``;
2. **drop**, per layer, the ``round(α · n_l)`` active weights of smallest ``|w|``, ``n_l`` = the
   layer's ERK weight count (= its active count in exact mode; capped by the number of inactive
   positions, so a dense layer stays dense);
3. **grow**: each task owning the layer ranks the positions that were inactive *before* the drop by
   ``|∂L_t/∂w|`` (dense gradient, masked positions included) and proposes as many as were dropped.
   A weight just dropped is never regrown in the same update (it would come back at 0 and look like
   a fresh weight; RigL-torch allows it, we don't: every update really moves the mask).

   * ``grow="exact"`` (default): the owners' ranked proposals are merged **round-robin by rank**
     (task 1's best, task 2's best, task 1's second, …, skipping duplicates) until exactly the dropped
     count is grown, so the density equals the target after every update. Round-robin is scale-free
     (task losses differ by orders of magnitude, e.g. normals weighted 20) and gives every owner an
     equal share of the regrowth; when the tasks agree it is simply their common top-k.
   * ``grow="union"`` (reference behaviour): every owner's whole proposal joins, so the density
     overshoots the target whenever owners disagree. As in the reference, the drop brings each layer
     back to ``(1 − α) · n_l`` first, so the overshoot does not compound over updates; it is at most
     ``(T − 1) · α · n_l`` per shared layer (measured on the bench net: bench/RESULTS.md; the paper
     reports 89.05 % sparsity after one update at a 90 % target).

   Grown and dropped weights are set to 0 and their optimizer state (Adam ``exp_avg``/``exp_avg_sq``,
   SGD momentum: every state tensor shaped like the weight) is zeroed. Everything happens in place:
   no copy of the network, the optimizer is kept.
4. After ``t_end`` the masks are frozen.

``collapse=True`` gives RigL: one pseudo-task ``"all_tasks"`` with the summed loss ``Σ λ_t L_t`` owns
every prunable tensor, so only the grow criterion differs from DiSparse dynamic.

The training loop (one forward per step; on an update step the sparsifier runs T backward passes
over that forward's graph instead of one, then sets ``.grad`` to ``Σ λ_t ∂L_t/∂θ``):

>>> import torch
>>> from torch import nn
>>> from torch.nn import functional as F
>>> class TwoTaskNet(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.trunk = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
...                                    nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
...         self.heads = nn.ModuleDict({"a": nn.Linear(16, 4), "b": nn.Linear(16, 1)})
...     def forward(self, x):
...         h = self.trunk(x).mean(dim=(2, 3))
...         return {t: head(h) for t, head in self.heads.items()}
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = TwoTaskNet()
>>> losses = {"a": F.cross_entropy, "b": F.mse_loss}
>>> loader = [(torch.randn(8, 3, 8, 8), {"a": torch.randint(0, 4, (8,)), "b": torch.randn(8, 1)})
...           for _ in range(4)] * 5
>>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
>>> sp = DynamicSparsifier(model, opt, losses, sparsity=0.8, t_end=15, delta_t=5,
...                        sample_batch=loader[0], dense_first=False)
>>> for step, (x, y) in enumerate(loader):
...     opt.zero_grad(set_to_none=True)
...     with sp.recording(step):          # records effective weights on update steps only
...         out = model(x)
...         task_losses = {t: losses[t](out[t], y[t]) for t in out}
...     record = sp.backward(step, task_losses)  # Σλ_t L_t backward; prune/grow on update steps
...     opt.step()
>>> [r["step"] for r in sp.history]
[5, 10]
>>> round(sp.density, 3)
0.2

``task_losses = sp.forward_backward(step, x, y)`` does the forward, losses and backward in one call.

``sp.history``: one dict per update (``step``, ``drop_fraction``, ``dropped``, ``grown``, ``density``).
``sp.task_keep``: ``{task: {name: bool mask}}`` — what each task would have kept at the latest update
of that layer had it decided alone (survivors of the drop ∪ its own proposals). The survivors are
common to all tasks, so the IoU of these sets is high by construction; ``sp.task_proposals`` (own
proposals only) shows where tasks disagree. ``run_trial``'s ``mask_iou`` for ``disparse_dynamic`` uses
neither: it scores the final live weights per task (``taylor``) and applies the unanimous decision to
them at the trial's sparsity (see :mod:`disparse_core.trial`), comparable to the static/pretrained curves.
``state_dict()`` / ``load_state_dict()`` carry masks, counts, history and keep-sets as plain data.
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from .erk import erk_densities, mask_counts, random_masks
from .masks import (attach_masks, buffers_kept, get_masks, mask_param, prunable_modules, prunable_weights,
                    record_effective_weights)
from .ownership import check_losses, forward_tasks, task_ownership
from .config import GROW_MODES
from .schedules import DECAYS, drop_fraction, is_update_step
from .scoring import COLLAPSED_TASK, batch_task_losses, check_scalar_loss, per_task_gradients

__all__ = ["DynamicSparsifier", "COLLAPSED_TASK", "GROW_MODES"]



def _sample_inputs(batch):
    """Accept either model inputs or an ``(inputs, {task: target})`` batch."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Mapping):
        return batch[0]
    return batch


def _ownership_without_side_effects(model: nn.Module, inputs) -> dict[str, frozenset[str]]:
    """``task_ownership``, with buffers (BatchNorm running statistics) restored afterwards: the
    inference forward runs in train mode and must not count as a step of training."""
    with buffers_kept(model):
        return task_ownership(model, inputs)


def _first_convs(model: nn.Module, ownership: Mapping[str, frozenset[str]]) -> set[str]:
    """The first conv of every task's path (module order): the shared stem, or each task's own copy of
    it when the net branches before it (``cutoff=0``), so that no task starts with a sparse stem."""
    convs = [n for n, m in prunable_modules(model).items() if isinstance(m, nn.Conv2d)]
    tasks = sorted(set().union(*ownership.values())) if ownership else []
    first = {next(n for n in convs if t in ownership.get(n, ())) for t in tasks
             if any(t in ownership.get(n, ()) for n in convs)}
    return first or set(convs[:1])


def merge_round_robin(proposals: list[Tensor], k: int, numel: int) -> Tensor:
    """Flat indices of ``k`` positions taken round-robin by rank from the tasks' ranked proposals
    (each a 1-D index tensor, best first), duplicates skipped. Needs ``|∪ proposals| >= k``."""
    if len(proposals) == 1:
        return proposals[0][:k]
    order = torch.stack(proposals, dim=1).flatten()  # rank-major: (r0,t0), (r0,t1), (r1,t0), ...
    keys = torch.arange(order.numel(), device=order.device)
    first = torch.full((numel,), order.numel(), dtype=keys.dtype, device=order.device)
    first.scatter_reduce_(0, order, keys, reduce="amin")
    return torch.topk(first, k, largest=False, sorted=False).indices


class DynamicSparsifier:
    """In-place dynamic sparse training for a multitask model (see the module docstring)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 losses: Mapping[str, Callable[[Tensor, Tensor], Tensor]], *, sparsity: float,
                 t_end: int, ownership: Mapping[str, frozenset[str]] | None = None, sample_batch=None,
                 alpha0: float = 0.5, delta_t: int = 50, decay: str = "cosine", grow: str = "exact",
                 erk_power: float = 0.9, dense_first: bool = True,
                 loss_weights: Mapping[str, float] | None = None, collapse: bool = False, seed: int = 0):
        if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got sparsity={sparsity!r}")
        for key, value in (("t_end", t_end), ("delta_t", delta_t)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{key} must be a positive integer, got {key}={value!r}")
        if grow not in GROW_MODES:
            raise ValueError(f"grow must be one of {GROW_MODES}, got grow={grow!r}")
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got decay={decay!r}")
        if not 0.0 <= alpha0 <= 1.0:
            raise ValueError(f"alpha0 must be in [0, 1], got alpha0={alpha0!r}")
        if delta_t <= 0 or t_end <= 0:
            raise ValueError(f"delta_t and t_end must be > 0, got delta_t={delta_t!r}, t_end={t_end!r}")
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(losses))
        if unknown:
            raise ValueError(f"loss_weights names unknown task {unknown[0]!r} (tasks: {sorted(losses)})")
        if ownership is None:
            if sample_batch is None:
                raise ValueError("give either ownership or sample_batch (to infer ownership)")
            ownership = _ownership_without_side_effects(model, _sample_inputs(sample_batch))
        self.model, self.optimizer, self.losses = model, optimizer, dict(losses)
        self.loss_weights = {t: float(loss_weights.get(t, 1.0)) for t in losses}
        self.config = dict(sparsity=float(sparsity), t_end=int(t_end), alpha0=float(alpha0),
                           delta_t=int(delta_t), decay=decay, grow=grow, erk_power=float(erk_power),
                           dense_first=bool(dense_first), collapse=bool(collapse), seed=int(seed))
        weights = prunable_weights(model)
        if not weights:
            raise ValueError("model has no prunable tensors (weights of Conv2d or Linear layers)")
        missing = sorted(set(weights) - set(ownership))
        if missing:
            raise ValueError(f"ownership lacks prunable tensor {missing[0]!r}")
        self.ownership = {n: frozenset(ownership[n]) for n in weights}
        # The owners the grow step consults: every task, or the single summed-loss pseudo-task.
        self.grow_owners = ({n: frozenset({COLLAPSED_TASK}) if o else frozenset()
                             for n, o in self.ownership.items()} if collapse else self.ownership)

        shapes = {n: tuple(p.shape) for n, p in weights.items()}
        dense = _first_convs(model, self.ownership) if dense_first else set()
        self.densities = erk_densities(shapes, 1.0 - sparsity, power=erk_power, dense=dense)
        self.target_density = 1.0 - sparsity
        generator = torch.Generator().manual_seed(int(seed))
        attach_masks(model, random_masks(shapes, self.densities, generator))
        self._target = mask_counts(shapes, self.densities)  # ERK weights kept per layer
        self._active = dict(self._target)
        self._numel = {n: p.numel() for n, p in weights.items()}
        self._total = sum(self._numel.values())
        self._raw = prunable_weights(model)  # same Parameter objects as before attaching
        modules = prunable_modules(model)
        self._mask = {n: mask_param(modules[n]).mask for n in weights}  # live buffers
        raw_ids = {id(p) for p in self._raw.values()}
        self._others = {n: p for n, p in model.named_parameters()
                        if p.requires_grad and id(p) not in raw_ids}
        self._recorded: tuple[int, dict[str, Tensor]] | None = None
        self.history: list[dict] = []
        self.task_keep: dict[str, dict[str, Tensor]] = {}
        self.task_proposals: dict[str, dict[str, Tensor]] = {}

    # ----------------------------------------------------------------------------- loop contract
    def is_update_step(self, step: int) -> bool:
        """True at ``step = delta_t, 2·delta_t, …`` while ``step < t_end``."""
        return is_update_step(step, delta_t=self.config["delta_t"], t_end=self.config["t_end"])

    @property
    def density(self) -> float:
        """Current density of the prunable weights (kept / prunable)."""
        return sum(self._active.values()) / self._total

    @contextmanager
    def recording(self, step: int) -> Iterator[None]:
        """Wrap the training forward; on update steps it records the effective weights so that
        :meth:`backward` can take dense per-task gradients from the same graph."""
        if not self.is_update_step(step):
            yield
            return
        with record_effective_weights(self.model) as current:
            yield
            self._recorded = (step, current())

    def forward_backward(self, step: int, inputs, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One forward, the losses, :meth:`backward`. Returns the detached per-task losses."""
        with self.recording(step):
            out = forward_tasks(self.model, inputs)
            check_losses(out, self.losses)
            task_losses = batch_task_losses(out, targets, self.losses)
        self.backward(step, task_losses)
        return {t: v.detach() for t, v in task_losses.items()}

    def backward(self, step: int, task_losses: Mapping[str, Tensor]) -> dict | None:
        """Accumulate ``Σ λ_t ∂L_t/∂θ`` into ``.grad``; on an update step also drop and grow.

        Returns the history record of the update, or None on ordinary steps.
        """
        if set(task_losses) != set(self.losses):
            diff = sorted(set(task_losses) ^ set(self.losses))
            raise ValueError(f"task_losses must have one loss per task {sorted(self.losses)}, "
                             f"got {sorted(task_losses)} (differs in {diff[0]!r})")
        for t, loss in task_losses.items():
            check_scalar_loss(t, loss)
        if not self.is_update_step(step):
            self._weighted_sum(task_losses).backward()
            return None
        if self._recorded is None or self._recorded[0] != step:
            raise ValueError(f"step {step} updates the masks: run its forward inside "
                             f"sp.recording({step}) (or use sp.forward_backward)")
        effective = self._recorded[1]
        self._recorded = None
        grow_losses = ({COLLAPSED_TASK: self._weighted_sum(task_losses)} if self.config["collapse"]
                       else dict(task_losses))
        tasks = frozenset(grow_losses)
        owners = dict(self.grow_owners)
        owners.update({n: tasks for n in self._others})
        grads = per_task_gradients(grow_losses, {**effective, **self._others}, owners)
        record = self._prune_grow(step, grads)
        self._set_grads(grads)
        return record

    # --------------------------------------------------------------------------------- internals
    def _weighted_sum(self, task_losses: Mapping[str, Tensor]) -> Tensor:
        return sum(self.loss_weights[t] * loss for t, loss in task_losses.items())

    def _task_weight(self, task: str) -> float:
        return 1.0 if task == COLLAPSED_TASK else self.loss_weights[task]

    @torch.no_grad()
    def _set_grads(self, grads: dict[str, dict[str, Tensor]]) -> None:
        """``.grad += Σ λ_t g_t`` (times the new mask for prunable tensors)."""
        params = {**self._raw, **self._others}
        for name, param in params.items():
            total = None
            for task, by_name in grads.items():
                g = by_name.get(name)
                if g is not None:
                    g = g * self._task_weight(task)
                    total = g if total is None else total.add_(g)
            if total is None:
                continue
            if name in self._mask:
                total.mul_(self._mask[name])
            param.grad = total if param.grad is None else param.grad.add_(total)

    @torch.no_grad()
    def _prune_grow(self, step: int, grads: dict[str, dict[str, Tensor]]) -> dict:
        cfg = self.config
        frac = drop_fraction(step, alpha0=cfg["alpha0"], t_end=cfg["t_end"], decay=cfg["decay"])
        dropped, grown, union_layers = 0, 0, []
        for name in self._raw:
            owners = sorted(t for t in self.grow_owners[name] if name in grads.get(t, {}))
            if not owners:
                continue  # no task reaches this tensor: nothing to grow by, keep its mask
            d, g = self._update_layer(name, frac, [grads[t][name] for t in owners], owners)
            dropped += d
            grown += g
            if cfg["grow"] == "union" and d:
                union_layers.append(name)
        if union_layers:  # one host sync for all union layers
            counts = torch.stack([self._mask[n].sum() for n in union_layers]).tolist()
            for name, count in zip(union_layers, counts):
                grown += int(count) - self._active[name]
                self._active[name] = int(count)
        record = {"step": int(step), "drop_fraction": float(frac), "dropped": int(dropped),
                  "grown": int(grown), "density": self.density}
        self.history.append(record)
        return record

    def _update_layer(self, name: str, frac: float, grads: list[Tensor], owners: list[str]):
        """Drop and grow one layer in place. Returns (dropped, grown); in union mode the grown
        count returned is the drop count and the caller corrects it from the mask.

        ``g = round(frac · target)`` positions are grown per task (capped by the positions inactive
        before the drop); the drop leaves ``target − g`` survivors. In exact mode the layer holds
        ``target`` weights before and after. In union mode (reference behaviour) it may hold more
        before the drop; dropping back to ``target − g`` keeps the overshoot from compounding.
        """
        raw, mask = self._raw[name], self._mask[name].view(-1)
        flat = raw.view(-1)
        active, target = self._active[name], self._target[name]
        g = min(round(frac * target), self._numel[name] - active)
        d = active - target + g
        if g <= 0 and d <= 0:
            return 0, 0
        drop_score = torch.where(mask, flat.abs(), torch.full_like(flat, math.inf))
        drop_idx = torch.topk(drop_score, d, largest=False, sorted=False).indices
        # Candidates: positions inactive before the drop (a just-dropped weight is not regrown).
        proposals = [torch.topk(torch.where(mask, -1.0, grad.reshape(-1).abs()), g).indices
                     for grad in grads]
        if self.config["grow"] == "exact":
            grow_idx = merge_round_robin(proposals, g, flat.numel())
        else:
            grow_idx = torch.unique(torch.cat(proposals))
        survivors = mask.clone()
        survivors[drop_idx] = False
        for task, idx in zip(owners, proposals):
            own = torch.zeros_like(mask)
            own[idx] = True
            self.task_proposals.setdefault(task, {})[name] = own.view_as(raw)
            self.task_keep.setdefault(task, {})[name] = (survivors | own).view_as(raw)
        changed = torch.cat([drop_idx, grow_idx])
        mask.copy_(survivors)
        mask[grow_idx] = True
        flat[changed] = 0.0  # dropped and grown weights are zero ...
        self._reset_optimizer_state(raw, changed)  # ... and so is their optimizer state
        return d, d

    def _reset_optimizer_state(self, param: Tensor, flat_idx: Tensor) -> None:
        state = self.optimizer.state.get(param)
        if not state:
            return
        for value in state.values():
            if torch.is_tensor(value) and value.shape == param.shape:
                value.view(-1)[flat_idx] = 0

    # ------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Plain data keyed by canonical names: config, masks, counts, history, keep-sets."""
        cpu = lambda d: {n: m.detach().cpu().clone() for n, m in d.items()}  # noqa: E731
        return {"config": dict(self.config), "loss_weights": dict(self.loss_weights),
                "masks": cpu(get_masks(self.model)), "active": dict(self._active),
                "history": [dict(r) for r in self.history],
                "task_keep": {t: cpu(d) for t, d in self.task_keep.items()},
                "task_proposals": {t: cpu(d) for t, d in self.task_proposals.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore masks (re-attached in place, masked weights zeroed), counts, history, keep-sets."""
        names = set(self._raw)
        if set(state["masks"]) != names:
            diff = sorted(set(state["masks"]) ^ names)
            raise ValueError(f"checkpoint masks do not match this model's prunable tensors: {diff[:3]}")
        attach_masks(self.model, state["masks"])
        self._active = {n: int(m.sum()) for n, m in state["masks"].items()}
        self.history = [dict(r) for r in state["history"]]
        device = lambda d: {n: m.to(self._raw[n].device) for n, m in d.items()}  # noqa: E731
        self.task_keep = {t: device(d) for t, d in state.get("task_keep", {}).items()}
        self.task_proposals = {t: device(d) for t, d in state.get("task_proposals", {}).items()}
