"""Mask-IoU analysis: per shared layer agreement of the tasks' keep-sets, watershed, cutoff, plot."""

import math

import pytest
import torch

from disparse_core.iou import find_watershed, mask_iou, plot_mask_iou, suggest_cutoff
from disparse_core.sparsify import sparsify
from toy_models import MultiHeadNet, make_batches, single_thread  # noqa: F401


def _twin_heads_model():
    torch.manual_seed(0)
    model = MultiHeadNet(("cls", "reg"), width=6)
    model.heads["reg"] = torch.nn.Linear(12, 4)
    model.heads["reg"].load_state_dict(model.heads["cls"].state_dict())
    return model


def test_identical_tasks_have_iou_one_in_every_shared_layer():
    # two tasks with the same head, loss and targets see the same scores on the trunk
    losses = {"cls": torch.nn.functional.cross_entropy, "reg": torch.nn.functional.cross_entropy}
    batches = make_batches(("cls",), n=2)
    same = [(x, {"cls": y["cls"], "reg": y["cls"]}) for x, y in batches]
    result = sparsify(_twin_heads_model(), same, losses, sparsity=0.8)
    ious = mask_iou(result.task_keep, result.ownership)
    assert list(ious) == [f"trunk.{i}.0.weight" for i in range(3)]  # shared layers, model order
    assert all(v == 1.0 for v in ious.values())
    # the same net with another target for one task: the tasks disagree somewhere
    other = [(x, {"cls": y["cls"], "reg": (y["cls"] + 1) % 4}) for x, y in batches]
    result = sparsify(_twin_heads_model(), other, losses, sparsity=0.8)
    assert min(mask_iou(result.task_keep, result.ownership).values()) < 1.0


def test_iou_by_hand_and_empty_union():
    own = {"l1": frozenset({"a", "b"}), "l2": frozenset({"a", "b", "c"}), "head": frozenset({"a"}),
           "l3": frozenset({"a", "b"})}
    keep = {
        "a": {"l1": torch.tensor([1, 1, 0, 0]).bool(), "l2": torch.tensor([1, 1, 1, 0]).bool(),
              "head": torch.tensor([1]).bool(), "l3": torch.zeros(3, dtype=torch.bool)},
        "b": {"l1": torch.tensor([0, 1, 1, 0]).bool(), "l2": torch.tensor([1, 1, 0, 0]).bool(),
              "l3": torch.zeros(3, dtype=torch.bool)},
        "c": {"l2": torch.tensor([0, 1, 0, 1]).bool()},
    }
    ious = mask_iou(keep, own)
    assert list(ious) == ["l1", "l2", "l3"]
    assert ious["l1"] == pytest.approx(1 / 3) and ious["l2"] == pytest.approx(1 / 4)
    assert math.isnan(ious["l3"])  # nobody keeps anything of l3: no agreement to measure


def test_watershed_skips_empty_union_layers():
    # l2 is fully pruned (NaN); read as 1.0 it would make the spike l2 -> l3 the largest drop
    ious = {"l0": 0.9, "l1": 0.3, "l2": float("nan"), "l3": 0.25, "l4": 0.2}
    assert find_watershed(ious) == "l1"
    assert find_watershed({"a": 0.9, "b": float("nan"), "c": 0.2}) == "c"  # drop measured across b
    with pytest.raises(ValueError, match="got 1 of 2"):
        find_watershed({"a": 0.9, "b": float("nan")})


def test_watershed_can_skip_small_layers():
    # ResNet-like: a block (conv1 grows the width, conv2, a 1x1 downsample conv "ds"), then the next
    # block; the small ds has a noisy IoU
    names = ["prev", "conv1", "conv2", "ds", "next1", "next2", "last"]
    sizes = dict(zip(names, [36864, 73728, 147456, 8192, 147456, 147456, 147456]))
    ious = dict(zip(names, [0.95, 0.93, 0.9, 0.2, 0.88, 0.4, 0.35]))
    assert find_watershed(ious) == "ds"                     # the spurious dip wins without sizes
    assert find_watershed(ious, sizes=sizes) == "next2"     # 0.88 -> 0.4 once ds is skipped
    assert find_watershed(ious, sizes=sizes, min_size_fraction=0.0) == "ds"
    with pytest.raises(ValueError, match="sizes has no entry for layer 'last'"):
        find_watershed(ious, sizes={n: sizes[n] for n in names[:-1]})
    with pytest.raises(ValueError, match="min_size_fraction"):
        find_watershed(ious, sizes=sizes, min_size_fraction=2.0)


def test_collapsed_keep_sets_have_no_shared_layer():
    own = {"l1": frozenset({"all_tasks"})}
    assert mask_iou({"all_tasks": {"l1": torch.ones(3, dtype=torch.bool)}}, own) == {}


