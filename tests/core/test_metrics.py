"""Metrics, losses and Δm against hand-computed values on tiny tensors."""

from types import SimpleNamespace

import math

import pytest
import torch

from disparse_core import metrics as M
from disparse_core import tasks as T


def onehot_logits(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) class ids -> (N, C, H, W) logits whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()


# --- segmentation -----------------------------------------------------------------------------------

def test_miou_excludes_ignore_and_absent_classes():
    target = torch.tensor([[[0, 0, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 2]]])       # class 2 predicted only on the ignored pixel
    meter = M.SegmentationMeter(num_classes=4, ignore_index=255)
    meter.update(onehot_logits(pred, 4), target)
    out = meter.compute()
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 1, FP 1 -> 1/2; classes 2, 3 absent -> excluded
    assert out["miou"] == pytest.approx(0.5)
    assert out["pixel_acc"] == pytest.approx(2 / 3)


def test_segmentation_labels_with_a_channel_dimension_count_like_plain_labels():
    """(N, 1, H, W) labels, as the segmentation loss accepts them, give the same mIoU as (N, H, W)."""
    target = torch.tensor([[[0, 0, 1, 255]]])
    logits = onehot_logits(torch.tensor([[[0, 1, 1, 2]]]), 4)
    plain, channel = M.SegmentationMeter(4), M.SegmentationMeter(4)
    plain.update(logits, target)
    channel.update(logits, target[:, None])
    assert channel.compute() == plain.compute() and plain.compute()["miou"] == pytest.approx(0.5)


def test_miou_is_over_the_whole_set_not_a_mean_of_batches():
    meter = M.SegmentationMeter(num_classes=2, ignore_index=None)
    meter.update(onehot_logits(torch.tensor([[[0, 0, 0, 0]]]), 2), torch.tensor([[[0, 0, 0, 0]]]))
    meter.update(onehot_logits(torch.tensor([[[0, 1]]]), 2), torch.tensor([[[1, 1]]]))
    out = meter.compute()
    # whole set: class 0 TP 4 FP 1 -> 4/5; class 1 TP 1 FN 1 -> 1/2; mean 0.65
    # (the mean of per-batch mIoUs would be (1 + 0.25) / 2 = 0.625)
    assert out["miou"] == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert out["pixel_acc"] == pytest.approx(5 / 6)


def test_wrong_class_present_in_gt_only_counts_as_zero_iou():
    meter = M.SegmentationMeter(num_classes=3, ignore_index=255)
    meter.update(onehot_logits(torch.tensor([[[0, 0]]]), 3), torch.tensor([[[0, 2]]]))
    # class 0: TP 1, FP 1 -> 1/2; class 2: FN 1 -> 0; class 1 absent
    assert meter.compute()["miou"] == pytest.approx(0.25)


# --- normals ----------------------------------------------------------------------------------------

def _normals_batch():
    gt = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float)
    pred = torch.tensor([[0, 0, 1], [1, 0, 1], [0, 1, 0], [0, 0, 2], [1, 0, 0]], dtype=torch.float)
    as_map = lambda v: v.t().reshape(1, 3, 1, 5)
    return as_map(pred), as_map(gt)


def test_normals_angles_mean_median_within():
    pred, gt = _normals_batch()
    meter = M.NormalsMeter()
    meter.update(pred, gt)
    out = meter.compute()
    # errors 0, 45, 90, 0 degrees (the all-zero gt pixel is invalid)
    assert out["mean"] == pytest.approx(33.75)
    assert out["median"] == pytest.approx(22.5)        # even count: mean of the two middle values
    assert out["within_11"] == pytest.approx(0.5)
    assert out["within_22"] == pytest.approx(0.5)
    assert out["within_30"] == pytest.approx(0.5)


