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

import functools
import math
import statistics
from pathlib import Path
from typing import Mapping, Sequence

from torch import Tensor

__all__ = ["mask_iou", "find_watershed", "suggest_cutoff", "starved_layers", "watershed_summary",
           "plot_mask_iou"]


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


def starved_layers(task_keep: Mapping[str, Mapping[str, Tensor]], ownership: Mapping[str, frozenset],
                   ratio: float = 0.1) -> list[str]:
    """Shared layers (two or more owners) where some owner keeps (almost) nothing: fewer than ``ratio``
    × that task's own keep density over all the layers it owns, or no weight at all. Such a layer's
    IoU is near 0 because a task dropped the layer, not because the tasks want different weights, so
    it says nothing about task relatedness (the watershed search skips it; plots mark it)."""
    density: dict[str, float] = {}
    for task, by_name in task_keep.items():
        kept = sum(int(k.sum()) for k in by_name.values())
        total = sum(k.numel() for k in by_name.values())
        density[task] = kept / total if total else 0.0
    out = []
    for name, owners in ownership.items():
        if len(owners) < 2:
            continue
        for task in sorted(owners):
            keep = task_keep.get(task, {}).get(name)
            if keep is None:
                continue
            share = int(keep.sum()) / max(keep.numel(), 1)
            if share == 0.0 or share < ratio * density[task]:
                out.append(name)
                break
    return out


def watershed_summary(ious: Mapping[str, float], sizes: Mapping[str, int],
                      block_prefixes: Sequence[str] | None = None, *,
                      starved: Sequence[str] = ()) -> dict:
    """``{"layer", "cutoff", "starved"}``: the watershed found with layer sizes (small layers skipped)
    and without the ``starved`` layers, the sharing cutoff that branches at its block (None without
    ``block_prefixes`` or when the layer is in none of them), and the starved layers. ``layer`` is None
    when fewer than two layers are left to compare. What ``run_trial`` returns and the sweep plots."""
    usable = {n: (v if n not in set(starved) else math.nan) for n, v in ious.items()}
    try:
        layer = find_watershed(usable, sizes=sizes)
    except ValueError:
        layer = None
    cutoff = None
    if layer is not None and block_prefixes:
        try:
            cutoff = suggest_cutoff(layer, block_prefixes)
        except ValueError:
            cutoff = None
    return {"layer": layer, "cutoff": cutoff, "starved": [n for n in ious if n in set(starved)]}


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


# Layout of the mask-IoU chart, in points (1/72 inch). The sweep draws one chart per trial, so it is drawn
# without ``fig.tight_layout()`` (which lays every label out once more only to find margins that follow
# from these numbers and the longest label) and without tick-label Text artists: shaping a line of text
# costs ~1.5 ms per draw in matplotlib 3.11 (libraqm), several times per label, which made the layer
# names most of the cost. The names are drawn as glyph outlines instead (:func:`_layer_label`, cached per
# process: a sweep plots the same layers every trial); the picture is the same.
_LABEL_PT, _TITLE_PT = 7.0, 9.0
_TICK_PT, _PAD_PT = 3.5, 3.5                  # matplotlib's default tick length and label pad
_LEFT_PT, _RIGHT_PT = 48.0, 12.0              # y tick labels "1.0" + the "IoU" label; a little air
_PLOT_IN, _BAR_IN = 2.6, 0.35                 # axes height; figure width per bar
_DPI = 100


