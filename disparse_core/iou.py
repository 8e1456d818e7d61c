"""Mask-IoU analysis (DISPARSE.md §6): where do the tasks stop agreeing on which weights matter?

For each shared layer (owned by at least two tasks), the IoU of the tasks' own keep-sets ``K_t``
(before the union): ``|∩ K_t| / |∪ K_t|``. The layer after the largest drop of that curve is the
*watershed*; sharing the backbone past it brings little, so :func:`suggest_cutoff` proposes branching
at the block that holds it. A layer of which no task keeps anything has no IoU (NaN): the watershed
search skips it, and can skip very small layers (e.g. the 1×1 downsample convs of a ResNet, whose
few weights give a noisy IoU) when given the layer sizes.

Example::

    result = sparsify(model, batches, losses, sparsity=0.9, method="disparse_static")
    ious = mask_iou(result.task_keep, result.ownership)
    sizes = {n: p.numel() for n, p in prunable_weights(model).items()}
    layer = find_watershed(ious, sizes=sizes)
    cutoff = suggest_cutoff(layer, model.block_names())
    plot_mask_iou(ious, "mask_iou.png", watershed=layer)
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Mapping, Sequence

from torch import Tensor

__all__ = ["mask_iou", "find_watershed", "suggest_cutoff", "plot_mask_iou"]


def mask_iou(task_keep: Mapping[str, Mapping[str, Tensor]],
             ownership: Mapping[str, frozenset]) -> dict[str, float]:
    """``{layer: IoU}`` for every tensor owned by two or more tasks, in ownership (model) order.

    When no owner keeps any weight of a layer (empty union) the IoU is undefined: the value is NaN
    (the layer is fully pruned; it says nothing about agreement, and :func:`find_watershed` skips it).
    A collapsed ``task_keep`` (one pseudo-task) has no shared layers: the result is empty.
    """
    out: dict[str, float] = {}
    for name, owners in ownership.items():
        sets = [task_keep[t][name] for t in sorted(owners) if t in task_keep and name in task_keep[t]]
        if len(sets) < 2:
            continue
        inter, union = sets[0].bool().clone(), sets[0].bool().clone()
        for s in sets[1:]:
            inter &= s.bool()
            union |= s.bool()
        n_union = int(union.sum())
        out[name] = math.nan if n_union == 0 else int(inter.sum()) / n_union
    return out


def find_watershed(ious: Mapping[str, float], sizes: Mapping[str, int] | None = None, *,
                   min_size_fraction: float = 0.2) -> str:
    """The layer right after the largest IoU drop between consecutive shared layers (dict order =
    model order); the first such layer on ties. A drop is measured between consecutive layers that
    are not skipped, and at least two must be left. Skipped:

    - layers whose IoU is NaN (empty union, see :func:`mask_iou`) or otherwise not finite;
    - when ``sizes`` (``{layer: number of weights}``) is given, *small* layers: fewer weights than
      ``min_size_fraction`` (default 0.2) × the median size of the layer and its two neighbours on
      each side (in ``ious`` order). A ResNet's 1×1 downsample convs hold 1/18 of their 3×3
      neighbours' weights and are skipped; its stem (1/4 of its neighbours) and the first stage's
      convs (as large as theirs) are not. The neighbourhood, not the whole network, is the yardstick
      because early stages are small by design. Without ``sizes`` (default) no layer is skipped for
      its size.
    """
    if not 0.0 <= min_size_fraction <= 1.0:
        raise ValueError(f"min_size_fraction must be in [0, 1], got {min_size_fraction!r}")
    names = [n for n in ious if math.isfinite(ious[n])]
    if sizes is not None:
        small = _small_layers(list(ious), sizes, min_size_fraction)
        names = [n for n in names if n not in small]
    if len(names) < 2:
        skipped = f" of {len(ious)} (NaN or small layers skipped)" if len(names) != len(ious) else ""
        raise ValueError(f"a watershed needs at least two shared layers, got {len(names)}{skipped}")
    drops = [ious[names[i - 1]] - ious[names[i]] for i in range(1, len(names))]
    best = max(range(len(drops)), key=lambda i: (drops[i], -i))
    return names[best + 1]


def _small_layers(names: list[str], sizes: Mapping[str, int], fraction: float) -> set[str]:
    """Layers with fewer than ``fraction`` × the median size of their window (themselves and two
    layers on each side)."""
    missing = [n for n in names if n not in sizes]
    if missing:
        raise ValueError(f"sizes has no entry for layer {missing[0]!r}")
    small = set()
    for i, name in enumerate(names):
        window = [sizes[n] for n in names[max(0, i - 2):i + 3]]
        if sizes[name] < fraction * statistics.median(window):
            small.add(name)
    return small


def suggest_cutoff(watershed: str, block_prefixes: Sequence[str]) -> int:
    """Sharing cutoff ``c`` (blocks ``1..c`` shared) that branches at the block holding ``watershed``.

    ``block_prefixes``: the module paths of the backbone blocks ``b_1..b_B`` in order (a layer belongs
    to a block when its name is the prefix or starts with ``prefix + '.'``). The watershed's block
    ``b_j`` and every later one become task-specific: ``c = j − 1``.
    """
    for j, prefix in enumerate(block_prefixes):
        prefix = prefix.rstrip(".")
        if watershed == prefix or watershed.startswith(prefix + "."):
            return j
    raise ValueError(f"layer {watershed!r} is in none of the blocks {list(block_prefixes)[:4]}"
                     f"{'…' if len(block_prefixes) > 4 else ''}")


def plot_mask_iou(ious: Mapping[str, float], path, watershed: str | None = None,
                  title: str = "Mask IoU of the tasks' keep-sets per shared layer") -> Path:
    """Bar chart (PNG) of the per-layer IoU; the watershed bar, when given, is highlighted."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a declared dependency
        raise ImportError("plot_mask_iou needs matplotlib: pip install matplotlib") from exc
    if watershed is not None and watershed not in ious:
        raise ValueError(f"watershed {watershed!r} is not one of the plotted layers")
    names = list(ious)
    fig = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["tab:red" if n == watershed else "tab:blue" for n in names]
    ax.bar(range(len(names)), [ious[n] for n in names], color=colors)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.removesuffix(".weight") for n in names], rotation=90, fontsize=7)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title(title if watershed is None else f"{title} (watershed: {watershed})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path