def test_watershed_is_the_layer_after_the_largest_drop():
    curve = [0.97, 0.95, 0.9, 0.86, 0.8, 0.6, 0.38, 0.1, 0.08, 0.05]
    ious = {f"layer{i}.weight": v for i, v in enumerate(curve)}
    assert find_watershed(ious) == "layer7.weight"  # 0.38 -> 0.1 is the largest fall
    # order matters: the same values in another order give another watershed
    ious = {f"layer{i}.weight": v for i, v in enumerate([0.9, 0.2, 0.8, 0.7])}
    assert find_watershed(ious) == "layer1.weight"
    with pytest.raises(ValueError, match="at least two shared layers, got 1"):
        find_watershed({"only.weight": 0.5})


def test_suggest_cutoff_branches_at_the_block_holding_the_watershed():
    blocks = ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer10"]
    assert suggest_cutoff("backbone.layer1.0.conv1.weight", blocks) == 0
    assert suggest_cutoff("backbone.layer3.1.conv2.weight", blocks) == 2
    assert suggest_cutoff("backbone.layer10.0.conv1.weight", blocks) == 3  # not layer1's prefix
    with pytest.raises(ValueError, match="'stem.conv.weight' is in none of the blocks"):
        suggest_cutoff("stem.conv.weight", blocks)


def test_plot_writes_a_png(tmp_path):
    ious = {"a.weight": 0.9, "b.weight": 0.3, "c.weight": 0.1}
    path = plot_mask_iou(ious, tmp_path / "sub" / "iou.png", watershed="b.weight")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError, match="watershed 'x' is not one of the plotted layers"):
        plot_mask_iou(ious, tmp_path / "x.png", watershed="x")


def test_plot_makes_room_for_its_labels_and_title(tmp_path):
    import numpy as np
    from PIL import Image as image

    def pixels(path):
        return np.asarray(image.open(path).convert("L"))

    short = pixels(plot_mask_iou({"a.weight": 0.9, "b.weight": 0.3}, tmp_path / "s.png"))
    names = [f"backbone.layer{i}.0.downsample.0.weight" for i in range(1, 4)]
    ious = dict(zip(names, [0.9, 0.2, 0.5]))
    long = pixels(plot_mask_iou(ious, tmp_path / "l.png"))
    assert short.shape[1] == long.shape[1] == 600                  # 6 in at 100 dpi
    assert long.shape[0] > short.shape[0]                          # the label band grows, not the axes shrink
    for img in (short, long):                                       # nothing cut off at the edges
        assert img[0].min() == 255 and img[-1].min() == 255 and img[:, 0].min() == 255
        assert img[-8:].min() < 128 and img[:20].min() < 128       # label and title ink near them
    wrapped = pixels(plot_mask_iou(ious, tmp_path / "w.png", watershed=names[1]))
    assert wrapped.shape[0] > long.shape[0]                        # a title too wide for 6 in: two lines
    assert wrapped[0].min() == 255


def test_a_layer_a_task_drops_is_starved_and_skipped_by_the_watershed():
    from disparse_core.iou import starved_layers, watershed_summary
    ownership = {f"l{i}": frozenset({"a", "b"}) for i in range(4)}
    full = torch.ones(100, dtype=torch.bool)
    half = torch.zeros(100, dtype=torch.bool)
    half[:50] = True
    other = torch.zeros(100, dtype=torch.bool)
    other[25:75] = True
    none = torch.zeros(100, dtype=torch.bool)
    keep = {"a": {"l0": full, "l1": half, "l2": half, "l3": half},
            "b": {"l0": full, "l1": half, "l2": none, "l3": other}}
    assert starved_layers(keep, ownership) == ["l2"]        # b keeps nothing of l2
    ious = mask_iou(keep, ownership)
    assert ious["l2"] == 0.0                                # reads as "unrelated" without the mark
    summary = watershed_summary(ious, {n: 100 for n in ownership}, ["l0", "l1", "l2", "l3"],
                                starved=starved_layers(keep, ownership))
    # drops: l0 -> l1 0.0, l1 -> l3 (l2 skipped) 1 - 1/3: the watershed is l3, not the starved l2
    assert summary == {"layer": "l3", "cutoff": 3, "starved": ["l2"]}
    bare = watershed_summary(ious, {n: 100 for n in ownership}, ["l0", "l1", "l2", "l3"])
    assert bare["layer"] == "l2" and bare["starved"] == []
    assert watershed_summary({"l0": 1.0}, {"l0": 100})["layer"] is None


def test_plot_marks_starved_layers(tmp_path):
    import matplotlib.image
    ious = {"a": 0.9, "b": 0.0, "c": 0.5}
    plain = plot_mask_iou(ious, tmp_path / "plain.png")
    marked = plot_mask_iou(ious, tmp_path / "marked.png", starved=["b"])
    grey = lambda img: int(((abs(img[..., 0] - img[..., 1]) < 0.02) & (img[..., 0] > 0.4)  # noqa: E731
                            & (img[..., 0] < 0.6)).sum())
    assert grey(matplotlib.image.imread(marked)) > grey(matplotlib.image.imread(plain)) + 50