def test_normals_median_is_exact_over_the_whole_set():
    torch.manual_seed(0)
    meter = M.NormalsMeter()
    all_err = []
    for _ in range(3):
        pred, gt = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
        meter.update(pred, gt)
        all_err.append(M.NormalsMeter.angle_errors(pred, gt))
    errs = torch.cat(all_err).numpy()
    import numpy as np
    assert meter.compute()["median"] == pytest.approx(float(np.median(errs)), abs=1e-4)
    assert meter.compute()["mean"] == pytest.approx(float(errs.mean()), abs=1e-9)


def test_normals_histogram_fallback_stays_close():
    torch.manual_seed(1)
    exact, coarse = M.NormalsMeter(), M.NormalsMeter(exact_limit=50)
    for _ in range(4):
        pred, gt = torch.randn(1, 3, 6, 7), torch.randn(1, 3, 6, 7)
        exact.update(pred, gt)
        coarse.update(pred, gt)
    assert coarse._hist is not None
    assert coarse.compute()["median"] == pytest.approx(exact.compute()["median"], abs=1e-3)
    assert coarse.compute()["mean"] == pytest.approx(exact.compute()["mean"])


def test_small_angles_are_accurate():
    gt = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    angle = math.radians(0.01)
    pred = torch.tensor([math.sin(angle), 0.0, math.cos(angle)]).view(1, 3, 1, 1)
    meter = M.NormalsMeter()
    meter.update(pred, gt)
    assert meter.compute()["mean"] == pytest.approx(0.01, rel=1e-3)


# --- depth ------------------------------------------------------------------------------------------

def test_depth_errors_and_deltas():
    gt = torch.tensor([1.0, 2.0, 0.0, 4.0]).view(1, 1, 1, 4)
    pred = torch.tensor([1.2, 1.5, 5.0, -1.0]).view(1, 1, 1, 4)
    meter = M.DepthMeter()
    meter.update(pred, gt)
    out = meter.compute()
    # valid: gt 1, 2, 4; |err| 0.2, 0.5, 5; rel 0.2, 0.25, 1.25; ratios 1.2, 1.333, inf (pred <= 0)
    assert out["abs_err"] == pytest.approx(5.7 / 3)
    assert out["rel_err"] == pytest.approx(1.7 / 3)
    assert out["delta1"] == pytest.approx(1 / 3)
    assert out["delta2"] == pytest.approx(2 / 3)
    assert out["delta3"] == pytest.approx(2 / 3)


def test_depth_accepts_target_without_channel_dim():
    meter = M.DepthMeter()
    meter.update(torch.full((2, 1, 3, 3), 2.0), torch.full((2, 3, 3), 2.0))
    assert meter.compute()["abs_err"] == 0.0 and meter.compute()["delta1"] == 1.0


def test_no_valid_pixel_gives_nan_not_zero():
    meter = M.DepthMeter()
    meter.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert all(math.isnan(v) for v in meter.compute().values())
    assert math.isnan(M.NormalsMeter().compute()["median"])


def test_classification_accuracy():
    meter = M.ClassificationMeter()
    meter.update(torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]]), torch.tensor([0, 1, 1]))
    assert meter.compute()["acc"] == pytest.approx(2 / 3)


# --- directions and Δm ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,expected", [
    ("seg.miou", True), ("seg.pixel_acc", True), ("normal.mean", False), ("normal.median", False),
    ("normal.within_22", True), ("depth.abs_err", False), ("depth.rel_err", False),
    ("depth.delta1", True), ("left.acc", True), ("compression", True), ("delta_m", True),
    ("sparsity", True), ("wall_time_s", False),
])
def test_higher_is_better(key, expected):
    assert M.higher_is_better(key) is expected


def test_higher_is_better_rejects_unknown_metric():
    with pytest.raises(ValueError, match="seg.bogus"):
        M.higher_is_better("seg.bogus")


def test_metric_directions_uses_optuna_words():
    assert M.metric_directions(["seg.miou", "normal.mean"]) == {
        "seg.miou": "maximize", "normal.mean": "minimize"}


