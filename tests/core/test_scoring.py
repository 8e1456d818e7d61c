"""Disentangled scores: each task's score comes from its own loss, one forward per batch."""

import pytest
import torch

from disparse_core.masks import attach_masks, prunable_weights, record_effective_weights
from disparse_core.ownership import task_ownership
from disparse_core.scoring import (COLLAPSED_TASK, collapse_tasks, per_task_gradients, task_scores)
from toy_models import MultiHeadNet, NotADictNet, losses_for, make_batches, single_thread  # noqa: F401

TASKS = ("seg", "cls", "reg")


def _setup(tasks=TASKS, n=3, seed=0):
    torch.manual_seed(seed)
    model = MultiHeadNet(tasks)
    batches = make_batches(tasks, n=n, seed=seed)
    return model, batches, losses_for(tasks), task_ownership(model, batches[0][0])


def _grad_by_hand(model, batch, loss_fn):
    """∂loss/∂weight with a fresh forward, through the ordinary .grad path."""
    model.zero_grad(set_to_none=True)
    x, y = batch
    loss_fn(model(x), y).backward()
    out = {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
           for n, p in prunable_weights(model).items()}
    model.zero_grad(set_to_none=True)
    return out


def test_per_task_gradients_equal_each_task_loss_alone():
    model, batches, losses, own = _setup()
    x, y = batches[0]
    with record_effective_weights(model) as effective:
        out = model(x)
        grads = per_task_gradients({t: losses[t](out[t], y[t]) for t in out}, effective(), own)
    for t in TASKS:
        expected = _grad_by_hand(model, batches[0], lambda o, yy: losses[t](o[t], yy[t]))
        assert set(grads[t]) == {n for n, o in own.items() if t in o}
        for name, g in grads[t].items():
            torch.testing.assert_close(g, expected[name])
            assert g.abs().sum() > 0


@pytest.mark.parametrize("criterion", ["snip", "taylor", "gradient"])
def test_scores_match_the_definition_computed_by_hand(criterion):
    model, batches, losses, own = _setup()
    scores = task_scores(model, batches, losses, criterion=criterion, ownership=own)
    weights = {n: p.detach() for n, p in prunable_weights(model).items()}
    for t in TASKS:
        per_batch = [_grad_by_hand(model, b, lambda o, yy: losses[t](o[t], yy[t])) for b in batches]
        assert set(scores[t]) == {n for n, o in own.items() if t in o}
        for name, s in scores[t].items():
            w = weights[name]
            if criterion == "snip":
                expected = sum((w * g[name]).abs() for g in per_batch)
            elif criterion == "taylor":
                expected = sum(g[name].abs() for g in per_batch) * w ** 2
            else:
                expected = sum(g[name].abs() for g in per_batch)
            torch.testing.assert_close(s, expected)


def test_scores_of_different_tasks_differ_on_shared_tensors():
    model, batches, losses, own = _setup()
    scores = task_scores(model, batches, losses, criterion="snip", ownership=own)
    shared = "trunk.0.0.weight"
    assert not torch.equal(scores["seg"][shared], scores["cls"][shared])


def test_magnitude_is_abs_weight_for_every_owner():
    model, batches, losses, own = _setup()
    scores = task_scores(model, batches, losses, criterion="magnitude", ownership=own)
    for t in TASKS:
        for name, s in scores[t].items():
            torch.testing.assert_close(s, prunable_weights(model)[name].detach().abs())


def test_one_forward_and_T_backward_passes_per_batch(monkeypatch):
    model, batches, losses, _ = _setup(n=4)
    forwards = []
    model.register_forward_hook(lambda *args: forwards.append(1))
    real_grad = torch.autograd.grad
    grad_calls = []

    def counting_grad(*args, **kwargs):
        grad_calls.append(1)
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    task_scores(model, batches, losses, criterion="snip")  # ownership found on the first forward
    assert len(forwards) == len(batches)
    assert len(grad_calls) == len(TASKS) * len(batches)
    # no side effect on parameters or .grad
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), params_before[n])
        assert p.grad is None


def test_masked_positions_score_zero_with_snip_but_have_a_dense_gradient():
    model, batches, losses, own = _setup()
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in prunable_weights(model).items()}
    attach_masks(model, masks)
    snip = task_scores(model, batches, losses, criterion="snip", ownership=own)
    grad = task_scores(model, batches, losses, criterion="gradient", ownership=own)
    name = "trunk.1.0.weight"
    off = ~masks[name]
    assert torch.all(snip["seg"][name][off] == 0)
    assert grad["seg"][name][off].abs().sum() > 0


def test_collapsed_scores_are_snip_of_the_weighted_sum():
    model, batches, losses, own = _setup(n=2)
    lam = {"seg": 1.0, "cls": 0.5, "reg": 20.0}
    scores = task_scores(model, batches, losses, criterion="snip", ownership=own, collapse=True,
                         loss_weights=lam)
    assert list(scores) == [COLLAPSED_TASK]
    assert set(scores[COLLAPSED_TASK]) == set(own)  # the pseudo-task owns every live tensor

    def summed(o, y):
        return sum(lam[t] * losses[t](o[t], y[t]) for t in TASKS)

    per_batch = [_grad_by_hand(model, b, summed) for b in batches]
    for name, p in prunable_weights(model).items():
        expected = sum((p.detach() * g[name]).abs() for g in per_batch)
        torch.testing.assert_close(scores[COLLAPSED_TASK][name], expected)


def test_collapse_tasks_helper():
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    collapsed, own_fn = collapse_tasks({"x": a, "y": b}, {"y": 10.0})
    assert collapsed[COLLAPSED_TASK].item() == pytest.approx(32.0)
    own = own_fn({"w1": frozenset({"x", "y"}), "w2": frozenset({"y"}), "dead": frozenset()})
    assert own == {"w1": frozenset({COLLAPSED_TASK}), "w2": frozenset({COLLAPSED_TASK}),
                   "dead": frozenset()}


def test_scoring_rejects_bad_input():
    model, batches, losses, own = _setup(n=1)
    with pytest.raises(ValueError, match="unknown criterion 'fisher'"):
        task_scores(model, batches, losses, criterion="fisher")
    with pytest.raises(ValueError, match="empty batch list"):
        task_scores(model, [], losses, criterion="snip")
    with pytest.raises(ValueError, match="task 'reg' has no loss"):
        task_scores(model, batches, losses_for(("seg", "cls")), criterion="snip")
    with pytest.raises(ValueError, match="must return a non-empty dict"):
        task_scores(NotADictNet(), batches, losses, criterion="snip")
