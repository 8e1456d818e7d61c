"""Objectives known before training: what a configuration's compression will be, from the config alone.

``compression`` (``1 - nonzero prunable weights / prunable weights of the fully shared dense net``),
``sparsity`` and the prunable-weight count of a cutoff are fixed by the configuration: the method prunes
to ``sparsity`` of the prunable weights of the network the ``cutoff`` builds, and that network's size
is a function of ``arch``, ``width``, ``cutoff`` and the workload's tasks. :func:`known_metrics` computes
them at sampling time (the network is built on torch's ``meta`` device: no memory, no data, ~10 ms for
the small net), so that the sweep can

* skip a trial whose known metrics already break a budget (no accuracy can make it feasible:
  :func:`known_violation`; the searcher tells it PRUNED with the reason, see :mod:`sweeps.searcher`);
* give the early-stopping rule the trial's final compression at every rung (it is reported there too,
  and equal, since the masks are fixed from the first step on: bench/RESULTS.md checks the prediction
  against 288 recorded trials).

The prediction holds for the methods whose final density is the target by construction (every pruning
method; ``disparse_dynamic``/``rigl`` with ``dynamic.grow: exact``). It is not made (``{}``) for
``dense``, for a dynamic method that may grow above its target (``grow: union``), for a workload or an
architecture this module cannot build without data, or when the config is not valid: the trial is then
trained as before. Per-layer rounding makes the real value differ from the prediction by a few weights;
:data:`TOLERANCE` bounds that and a budget is only judged broken beyond it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

__all__ = ["known_metrics", "known_violation", "TOLERANCE", "KNOWN_KEYS"]

#: how far a predicted ``compression``/``sparsity`` may be from the trained value (absolute); measured
#: on the demo space: at most 4.3e-6 over 288 recorded trials (bench/RESULTS.md, search efficiency).
TOLERANCE = 1e-3
KNOWN_KEYS = ("compression", "sparsity", "prunable_params")


@lru_cache(maxsize=256)
def _prunable(arch: str, tasks: tuple, in_channels: int, width: int | None, cutoff: int | None) -> int:
    import torch

    from disparse_core.models import build_model, count_prunable_params

    kwargs: dict[str, Any] = {"task_kinds": {t: k for t, _, k in tasks}, "in_channels": in_channels}
    if width is not None:
        kwargs["width"] = width
    with torch.device("meta"):
        model = build_model(arch, {t: c for t, c, _ in tasks}, cutoff=cutoff, **kwargs)
    return int(count_prunable_params(model))


_IN_CHANNELS = {"digits": 1}   # every other built-in workload reads RGB images


def known_metrics(config: Mapping[str, Any]) -> dict[str, float]:
    """``{"compression", "sparsity", "prunable_params"}`` of a trial config, or ``{}`` when they are not
    fixed by it (see the module docstring). Never raises: a config the core rejects is its business."""
    try:
        from disparse_core.config import TrialConfig
        from disparse_core.data import workload_tasks

        cfg = TrialConfig.from_dict(dict(config))
        if cfg.method == "dense" or cfg.sparsity is None:
            return {}
        if cfg.method in ("disparse_dynamic", "rigl") and str(getattr(cfg.dynamic, "grow", "exact")) != "exact":
            return {}
        tasks = tuple((t, int(i.channels), str(i.kind)) for t, i in workload_tasks(cfg.workload, cfg.tasks).items())
        in_ch = _IN_CHANNELS.get(cfg.workload, 3)
        prunable = _prunable(cfg.arch, tasks, in_ch, cfg.width, cfg.cutoff)
        reference = _prunable(cfg.arch, tasks, in_ch, cfg.width, None)
    except Exception:  # noqa: BLE001 - unknown workload/arch, bad config: nothing is known
        return {}
    sparsity = float(cfg.sparsity)
    return {"compression": 1.0 - (1.0 - sparsity) * prunable / reference, "sparsity": sparsity,
            "prunable_params": float(prunable)}


def known_violation(budgets, known: Mapping[str, float]) -> str | None:
    """The first budget on a known metric that ``known`` breaks by more than :data:`TOLERANCE`, as one line
    (``compression>=0.8: known 0.62 before training``), else None. Relative budgets are on task metrics
    (never known), so only absolute bounds are judged."""
    for b in budgets or ():
        if b.relative or b.metric not in known or b.metric == "prunable_params":
            continue
        value = float(known[b.metric])
        short = (b.amount - value) if b.higher_is_better else (value - b.amount)
        if short > TOLERANCE:
            return f"{b.text}: known {value:.4g} before training, no accuracy can meet it"
    return None
