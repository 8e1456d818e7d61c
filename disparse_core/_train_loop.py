"""The training loop of one trial (private; :func:`disparse_core.trial.run_trial` is the entry point).

:class:`TrialRun` holds the state of one run: workload, model, optimizer, scheduler, the method's
pruner (:mod:`disparse_core._pruners`, chosen once from the method), checkpoints. :meth:`TrialRun.run`
reads top to bottom; the module docstring of :mod:`disparse_core.trial` says when each method prunes.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from . import checkpoint as ckpt
from ._pruners import LoopParts, make_pruner
from .masks import buffers_kept, get_masks, sparsity_report
from .metrics import delta_m, evaluate
from .tasks import build_losses, check_loss_weights
from .config import TrialConfig

Report = Callable[[dict], None]

# Keys that may differ between a checkpoint's config and the resuming config (they do not change
# what is computed).
_RESUMABLE = frozenset({"resume", "checkpoint_dir", "checkpoint_every", "export_path", "eval_every",
                        "eval_batches", "num_threads", "device", "baseline_metrics"})


def _to_device(batch, device):
    inputs, targets = batch
    return (inputs.to(device, non_blocking=True),
            {t: y.to(device, non_blocking=True) for t, y in targets.items()})


def _cycle(loader, start_epoch: int = 0, skip: int = 0) -> Iterator:
    """Endless batches: epoch after epoch of a SeededLoader, starting ``skip`` batches into
    ``start_epoch`` (what resuming at a step needs)."""
    loader.set_epoch(start_epoch)
    while True:
        got = False
        for batch in loader:
            got = True
            if skip:
                skip -= 1
                continue
            yield batch
        if not got:
            raise ValueError("the training set yields no batch (batch_size larger than the data set?)")


# Keys that do not change the dense phase of a pretrained method (before its first prune event): a
# dense snapshot written under other values of these starts it as well (sparsity, method, pruning
# and finetuning options, the total steps, and what _RESUMABLE lists).
NOT_DENSE_PHASE = _RESUMABLE | frozenset({"method", "steps", "criterion", "sparsity", "distribution", "score_on",
                                           "allotment", "layer_floor", "score_rounds", "score_batches",
                                           "pretrain_steps", "finetune_lr", "gradual", "dynamic"})


def dense_phase_end(cfg: TrialConfig) -> int | None:
    """The step before which a pretrained method (``disparse_pretrained``, ``magnitude``) trains exactly as
    ``dense`` does: its first prune event (``pretrain_steps``; with ``gradual``, the schedule's first, possibly
    empty, event when it comes earlier). None for every other method."""
    from .config import PRETRAINED, gradual_start
    if cfg.method not in PRETRAINED:
        return None
    pre = cfg.resolved_pretrain_steps
    return min(pre, gradual_start(pre, cfg.gradual)) if cfg.gradual is not None else pre


class TrialRun:
    """The state of one run; :meth:`run` reads top to bottom.

    ``snapshots``: ``{step: path}``: after that step the whole training state is saved there (the sweep's
    dense baseline writes the steps its pretrained trials start from). ``start_from``: a folder of such
    snapshots: a pretrained method whose :func:`dense_phase_end` has one (``step<N>.pt``), written under a
    config equal in every key that shapes the dense phase, starts there instead of training dense again;
    otherwise it is ignored. The result then has ``dense_steps_reused`` (N; 0 when trained itself)."""

    def __init__(self, cfg: TrialConfig, device: torch.device, report: Report | None,
                 snapshots: Mapping[int, str] | None = None, start_from: str | None = None):
        from .data import build_workload
        from .models import build_model, fully_shared_prunable

        self.cfg, self.device, self.report = cfg, device, report
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        kwargs = {k: getattr(cfg, k) for k in ("data_root", "image_size", "train_size", "test_size",
                                                "tasks") if getattr(cfg, k) is not None}
        self.workload = build_workload(cfg.workload, seed=cfg.seed, **kwargs)
        self.tasks = self.workload.tasks
        # the workload's reference weights (e.g. cues), then the config's own per task
        self.loss_weights = check_loss_weights(self.tasks, {**self.workload.loss_weights,
                                                            **(cfg.loss_weights or {})})
        arch_kwargs = {"task_kinds": self.workload.task_kinds,
                       "in_channels": self.workload.in_channels}
        if cfg.width is not None:
            arch_kwargs["width"] = cfg.width
        self.model = build_model(cfg.arch, self.workload.task_channels, cutoff=cfg.cutoff,
                                 seed=cfg.seed, **arch_kwargs).to(device)
        self.reference_prunable = fully_shared_prunable(cfg.arch, self.workload.task_channels,
                                                        **arch_kwargs)
        self.losses = build_losses(self.workload)
        self.optimizer = self._make_optimizer()     # before any mask: fixes the parameter order
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_gamma)
                          if cfg.lr_step else None)
        self.train_loader = self.workload.train_loader(cfg.batch_size, seed=2 * cfg.seed)
        self.score_loader = self.workload.train_loader(cfg.batch_size, seed=2 * cfg.seed + 1)
        self.test_loader = self.workload.test_loader(cfg.batch_size)
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                         else nullcontext())
        self.pruner = make_pruner(LoopParts(
            cfg, self.model, self.optimizer, self.losses, self.loss_weights,
            score_batches=self._score_batches, sample_batch=self._sample_batch))
        self.start_step = 0
        self.snapshots = {int(k): Path(v) for k, v in (snapshots or {}).items()}
        self.start_from = start_from
        self.reused = 0

    # ---------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        cfg = self.cfg
        self.pruner.setup()
        if cfg.resume:
            self._maybe_resume()
        if self.start_step == 0 and self.start_from:
            self._maybe_start_from_dense()
        batches = _cycle(self.train_loader, *divmod(self.start_step, len(self.train_loader)))
        every = cfg.resolved_eval_every
        for step in range(self.start_step, cfg.steps):
            self.pruner.before_step(step)
            self._train_step(step, next(batches))
            done = step + 1
            if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                self._save_checkpoint(done)
            if done in self.snapshots:
                ckpt.save_checkpoint(self.snapshots[done], self._state(done))
            if done % every == 0 and done < cfg.steps:
                self._report(self._summary(done, cfg.eval_batches))
        final = self._summary(cfg.steps, None)
        ious = self.pruner.final_mask_iou()  # before the export folds the masks away
        watershed = self._watershed(ious) if ious is not None else None
        if watershed is not None and watershed["cutoff"] is not None:
            final["suggested_cutoff"] = float(watershed["cutoff"])
        if self.start_from:
            final["dense_steps_reused"] = float(self.reused)
        # the trial's cost includes the end-of-training mask-IoU analysis (dynamic: one scoring pass)
        final["wall_time_s"] = self.elapsed_before + time.perf_counter() - self.started
        self._report({**final, "final": 1.0})
        if cfg.export_path:
            from .checkpoint import export_sparse_model
            export_sparse_model(self.model, cfg.export_path,
                                extra={"config": cfg.to_dict(), "metrics": final})
        if ious is not None:
            final["mask_iou"] = ious
            final["watershed"] = watershed
        final["task_min_density"] = self._task_min_density()
        return final

    # ------------------------------------------------------------------------- end of training
    def _task_min_density(self) -> dict[str, float]:
        """``{task: the lowest density of a layer the task uses}`` (1.0 for dense): a task whose value
        is 0 or next to it is cut off — every path from its input to its output runs through that
        layer, unless a skip connection bypasses it. Ownership is the one the pruning saw (dense and
        a resumed static run without it: every layer some task reaches is read from the model)."""
        owner_map = self.pruner.ownership
        if owner_map is None:
            if not _is_masked(self.model):
                return {t: 1.0 for t in self.tasks}
            from .ownership import task_ownership
            inputs, _ = self._sample_batch()
            with buffers_kept(self.model):
                owner_map = task_ownership(self.model, inputs)
        masks = get_masks(self.model)
        out = {}
        for task in self.tasks:
            densities = [float(masks[n].float().mean()) for n, o in owner_map.items() if task in o]
            out[task] = min(densities, default=1.0)
        return out

    def _watershed(self, ious: Mapping[str, float]) -> dict:
        """The watershed of ``ious`` with layer sizes (small layers skipped) and without the starved
        layers, and the cutoff that branches at its block (:func:`disparse_core.iou.watershed_summary`)."""
        from .iou import watershed_summary
        from .masks import prunable_weights
        sizes = {n: p.numel() for n, p in prunable_weights(self.model).items()}
        blocks = self.model.block_names() if hasattr(self.model, "block_names") else None
        return watershed_summary(ious, sizes, blocks, starved=self.pruner.starved)

    def _score_batches(self, n: int) -> list:
        """The first ``n`` batches of the scoring stream (seeded apart from the training order). Kept for
        the next trial of this process with the same data, seed and batch size (:data:`SCORE_CACHE`)."""
        key = _score_key(self.cfg)
        cached = SCORE_CACHE.get(key)
        if cached is not None and len(cached) >= n:
            return list(cached[:n])
        out = []
        for batch in _cycle(self.score_loader):
            out.append(batch)
            if len(out) == n:
                break
        if key is not None and _batch_bytes(out) <= SCORE_CACHE_BYTES:
            SCORE_CACHE.clear()                  # one data set and seed at a time: a sweep's trials share it
            SCORE_CACHE[key] = out
        return list(out)

    def _sample_batch(self):
        """The first batch of the scoring stream, on the device."""
        return _to_device(next(iter(self._score_batches(1))), self.device)

    # --------------------------------------------------------------------------------- training
    def _train_step(self, step: int, batch) -> None:
        inputs, targets = _to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self.pruner.recording(step):
            with self.autocast:
                outputs = self.model(inputs)
            task_losses = {t: self.losses[t](outputs[t].float(), targets[t]) for t in self.tasks}
        self._check_finite(step, task_losses)
        self.pruner.backward(step, task_losses)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    @staticmethod
    def _check_finite(step: int, task_losses: Mapping[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float() for v in task_losses.values()])
        if bool(torch.isfinite(values).all()):
            return
        for (task, _), value in zip(task_losses.items(), values.tolist()):
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss at step {step}: task {task!r} loss = {value}")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------------------- evaluation
    def _summary(self, step: int, max_batches: int | None) -> dict:
        metrics = evaluate(self.model, self.test_loader, self.workload, self.device,
                           max_batches=max_batches,
                           autocast_dtype=torch.bfloat16 if self.cfg.bf16 else None)
        sizes = sparsity_report(self.model)
        prunable_ids = {id(p) for p in _prunable(self.model)}
        others = sum(p.numel() for p in self.model.parameters() if id(p) not in prunable_ids)
        out = dict(metrics)
        out["sparsity"] = float(sizes["sparsity"])
        out["compression"] = 1.0 - sizes["nonzero"] / self.reference_prunable
        out["nonzero_params"] = float(sizes["nonzero"] + others)
        out["min_layer_density"] = min((1.0 - layer["sparsity"] for layer in sizes["layers"].values()), default=1.0)
        out["wall_time_s"] = self.elapsed_before + time.perf_counter() - self.started
        out["step"] = float(step)
        if self.cfg.baseline_metrics:
            with warnings.catch_warnings():        # a zero baseline metric is documented, not news
                warnings.simplefilter("ignore", RuntimeWarning)
                out["delta_m"] = _safe_delta_m(metrics, self.cfg.baseline_metrics,
                                               self._delta_m_groups())
        return out

    def _report(self, metrics: dict) -> None:
        if self.report is not None:
            self.report(dict(metrics))

    def _delta_m_groups(self) -> dict[str, list[str]]:
        base = self.cfg.baseline_metrics or {}
        groups = {t: [m for m in info.metrics if f"{t}.{m}" in base] for t, info in self.tasks.items()}
        return {t: ms for t, ms in groups.items() if ms}

    # ------------------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path:
        return Path(self.cfg.checkpoint_dir) / ckpt.CHECKPOINT_NAME

    def _save_checkpoint(self, done: int) -> None:
        ckpt.save_checkpoint(self._checkpoint_path(), self._state(done))

    def _state(self, done: int) -> dict:
        masked = _is_masked(self.model)
        return {
            "version": 2,
            "config": self.cfg.to_dict(),
            "step": done,
            "elapsed": self.elapsed_before + time.perf_counter() - self.started,
            "masks": {n: m.cpu() for n, m in get_masks(self.model).items()} if masked else None,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            **self.pruner.state_dict(),          # dynamic, pruner, mask_iou, starved
            "rng": ckpt.rng_state(),
        }

    def _maybe_start_from_dense(self) -> None:
        """Start a pretrained method from the shared dense snapshot of its :func:`dense_phase_end` (class
        docstring); a missing file or a config that differs in a dense-phase key leaves the run as it is."""
        end = dense_phase_end(self.cfg)
        path = Path(self.start_from) / f"step{end}.pt" if end else None
        if path is None or not path.is_file():
            return
        state = ckpt.load_checkpoint(path)
        saved, current = state["config"], self.cfg.to_dict()
        if int(state["step"]) != end or state["masks"] is not None or any(
                saved.get(k) != v for k, v in current.items() if k not in NOT_DENSE_PHASE):
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.start_step = self.reused = end

    def _maybe_resume(self) -> None:
        path = self._checkpoint_path()
        if not path.exists():
            return
        state = ckpt.load_checkpoint(path)
        self._check_resumable(state["config"], path)
        self.pruner.load_state_dict(state)      # masks first: the model's state names them
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.start_step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])
        self.started = time.perf_counter()

    def _check_resumable(self, saved: Mapping, path: Path) -> None:
        current = self.cfg.to_dict()
        for key, value in current.items():
            if key in _RESUMABLE:
                continue
            if saved.get(key) != value:
                raise ValueError(f"resume: checkpoint {path} was written with {key}={saved.get(key)!r}, "
                                 f"this config has {key}={value!r}")


#: The scoring batches of the last (data, seed, batch size) of this process: a sweep's trials run one
#: after another in a reused worker (Ray Tune's ``reuse_actors``) and score on the same first batches
#: of the same seeded stream, so they are read and augmented once. The batches are the ones the loader
#: gives (CPU tensors, never changed in place by the scoring); the built-in workloads only (a user's
#: workload may not be a pure function of these keys); at most :data:`SCORE_CACHE_BYTES`.
SCORE_CACHE: dict = {}
SCORE_CACHE_BYTES = 256 * 2 ** 20


_BUILT_IN = ("scenes", "digits", "cues", "nyuv2", "cityscapes", "taskonomy")


def _score_key(cfg: TrialConfig):
    if not isinstance(cfg.workload, str) or cfg.workload not in _BUILT_IN:
        return None
    return (cfg.workload, cfg.data_root, cfg.image_size, cfg.train_size, cfg.test_size,
            tuple(cfg.tasks) if cfg.tasks else None, cfg.seed, cfg.batch_size)


def _batch_bytes(batches) -> int:
    total = 0
    for inputs, targets in batches:
        total += inputs.numel() * inputs.element_size()
        total += sum(t.numel() * t.element_size() for t in targets.values())
    return total


def _safe_delta_m(metrics, baseline, groups) -> float:
    """Δm, or NaN when every baseline metric is 0 (a training run should not fail at its end)."""
    try:
        return delta_m(metrics, baseline, groups)
    except ValueError:
        return float("nan")


def _is_masked(model: nn.Module) -> bool:
    from torch.nn.utils import parametrize
    from .masks import prunable_modules
    return any(parametrize.is_parametrized(m, "weight") for m in prunable_modules(model).values())


def _prunable(model: nn.Module):
    from .masks import prunable_weights
    return prunable_weights(model).values()

