"""One trial: build the data and the model, sparsify by ``method``, train, evaluate, report.

``run_trial(config, report=None) -> dict`` is what the sweep calls (docs/ARCHITECTURE.md holds the
contract). ``config`` is a plain dict (or a :class:`TrialConfig`); ``TrialConfig.from_dict`` validates it
and every problem is a one-line ``ValueError`` naming the key. The config lives in
:mod:`disparse_core.config`, the training loop in the private ``_train_loop``; both are
re-exported here.

Methods and when they prune (``step`` counts training iterations from 0):

- ``dense``: never.
- ``disparse_static`` / ``snip`` / ``random``: once at step 0, before any update (score batches come
  from their own seeded stream, so they never shift the training data order); masks then fixed.
- ``disparse_pretrained`` / ``magnitude`` (IMP): dense until ``pretrain_steps``, then prune once (or
  gradually: ``gradual = {prune_steps, interval, initial_sparsity}``, cubic schedule, ``prune_steps``
  prune events at ``pretrain_steps + i·interval`` from i = 0, one more with ``initial_sparsity``;
  ``prune_steps: 1`` is the one-shot prune), and finetune with ``finetune_lr``. The optimizer state is reset at
  each prune event (a finetune starts fresh, as in the reference's separate finetune run).
- ``disparse_dynamic`` / ``rigl``: :class:`~disparse_core.dynamic.DynamicSparsifier` from step 0
  (``rigl`` = ``collapse=True``), mask updates every ``dynamic.delta_t`` steps until
  ``t_end = round(dynamic.t_end_frac · steps)``.

The training loss is ``Σ_t λ_t L_t`` (``loss_weights``); sparsifiers get the raw per-task losses plus
the weights (a per-task ranking is scale-free; the collapsed baselines score the weighted sum).

Evaluation: every ``eval_every`` completed steps on the first ``eval_batches`` test batches (None =
all); the final evaluation always covers the whole test set and its report carries ``final: 1.0``.

``mask_iou`` in the result (``{shared layer: IoU}``, :func:`disparse_core.iou.mask_iou`; NaN for a
layer no task keeps anything of) is given for the methods with per-task keep-sets, never for the
collapsed ones (``dense``, ``snip``, ``random``, ``magnitude``, ``rigl``):

- ``disparse_static`` / ``disparse_pretrained``: the keep-sets ``K_t`` of the (last) prune event.
- ``disparse_dynamic``: the DiSparse-pretrained decision applied to the trained sparse net, after the
  final report: each task scores the live weights it owns by ``taylor`` (``Σ_b |∂L_t/∂w| · w²``,
  ``score_batches`` batches of the scoring stream) and keeps its top fraction ``k``, one calibrated
  ``k`` for all tasks so that the union holds ``1 − sparsity`` of the live weights (at 90 %: 10 % of
  what the network kept, as pretrained keeps 10 % of a trained dense net). Comparable to the
  static/pretrained curves. Not used: (a) a union equal to the whole final mask — ``k`` must then
  reach the live weight every task ranks last, so ``k`` ≈ 1 and every IoU ≈ 1 (measured: 1.0 in
  every layer); (b) the sparsifier's ``task_keep`` (survivors of the last drop ∪ the task's
  proposals), high by construction since the survivors are common to all tasks. Scoring leaves the
  model (weights, BatchNorm statistics, gradients) unchanged.

Reproducibility: on CPU a rerun with the same config gives bit-identical metrics (seeded Python,
NumPy and torch, seeded model init and data order; the CPU kernels we use are deterministic for a
given thread count, so ``torch.use_deterministic_algorithms`` is not switched on — its first call
costs ≈ 2 s by importing ``torch._inductor``). On CUDA the trial runs with
``torch.use_deterministic_algorithms(True, warn_only=True)`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
(set unless already set; cuBLAS reads it when it starts, so set it yourself before any CUDA work if
the process uses CUDA before its first trial).
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from ._train_loop import NOT_DENSE_PHASE, Report, TrialRun, dense_phase_end
from .config import (ARCHS, DYNAMIC, METHODS, ONE_SHOT_AT_INIT, PRESETS, PRETRAINED, WORKLOADS, DynamicOptions,
                     GradualOptions, TrialConfig, resolved_config)

__all__ = ["TrialConfig", "DynamicOptions", "GradualOptions", "METHODS", "PRESETS", "run_trial", "dense_phase_end",
           "NOT_DENSE_PHASE",
           "resolve_device", "ONE_SHOT_AT_INIT", "PRETRAINED", "DYNAMIC", "WORKLOADS", "ARCHS",
           "resolved_config"]

#: cuBLAS workspace setting that makes its GEMMs deterministic (CUDA docs, "Reproducibility").
CUBLAS_WORKSPACE = ":4096:8"


def run_trial(config: Mapping[str, Any] | TrialConfig | None = None,
              report: Report | None = None, *, snapshots: Mapping[int, str] | None = None,
              start_from: str | None = None) -> dict:
    """Train and evaluate one configuration; returns the flat result dict of docs/ARCHITECTURE.md.

    ``report(metrics)`` is called at every evaluation with the flat metric keys and ``step``; the
    last call (the whole test set, after the last step) also has ``final: 1.0``. The returned dict
    has the same keys plus ``mask_iou`` (``{layer: IoU}``) for ``disparse_static``,
    ``disparse_pretrained`` and ``disparse_dynamic`` (see the module docstring for what each one
    measures). Bad configs raise a one-line ``ValueError``; a NaN/inf loss raises
    ``FloatingPointError`` naming the step and task.

    Sharing the dense phase (a sweep's dense baseline and its pretrained trials): ``snapshots={step: path}``
    saves the training state after those steps; ``start_from=folder`` lets ``disparse_pretrained`` /
    ``magnitude`` start from ``folder/step<N>.pt`` (N: :func:`dense_phase_end`) when it was written by a
    run whose config equals this one in every key that shapes the dense phase (the result says
    ``dense_steps_reused``: N, or 0 when no snapshot fits and the trial trained itself). The model, the
    optimizer, the scheduler and the RNG states are those the trial would have reached itself, so on CPU
    the result is bit-identical (tests/core/test_shared_dense.py).
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    with trial_execution(cfg) as device:
        return TrialRun(cfg, device, report, snapshots=snapshots, start_from=start_from).run()


def resolve_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable device is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {name!r} requested but MPS is not available")
    return device


@contextmanager
def trial_execution(cfg: TrialConfig) -> Iterator[torch.device]:
    """Threads, determinism (CUDA only, see the module docstring) and seeds for the trial; the
    process settings are restored afterwards (``CUBLAS_WORKSPACE_CONFIG`` stays set)."""
    device = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        yield device
    finally:
        torch.set_num_threads(threads)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
