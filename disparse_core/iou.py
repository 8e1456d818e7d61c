"""Mask-IoU analysis (DISPARSE.md §6): where do the tasks stop agreeing on which weights matter?

For each shared layer (owned by at least two tasks), the IoU of the tasks' own keep-sets ``K_t``
(before the union): ``|∩ K_t| / |∪ K_t|``. The layer after the largest drop of that curve is the
*watershed*; sharing the backbone past it brings little, so :func:`suggest_cutoff` proposes branching
at the block that holds it.

Example::

    result = sparsify(model, batches, losses, sparsity=0.9, method="disparse_static")
    ious = mask_iou(result.task_keep, result.ownership)
    layer = find_watershed(ious)
    cutoff = suggest_cutoff(layer, model.block_names())
    plot_mask_iou(ious, "mask_iou.png", watershed=layer)
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from torch import Tensor

__all__ = ["mask_iou", "find_watershed", "suggest_cutoff", "plot_mask_iou"]


def mask_iou(task_keep: Mapping[str, Mapping[str, Tensor]],
             ownership: Mapping[str, frozenset]) -> dict[str, float]:
    """``{layer: IoU}`` for every tensor owned by two or more tasks, in ownership (model) order.

    When no owner keeps any weight of a layer (empty union), the tasks agree completely and the IoU
    is 1.0. A collapsed ``task_keep`` (one pseudo-task) has no shared layers: the result is empty.
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
        out[name] = 1.0 if n_union == 0 else int(inter.sum()) / n_union
    return out


def find_watershed(ious: Mapping[str, float]) -> str:
    """The layer right after the largest IoU drop between consecutive shared layers (dict order =
    model order); the first such layer on ties. Needs at least two layers."""
    names = list(ious)
    if len(names) < 2:
        raise ValueError(f"a watershed needs at least two shared layers, got {len(names)}")
    drops = [ious[names[i - 1]] - ious[names[i]] for i in range(1, len(names))]
    best = max(range(len(drops)), key=lambda i: (drops[i], -i))
    return names[best + 1]


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
