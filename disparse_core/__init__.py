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

This package imports torch and numpy only; the sweep machinery lives in ``sweeps``. The names below are
loaded on first use (PEP 562), so ``disparse_core.config`` (the trial schema) and
``disparse_core.metric_keys`` (metric directions and ranges) can be imported without torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("attach_masks", "count_prunable", "fold_masks", "get_masks", "prunable_weights",
                     "record_effective_weights", "remove_masks", "sparsity_report"), "masks"),
    **dict.fromkeys(("ownership_from_outputs", "task_ownership"), "ownership"),
    **dict.fromkeys(("COLLAPSED_TASK", "CRITERIA", "collapse_tasks", "per_task_gradients", "task_scores"),
                    "scoring"),
    **dict.fromkeys(("calibrated_keep", "unanimous_keep"), "decision"),
    **dict.fromkeys(("erk_densities", "random_masks"), "erk"),
    **dict.fromkeys(("cubic_sparsity", "drop_fraction"), "schedules"),
    **dict.fromkeys(("METHODS", "GradualPruner", "SparsifyResult", "sparsify"), "sparsify"),
    "DynamicSparsifier": "dynamic",
    **dict.fromkeys(("find_watershed", "mask_iou", "plot_mask_iou", "suggest_cutoff"), "iou"),
    "build_model": "models",
    **dict.fromkeys(("build_workload", "workload_tasks"), "data"),
    "delta_m": "metrics",
    **dict.fromkeys(("higher_is_better", "register_metric"), "metric_keys"),
    "TrialConfig": "config",
    "run_trial": "trial",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """A public name (loads its module on first use), or a submodule (``disparse_core.metrics``)."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``disparse_core.sparsify`` the function: importing the submodule of that name sets the
    package's attribute to the module (the import system does), as the eager package never showed it."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
