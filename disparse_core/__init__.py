"""DiSparse as a plain PyTorch library: disentangled, unanimous sparsification of multitask networks.

A multitask model is any ``nn.Module`` whose ``forward`` returns ``{task: output}``. The main entry
points:

- :func:`sparsify` — one-shot decisions: ``disparse_static``, ``disparse_pretrained`` and the
  baselines ``snip``, ``random``, ``magnitude``, ``dense``; :class:`GradualPruner` for gradual
  (cubic) pruning.
- :class:`DynamicSparsifier` — dynamic sparse training (DiSparse dynamic; RigL with
  ``collapse=True``), called by the training loop.
- :func:`mask_iou` / :func:`find_watershed` / :func:`suggest_cutoff` — where tasks stop agreeing.
- :func:`run_trial` — one configuration end to end: data, model with a sharing cutoff, method,
  training, evaluation, metrics.

This package imports torch and numpy only; the sweep machinery lives in ``sweeps``.
"""

from .masks import (attach_masks, count_prunable, fold_masks, get_masks, prunable_weights,
                    record_effective_weights, remove_masks, sparsity_report)
from .ownership import ownership_from_outputs, task_ownership
from .scoring import COLLAPSED_TASK, CRITERIA, collapse_tasks, per_task_gradients, task_scores
from .decision import calibrated_keep, unanimous_keep
from .erk import erk_densities, random_masks
from .schedules import cubic_sparsity, drop_fraction
from .sparsify import METHODS, GradualPruner, SparsifyResult, sparsify
from .dynamic import DynamicSparsifier
from .iou import find_watershed, mask_iou, plot_mask_iou, suggest_cutoff
from .models import build_model
from .data import build_workload, workload_tasks
from .metrics import delta_m, higher_is_better, register_metric
from .trial import TrialConfig, run_trial

__version__ = "0.1.0"

__all__ = [
    "attach_masks", "count_prunable", "fold_masks", "get_masks", "prunable_weights",
    "record_effective_weights", "remove_masks", "sparsity_report",
    "ownership_from_outputs", "task_ownership",
    "COLLAPSED_TASK", "CRITERIA", "collapse_tasks", "per_task_gradients", "task_scores",
    "calibrated_keep", "unanimous_keep",
    "erk_densities", "random_masks", "cubic_sparsity", "drop_fraction",
    "METHODS", "GradualPruner", "SparsifyResult", "sparsify",
    "DynamicSparsifier",
    "find_watershed", "mask_iou", "plot_mask_iou", "suggest_cutoff",
    "build_model", "build_workload", "workload_tasks",
    "delta_m", "higher_is_better", "register_metric",
    "TrialConfig", "run_trial",
]
