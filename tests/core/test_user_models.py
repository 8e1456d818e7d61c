"""Networks users bring that the built-in ones never exercised: a layer applied twice, frozen or untraced
layers, tied weights, a copy exported while the original trains, re-sparsifying a masked net with the
unscored baselines, and model/loss contracts broken in ways that must be one clear error."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from disparse_core import (DynamicSparsifier, attach_masks, fold_masks, get_masks, prunable_weights, sparsify,
                           sparsity_report, task_scores)
from toy_models import single_thread  # noqa: F401  (one torch thread for this module)

LOSSES = {"a": F.cross_entropy, "b": F.mse_loss}


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 6, generator=g), {"a": torch.randint(0, 3, (8,), generator=g),
                                            "b": torch.randn(8, 1, generator=g)}


class Twice(nn.Module):
    """``rep`` is applied twice in one forward."""

    def __init__(self):
        super().__init__()
        self.inp, self.rep = nn.Linear(6, 8), nn.Linear(8, 8)
        self.ha, self.hb = nn.Linear(8, 3), nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.rep(torch.tanh(self.rep(torch.tanh(self.inp(x))))))
        return {"a": self.ha(h), "b": self.hb(h)}


class Trunk(nn.Module):
    """A shared two-layer trunk run in one of several ways; task ``a`` has a private layer."""

    def __init__(self, mode: str = "plain", tied: bool = False):
        super().__init__()
        self.mode = mode
        self.l1, self.l2 = nn.Linear(6, 6), nn.Linear(6, 6)
        self.ha, self.hb, self.pa = nn.Linear(6, 3), nn.Linear(6, 1), nn.Linear(6, 6)
        if mode == "frozen":
            self.l1.weight.requires_grad_(False)
        if tied:
            self.l2.weight = self.l1.weight

    def trunk(self, x):
        return torch.tanh(self.l2(torch.tanh(self.l1(x))))

    def forward(self, x):
        if self.mode == "checkpoint":
            h = checkpoint(self.trunk, x, use_reentrant=True)
        elif self.mode == "no_grad_trunk":
            with torch.no_grad():
                h = self.trunk(x)
        else:
            h = self.trunk(x)
        out = {"a": self.ha(torch.tanh(self.pa(h))), "b": self.hb(h)}
        if self.mode == "no_grad_all":
            out = {t: o.detach() for t, o in out.items()}
        return out


def _all_true(model):
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_weights(model).items()}


@pytest.mark.parametrize("criterion", ["gradient", "snip", "taylor"])
def test_a_layer_used_twice_is_scored_on_both_uses_masked_or_not(criterion):
    torch.manual_seed(0)
    model, batch = Twice(), _batch()
    plain = task_scores(model, [batch], LOSSES, criterion=criterion)
    attach_masks(model, _all_true(model))          # masks that prune nothing change no score
    masked = task_scores(model, [batch], LOSSES, criterion=criterion)
    for task in plain:
        for name in plain[task]:
            torch.testing.assert_close(masked[task][name], plain[task][name])


def test_the_dynamic_update_step_writes_the_true_gradient_of_a_layer_used_twice():
    torch.manual_seed(0)
    model, (x, y) = Twice(), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sp = DynamicSparsifier(model, opt, LOSSES, sparsity=0.5, t_end=100, delta_t=5, alpha0=0.0,
                           sample_batch=(x, y), dense_first=False)
    raw = prunable_weights(model)["rep.weight"]
    with sp.recording(5):
        out = model(x)
        losses = {t: LOSSES[t](out[t], y[t]) for t in out}
    expected = torch.autograd.grad(sum(losses.values()), raw, retain_graph=True)[0]
    sp.backward(5, losses)
    torch.testing.assert_close(raw.grad, expected)


def test_a_frozen_prunable_layer_is_owned_and_scored_like_any_other():
    torch.manual_seed(0)
    model = Trunk("frozen")
    result = sparsify(model, [_batch()], LOSSES, sparsity=0.5, method="disparse_static")
    assert result.ownership["l1.weight"] == frozenset({"a", "b"})
    assert 0 < int(result.masks["l1.weight"].sum()) < 36         # pruned in part, not deleted
    assert sparsity_report(model)["sparsity"] == pytest.approx(result.achieved_sparsity)
    assert not prunable_weights(model)["l1.weight"].requires_grad    # still frozen afterwards


@pytest.mark.parametrize("mode", ["checkpoint", "no_grad_trunk"])
def test_layers_no_task_output_reaches_are_named_in_a_warning(mode):
    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match=r"no task output reaches 2 prunable tensor\(s\) \['l1.weight', "
                                            r"'l2.weight'\]"):
        sparsify(Trunk(mode), [_batch()], LOSSES, sparsity=0.5, method="disparse_static")


def test_an_output_outside_the_autograd_graph_is_one_error():
    with pytest.raises(ValueError, match="model output for task 'a' is not connected to the autograd graph"):
        sparsify(Trunk("no_grad_all"), [_batch()], LOSSES, sparsity=0.5, method="disparse_static")


def test_tied_prunable_weights_are_one_error_not_two_deleted_layers():
    model = Trunk(tied=True)
    before = model.l1.weight.detach().clone()
    with pytest.raises(ValueError, match="'l1.weight' and 'l2.weight' are the same Parameter"):
        sparsify(model, [_batch()], LOSSES, sparsity=0.5, method="disparse_static")
    assert torch.equal(model.l1.weight, before)


@pytest.mark.parametrize("method", ["random", "dense"])
def test_unscored_methods_re_sparsify_within_the_current_masks(method):
    torch.manual_seed(0)
    model, batch = Trunk(), _batch()
    sparsify(model, [batch], LOSSES, sparsity=0.5, method="disparse_static")
    old = get_masks(model)
    result = sparsify(model, [batch], LOSSES, sparsity=0.7 if method == "random" else 0.0, method=method, seed=3)
    revived = sum(int((result.masks[n] & ~old[n]).sum()) for n in old)
    assert revived == 0
    assert sparsity_report(model)["sparsity"] == pytest.approx(result.achieved_sparsity)
    if method == "random":
        assert result.achieved_sparsity == pytest.approx(0.7, abs=0.02)


def test_random_masks_without_earlier_masks_are_the_same_draw_as_before():
    """The first random pruning of a net did not change: same seed, same masks as a fresh draw."""
    one, two = Trunk(), Trunk()
    two.load_state_dict(one.state_dict())
    first = sparsify(one, [_batch()], LOSSES, sparsity=0.6, method="random", seed=5).masks
    again = sparsify(two, [_batch()], LOSSES, sparsity=0.6, method="random", seed=5).masks
    assert all(torch.equal(first[n], again[n]) for n in first)


def test_a_loss_that_is_not_a_scalar_is_one_error_naming_the_task():
    losses = {"a": F.cross_entropy, "b": lambda o, t: F.mse_loss(o, t, reduction="none")}
    with pytest.raises(ValueError, match=r"loss for task 'b' must return a scalar tensor, got shape \(8, 1\)"):
        sparsify(Trunk(), [_batch()], losses, sparsity=0.5, method="disparse_static")
    model = Trunk()
    sp = DynamicSparsifier(model, torch.optim.SGD(model.parameters(), 0.1), losses, sparsity=0.5, t_end=10,
                           delta_t=5, sample_batch=_batch())
    with pytest.raises(ValueError, match="loss for task 'b' must return a scalar tensor"):
        sp.forward_backward(1, *_batch())


class NoPrunable(nn.Module):
    def __init__(self):
        super().__init__()
        self.p, self.q = nn.Parameter(torch.randn(6, 3)), nn.Parameter(torch.randn(6, 1))

    def forward(self, x):
        return {"a": x @ self.p, "b": x @ self.q}


@pytest.mark.parametrize("kwargs, words", [
    ({"sparsity": "0.5"}, "sparsity must be in [0, 1), got sparsity='0.5'"),
    ({"t_end": None}, "t_end must be a positive integer, got t_end=None"),
    ({"delta_t": 2.5}, "delta_t must be a positive integer, got delta_t=2.5"),
    ({"delta_t": 0}, "delta_t must be a positive integer, got delta_t=0"),
    ({"model": NoPrunable()}, "model has no prunable tensors"),
])
def test_dynamic_sparsifier_arguments_are_checked_up_front(kwargs, words):
    model = kwargs.pop("model", None) or Trunk()
    args = dict(sparsity=0.5, t_end=10, delta_t=5, sample_batch=_batch()) | kwargs
    with pytest.raises(ValueError) as err:
        DynamicSparsifier(model, torch.optim.SGD(model.parameters(), 0.1), LOSSES, **args)
    assert words in str(err.value)


def test_dynamic_sparsifier_needs_one_loss_and_one_target_per_task():
    model = Trunk()
    sp = DynamicSparsifier(model, torch.optim.SGD(model.parameters(), 0.1), LOSSES, sparsity=0.5, t_end=10,
                           delta_t=5, sample_batch=_batch())
    x, y = _batch()
    with pytest.raises(ValueError, match="batch has no target for task 'b'"):
        sp.forward_backward(1, x, {"a": y["a"]})
    with sp.recording(5):
        out = model(x)
        losses = {t: LOSSES[t](out[t], y[t]) for t in out}
    with pytest.raises(ValueError, match=r"one loss per task \['a', 'b'\], got \['a'\]"):
        sp.backward(5, {"a": losses["a"]})                 # task b would silently get no gradient
    with pytest.raises(ValueError, match="differs in 'c'"):
        sp.backward(1, {**losses, "c": losses["a"]})


def test_folding_a_copy_leaves_the_original_masked_and_working():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    attach_masks(net, {"0.weight": torch.rand(4, 4, generator=torch.Generator().manual_seed(0)) > 0.5})
    x = torch.randn(3, 4)
    before = net(x)
    exported = fold_masks(copy.deepcopy(net))
    torch.testing.assert_close(exported(x), before)
    torch.testing.assert_close(net(x), before)                      # the original still runs, still masked
    assert not bool(get_masks(net)["0.weight"].all())


def test_no_calibration_warning_when_the_closest_count_is_reached():
    """144 prunable weights at sparsity 0.9: 14 kept is round(0.1 * 144), the best any method can do."""
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(6, 8, bias=False), nn.Linear(8, 8, bias=False)
            self.ha, self.hb = nn.Linear(8, 3, bias=False), nn.Linear(8, 1, bias=False)

        def forward(self, x):
            h = torch.tanh(self.l2(torch.tanh(self.l1(x))))
            return {"a": self.ha(h), "b": self.hb(h)}

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = sparsify(Small(), [_batch()], LOSSES, sparsity=0.9, method="disparse_static")
    assert sum(int(m.sum()) for m in result.masks.values()) == 14


def test_a_saved_masked_model_loads_into_a_fresh_one_after_attach_masks():
    """The way README gives to keep a pruned model with its masks: state_dict, then attach + load."""
    torch.manual_seed(0)
    model, (x, _) = Trunk(), _batch()
    sparsify(model, [_batch()], LOSSES, sparsity=0.7, method="disparse_static")
    saved = model.state_dict()
    fresh = Trunk()
    attach_masks(fresh, _all_true(fresh))
    fresh.load_state_dict(saved)
    assert all(torch.equal(get_masks(fresh)[n], m) for n, m in get_masks(model).items())
    for task, out in model(x).items():
        torch.testing.assert_close(fresh(x)[task], out)


def test_too_many_dense_layers_for_the_density_names_them_and_the_way_out():
    class BigStem(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)             # 216 of 360 prunable weights
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.heads = nn.ModuleDict({"a": nn.Linear(8, 4), "b": nn.Linear(8, 1)})

        def forward(self, x):
            h = F.relu(self.dw(F.relu(self.stem(x)))).mean((2, 3))
            return {t: m(h) for t, m in self.heads.items()}

    model = BigStem()
    with pytest.raises(ValueError) as err:
        DynamicSparsifier(model, torch.optim.SGD(model.parameters(), 0.1), LOSSES, sparsity=0.7, t_end=10,
                          delta_t=5, sample_batch=torch.randn(4, 3, 8, 8))
    assert "layers forced dense (stem.weight) hold 216 weights" in str(err.value)
    assert "density=0.3;" in str(err.value) and "dense_first=False" in str(err.value)


def test_a_branched_net_from_your_own_blocks_and_plain_heads():
    from disparse_core.models import MultitaskNet

    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), nn.ReLU()) for i in range(4)]
    net = MultitaskNet(blocks, {"a": nn.Conv2d(8, 4, 1), "b": nn.Conv2d(8, 1, 1)}, cutoff=2)
    x = torch.randn(2, 3, 8, 8)
    out = net(x)
    assert out["a"].shape == (2, 4, 8, 8) and out["b"].shape == (2, 1, 8, 8)
    assert torch.equal(net.branches["a"][0][0].weight, net.branches["b"][0][0].weight)   # copies start equal
    losses = {"a": F.cross_entropy, "b": F.mse_loss}
    y = {"a": torch.randint(0, 4, (2, 8, 8)), "b": torch.randn(2, 1, 8, 8)}
    result = sparsify(net, [(x, y)], losses, sparsity=0.5, method="disparse_static")
    assert result.ownership["shared.0.0.weight"] == frozenset({"a", "b"})
    assert result.ownership["branches.a.0.0.weight"] == frozenset({"a"})


def test_pruning_that_empties_a_layer_a_task_uses_is_named_in_a_warning():
    """Global magnitude ranking with one head far smaller than the rest: the head goes first."""
    torch.manual_seed(0)
    model = Trunk()
    with torch.no_grad():
        model.hb.weight.mul_(1e-3)
    with pytest.warns(RuntimeWarning, match=r"1 layer\(s\) used by a task keep no weight \(hb.weight\)"):
        result = sparsify(model, [_batch()], LOSSES, sparsity=0.7, method="magnitude")
    assert not bool(result.masks["hb.weight"].any())


def test_a_metric_of_your_own_task_is_registered_once_and_then_known_everywhere():
    from disparse_core import delta_m, register_metric
    from disparse_core.metrics import higher_is_better, metric_range

    with pytest.raises(ValueError, match="unknown metric 'tags.f1_macro'"):
        delta_m({"tags.f1_macro": 0.5}, {"tags.f1_macro": 0.6})
    register_metric("f1_macro", higher_is_better=True, low=0.0, high=1.0)
    register_metric("f1_macro", higher_is_better=True, low=0.0, high=1.0)        # again: allowed
    assert higher_is_better("tags.f1_macro") and metric_range("tags.f1_macro") == (0.0, 1.0)
    assert delta_m({"tags.f1_macro": 0.5, "seg.miou": 0.5}, {"tags.f1_macro": 0.4, "seg.miou": 0.5}) == \
        pytest.approx(12.5)                         # +25 % on tags, 0 on seg, averaged over the tasks
    register_metric("latency_ms", higher_is_better=False)
    assert metric_range("x.latency_ms") == (0.0, math.inf)
    with pytest.raises(ValueError, match="'miou' is already known as higher-is-better"):
        register_metric("miou", higher_is_better=False)
    with pytest.raises(ValueError, match="needs low < high"):
        register_metric("f2", higher_is_better=True, low=1.0, high=0.0)
    with pytest.raises(ValueError, match="is not a metric name"):
        register_metric("tags.f1", higher_is_better=True)


def test_evaluating_a_task_the_model_or_the_batch_lacks_is_one_error():
    from types import SimpleNamespace

    from disparse_core.metrics import evaluate

    x, y = _batch()
    tasks = {"a": SimpleNamespace(kind="classification"), "c": SimpleNamespace(kind="regression")}
    with pytest.raises(ValueError, match=r"the model's outputs have no task 'c' \(they have \['a', 'b'\]\)"):
        evaluate(Trunk(), [(x, y)], tasks)
    with pytest.raises(ValueError, match=r"the batch's targets have no task 'b'"):
        evaluate(Trunk(), [(x, {"a": y["a"]})], {"a": tasks["a"], "b": SimpleNamespace(kind="regression")})


def test_evaluation_builds_no_autograd_graph():
    from types import SimpleNamespace

    from disparse_core.metrics import evaluate

    seen = []

    class Spy(Trunk):
        def forward(self, x):
            out = super().forward(x)
            seen.append(any(o.requires_grad for o in out.values()))
            return out

    x, y = _batch()
    evaluate(Spy(), [(x, y)], {"a": SimpleNamespace(kind="classification"), "b": SimpleNamespace(kind="regression")})
    assert seen == [False]
