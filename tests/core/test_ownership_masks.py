"""Ownership from the autograd graph, and the mask plumbing the decisions rely on."""

import pytest
import torch

from disparse_core.masks import (attach_masks, fold_masks, prunable_weights,
                                 record_effective_weights, sparsity_report)
from disparse_core.ownership import owners_by_task, task_ownership
from toy_models import BranchedNet, MultiHeadNet, make_batches, single_thread  # noqa: F401


@pytest.mark.parametrize("tasks", [("seg", "cls"), ("seg", "cls", "reg")])
def test_ownership_matches_construction_shared_trunk(tasks):
    model = MultiHeadNet(tasks)
    x, _ = make_batches(tasks, n=1)[0]
    assert task_ownership(model, x) == model.expected_ownership()


@pytest.mark.parametrize("cutoff", [0, 1, 2, 3])
def test_ownership_matches_construction_when_backbone_branches(cutoff):
    model = BranchedNet(("seg", "cls", "reg"), cutoff=cutoff)
    x, _ = make_batches(model.tasks, n=1)[0]
    own = task_ownership(model, x)
    assert own == model.expected_ownership()
    shared = [n for n, o in own.items() if len(o) == 3]
    assert len(shared) == cutoff
    # each task owns the shared blocks, its own branch and its own head, nothing of the others
    by_task = owners_by_task(own)
    for t in model.tasks:
        assert all(n.startswith(("shared.", f"branches.{t}.", f"heads.{t}.")) for n in by_task[t])


def test_ownership_is_the_same_with_masks_attached():
    model = MultiHeadNet(("seg", "cls", "reg"))
    x, _ = make_batches(model.tasks, n=1)[0]
    before = task_ownership(model, x)
    attach_masks(model, {n: torch.rand(p.shape) > 0.5 for n, p in prunable_weights(model).items()})
    assert task_ownership(model, x) == before


def test_dead_layer_has_no_owner():
    model = MultiHeadNet(("seg", "cls"), dead_layer=True)
    x, _ = make_batches(model.tasks, n=1)[0]
    assert task_ownership(model, x)["unused.weight"] == frozenset()


def _half_masks(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in prunable_weights(model).items()}


def test_sparsity_report_counts_masked_weights_and_fold_keeps_zeros():
    model = MultiHeadNet(("seg", "cls"))
    masks = _half_masks(model)
    attach_masks(model, masks)
    report = sparsity_report(model)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert report["total"] == total
    assert report["nonzero"] == kept
    assert report["sparsity"] == pytest.approx(1 - kept / total)
    for name, m in masks.items():
        assert report["layers"][name]["nonzero"] == int(m.sum())
    x, _ = make_batches(model.tasks, n=1)[0]
    with torch.no_grad():
        expected = model(x)
    fold_masks(model)
    assert not any(hasattr(mod, "parametrizations") for mod in model.modules())
    for name, w in prunable_weights(model).items():
        assert torch.all(w[~masks[name]] == 0)
    with torch.no_grad():
        got = model(x)
    for t in expected:
        torch.testing.assert_close(got[t], expected[t])
    assert sparsity_report(model)["nonzero"] == kept


def test_recorded_effective_weights_give_dense_gradients_at_masked_positions():
    model = MultiHeadNet(("seg", "cls"))
    masks = _half_masks(model)
    attach_masks(model, masks)
    x, y = make_batches(model.tasks, n=1)[0]
    with record_effective_weights(model) as effective:
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out["cls"], y["cls"])
        weights = effective()
        grad = torch.autograd.grad(loss, [weights["trunk.1.0.weight"]])[0]
    masked = ~masks["trunk.1.0.weight"]
    assert masked.any()
    assert grad[masked].abs().sum() > 0  # the raw parameter's gradient would be zero there