def plot_mask_iou(ious: Mapping[str, float], path, watershed: str | None = None,
                  title: str = "Mask IoU of the tasks' keep-sets per shared layer",
                  starved: Sequence[str] = ()) -> Path:
    """Bar chart (PNG) of the per-layer IoU; the watershed bar, when given, is highlighted; a
    ``starved`` layer (:func:`starved_layers`: a task kept almost nothing of it) is drawn as a grey
    hatched bar to full height with an "x" under it, since its IoU does not measure agreement.

    The axes keep the same size whatever the layer names: the figure grows by the band the (vertical)
    layer labels need, and a title wider than the figure is split before the watershed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PathCollection
        from matplotlib.figure import Figure
        from matplotlib.markers import TICKDOWN
        from matplotlib.transforms import Affine2D
    except ImportError as exc:  # pragma: no cover - matplotlib is a declared dependency
        raise ImportError("plot_mask_iou needs matplotlib: pip install matplotlib") from exc
    if watershed is not None and watershed not in ious:
        raise ValueError(f"watershed {watershed!r} is not one of the plotted layers")
    names = list(ious)
    labels = [_layer_label(n.removesuffix(".weight"), _LABEL_PT) for n in names]
    width = max(6.0, _BAR_IN * len(names) + 2)
    heading = title if watershed is None else f"{title} (watershed: {watershed})"
    if watershed is not None and _text_width_pt(heading, _TITLE_PT) > width * 72 - _LEFT_PT - _RIGHT_PT:
        heading = f"{title}\n(watershed: {watershed})"
    longest = max((float(-p.vertices[:, 1].min()) for p in labels if len(p.vertices)), default=0.0)
    bottom = (longest + 2.0) / 72                                         # labels hang from the axis
    top = (_TITLE_PT * 1.25 * (heading.count("\n") + 1) + 6.0 + 4.0) / 72  # + title pad + air
    height = bottom + _PLOT_IN + top
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=_LEFT_PT / 72 / width, right=1 - _RIGHT_PT / 72 / width,
                        bottom=bottom / height, top=1 - top / height)
    ax = fig.add_subplot(1, 1, 1)
    starved = set(starved)
    colors = ["tab:red" if n == watershed else "tab:blue" for n in names]
    plain = [i for i, n in enumerate(names) if n not in starved]
    ax.bar(plain, [ious[names[i]] for i in plain], color=[colors[i] for i in plain])
    marked = [i for i, n in enumerate(names) if n in starved]
    if marked:
        ax.bar(marked, [1.0] * len(marked), color="none", edgecolor="grey", hatch="///",
               label="a task keeps almost nothing here (IoU not meaningful)")
        ax.plot(marked, [0.03] * len(marked), linestyle="none", marker="x", color="grey")
        ax.legend(loc="upper right", fontsize=_LABEL_PT, frameon=False)
    ax.set_xticks([])
    # x: data (bar index), y: axes fraction 0 = the bottom spine
    spine = ax.get_xaxis_transform()
    ax.plot(range(len(names)), [0.0] * len(names), linestyle="none", marker=TICKDOWN, color="black",
            markersize=_TICK_PT, markeredgewidth=0.8, transform=spine, clip_on=False)
    ax.add_collection(PathCollection(labels, offsets=[(i, 0.0) for i in range(len(names))],
                                     offset_transform=spine, facecolors="black", edgecolors="none",
                                     transform=Affine2D().scale(1 / 72) + fig.dpi_scale_trans,
                                     clip_on=False), autolim=False)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title(heading, fontsize=_TITLE_PT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: a third faster to encode than the default 6, and no bigger for flat-colour charts
    fig.savefig(path, format="png", dpi=_DPI, pil_kwargs={"compress_level": 1})
    return path


@functools.lru_cache(maxsize=512)             # ~15 kB a label; a sweep has one model's layers
def _layer_label(text: str, size: float):
    """``text`` as a glyph-outline path in points, placed like a rotated tick label: reading upwards,
    centred on the tick (by the font's line box, so every label sits alike), its end a tick and a pad
    below the axis. Read-only: the cache hands the same path to every chart (and thread)."""
    import numpy as np
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MplPath
    from matplotlib.textpath import TextPath, text_to_path
    from matplotlib.transforms import Affine2D
    if not text.strip():
        return MplPath(np.empty((0, 2)), readonly=True)
    prop = FontProperties(size=size)
    glyphs = TextPath((0, 0), text, prop=prop)
    _, line_height, descent = text_to_path.get_text_width_height_descent("lp", prop, ismath=False)
    place = (Affine2D().translate(-float(glyphs.vertices[:, 0].max()), descent - line_height / 2)
             .rotate_deg(90).translate(0, -(_TICK_PT + _PAD_PT)))
    return MplPath(place.transform(glyphs.vertices), glyphs.codes, readonly=True)


def _text_width_pt(text: str, size: float) -> float:
    """Width of one line of ``text`` in the default font at ``size`` points, from the font's metrics
    (about 1 ms; no figure or renderer needed). Falls back to a generous per-character estimate."""
    if not text:
        return 0.0
    try:
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import text_to_path
        return float(text_to_path.get_text_width_height_descent(text, FontProperties(size=size),
                                                                ismath=False)[0])
    except Exception:  # pragma: no cover - odd font set-ups: a wider margin is harmless
        return 0.65 * size * len(text)