def test_delta_m_averages_within_task_first():
    baseline = {"seg.miou": 0.5, "seg.pixel_acc": 0.8, "normal.mean": 20.0}
    metrics = {"seg.miou": 0.55, "seg.pixel_acc": 0.76, "normal.mean": 22.0, "sparsity": 0.9}
    # seg: (+10 % and -5 %) / 2 = +2.5; normal: mean up 10 %, lower is better -> -10; Δm = -3.75
    # (a flat mean over the three metrics would give -1.667)
    assert M.delta_m(metrics, baseline) == pytest.approx(-3.75)


def test_delta_m_with_explicit_tasks_metrics_and_infos():
    baseline = {"seg.miou": 0.5, "seg.pixel_acc": 0.8, "normal.mean": 20.0}
    metrics = {"seg.miou": 0.55, "seg.pixel_acc": 0.76, "normal.mean": 22.0}
    assert M.delta_m(metrics, baseline, {"seg": ["miou"]}) == pytest.approx(10.0)
    infos = {"seg": SimpleNamespace(metrics=("miou",)), "normal": SimpleNamespace(metrics=("mean",))}
    assert M.delta_m(metrics, baseline, infos) == pytest.approx(0.0)
    assert M.delta_m(baseline, baseline) == 0.0


def test_delta_m_rejects_missing_metric():
    with pytest.raises(ValueError, match="normal.mean"):
        M.delta_m({"seg.miou": 0.5}, {"seg.miou": 0.5}, {"normal": ["mean"]})


def test_delta_m_leaves_out_zero_baselines_with_a_warning():
    baseline = {"depth.delta1": 0.0, "depth.abs_err": 2.0, "seg.miou": 0.4}
    metrics = {"depth.delta1": 0.1, "depth.abs_err": 1.0, "seg.miou": 0.5}
    with pytest.warns(RuntimeWarning, match="depth.delta1"):
        # depth: only abs_err (halved, lower is better: +50); seg: +25; Δm = 37.5
        assert M.delta_m(metrics, baseline) == pytest.approx(37.5)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="nonzero"):
        M.delta_m({"seg.miou": 0.5}, {"seg.miou": 0.0})


# --- losses -----------------------------------------------------------------------------------------

def test_losses_by_kind():
    seg = T.segmentation_loss(ignore_index=255)
    logits = torch.zeros(1, 4, 1, 2)
    assert float(seg(logits, torch.tensor([[[1, 255]]]))) == pytest.approx(math.log(4))
    all_ignored = seg(logits.requires_grad_(), torch.tensor([[[255, 255]]]))
    assert all_ignored.item() == 0.0
    all_ignored.backward()                                  # still differentiable

    pred, gt = _normals_batch()
    cos = torch.tensor([1.0, math.cos(math.pi / 4), 0.0, 1.0])
    assert float(T.normals_loss()(pred, gt)) == pytest.approx(float((1 - cos).mean()), abs=1e-6)

    gt_d = torch.tensor([1.0, 2.0, 0.0]).view(1, 1, 1, 3)
    pred_d = torch.tensor([1.5, 1.0, 9.0]).view(1, 1, 1, 3)
    assert float(T.depth_loss()(pred_d, gt_d)) == pytest.approx(0.75)

    cls = T.classification_loss()
    assert float(cls(torch.zeros(2, 5), torch.tensor([0, 3]))) == pytest.approx(math.log(5))


def test_build_losses_and_weights():
    tasks = {"seg": SimpleNamespace(kind="segmentation", num_classes=3, ignore_index=255),
             "normal": SimpleNamespace(kind="normals", num_classes=None, ignore_index=None)}
    losses = T.build_losses(SimpleNamespace(tasks=tasks), {"normal": 20.0})
    assert set(losses) == {"seg", "normal"}
    total = T.weighted_total({"seg": torch.tensor(1.0), "normal": torch.tensor(0.5)}, {"normal": 20.0})
    assert float(total) == pytest.approx(11.0)
    with pytest.raises(ValueError, match="depth"):
        T.build_losses(tasks, {"depth": 1.0})
    with pytest.raises(ValueError, match="loss_weights.seg"):
        T.build_losses(tasks, {"seg": -1.0})
