"""The sparsify facade: every method hits its target, masks hold through training, bad input fails."""

import itertools

import pytest
import torch

from disparse_core.masks import fold_masks, get_masks, prunable_weights, sparsity_report
from disparse_core.schedules import cubic_sparsity
from disparse_core.scoring import COLLAPSED_TASK
from disparse_core.sparsify import GradualPruner, sparsify
from toy_models import (BranchedNet, MultiHeadNet, NotADictNet, losses_for, make_batches,  # noqa: F401
                        single_thread, total_loss)

TASKS = ("seg", "cls", "reg")


def _model(kind="shared", seed=0, **kw):
    torch.manual_seed(seed)
    if kind == "shared":
        return MultiHeadNet(TASKS, width=8, **kw)
    return BranchedNet(TASKS, cutoff=2, width=6)


def _train(model, optimizer, batches, losses, steps):
    for batch in itertools.islice(itertools.cycle(batches), steps):
        optimizer.zero_grad()
        total_loss(model, batch, losses).backward()
        optimizer.step()


def _assert_masked_weights_are_zero(model, masks):
    # effective weights (what forward uses) ...
    for name, module in ((n, m) for n, m in model.named_modules() if hasattr(m, "parametrizations")):
        w = module.weight
        assert torch.all(w[~masks[f"{name}.weight"]] == 0), name
    # ... and the plain weights once the masks are folded in
    fold_masks(model)
    for name, w in prunable_weights(model).items():
        assert torch.all(w[~masks[name]] == 0), name
    assert sparsity_report(model)["nonzero"] <= sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("sparsity, kind", [(0.5, "shared"), (0.7, "shared"), (0.9, "shared"),
                                            (0.95, "shared"), (0.9, "branched"), (0.95, "branched")])
def test_static_hits_the_target_and_masks_hold_through_adam(sparsity, kind):
    model = _model(kind)
    batches, losses = make_batches(TASKS, n=3), losses_for(TASKS)
    result = sparsify(model, batches, losses, sparsity=sparsity, method="disparse_static")
    assert result.criterion == "snip" and result.target_sparsity == sparsity
    assert abs(result.achieved_sparsity - sparsity) <= 0.001
    assert sparsity_report(model)["sparsity"] == pytest.approx(result.achieved_sparsity)
    assert set(result.task_keep) == set(TASKS)
    masks = get_masks(model)
    assert all(torch.equal(masks[n], result.masks[n]) for n in masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
    _train(model, opt, batches, losses, 50)
    _assert_masked_weights_are_zero(model, result.masks)


@pytest.mark.parametrize("sparsity, criterion", [(0.5, "magnitude"), (0.7, "magnitude"),
                                                 (0.9, "magnitude"), (0.95, "magnitude"),
                                                 (0.9, "taylor")])
def test_pretrained_hits_the_target_and_masks_hold_through_finetuning(sparsity, criterion):
    model = _model()
    batches, losses = make_batches(TASKS, n=3), losses_for(TASKS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
    _train(model, opt, batches, losses, 10)  # "pretrain"; Adam's moments are non-zero everywhere
    result = sparsify(model, batches, losses, sparsity=sparsity, method="disparse_pretrained",
                      criterion=criterion)
    assert abs(result.achieved_sparsity - sparsity) <= 0.001
    _train(model, opt, batches, losses, 50)  # finetune with the same optimizer
    _assert_masked_weights_are_zero(model, result.masks)


def test_snip_baseline_equals_a_single_top_k_of_the_summed_loss():
    model = _model()
    batches, losses = make_batches(TASKS, n=2), losses_for(TASKS)
    lam = {"seg": 1.0, "cls": 2.0, "reg": 20.0}
    # by hand: |w * d(Σ λ L)/dw| summed over batches, then one global top-k
    weights = prunable_weights(model)
    score = {n: torch.zeros_like(p) for n, p in weights.items()}
    for b in batches:
        model.zero_grad()
        total_loss(model, b, losses, lam).backward()
        for n, p in weights.items():
            score[n] += (p.detach() * p.grad).abs()
    model.zero_grad(set_to_none=True)
    flat = torch.cat([s.reshape(-1) for s in score.values()])
    keep = round(0.2 * flat.numel())
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[torch.topk(flat, keep).indices] = True

    result = sparsify(model, batches, losses, sparsity=0.8, method="snip", loss_weights=lam)
    got = torch.cat([result.masks[n].reshape(-1) for n in weights])
    assert torch.equal(got, expected)
    assert list(result.task_keep) == [COLLAPSED_TASK]


def test_magnitude_baseline_is_a_global_top_k_of_abs_weights():
    model = _model()
    batches, losses = make_batches(TASKS, n=1), losses_for(TASKS)
    weights = prunable_weights(model)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in weights.values()])
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[torch.topk(flat, round(0.1 * flat.numel())).indices] = True
    result = sparsify(model, batches, losses, sparsity=0.9, method="magnitude")
    assert torch.equal(torch.cat([result.masks[n].reshape(-1) for n in weights]), expected)


def test_disparse_keeps_more_than_a_collapsed_top_k_would_give_each_task():
    # the union of the tasks' keep-sets differs from the summed-loss top-k
    batches, losses = make_batches(TASKS, n=2), losses_for(TASKS)
    ours = sparsify(_model(), batches, losses, sparsity=0.9, method="disparse_static")
    snip = sparsify(_model(), batches, losses, sparsity=0.9, method="snip")
    assert any(not torch.equal(ours.masks[n], snip.masks[n]) for n in ours.masks)
    assert ours.keep_fraction < 0.1  # union overshoots k, calibration compensates
    assert set(ours.mask_iou()) == {n for n, o in ours.ownership.items() if len(o) >= 2}


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_random_hits_the_target_and_is_seeded(distribution, sparsity):
    batches, losses = make_batches(TASKS, n=1), losses_for(TASKS)
    a = sparsify(_model(), batches, losses, sparsity=sparsity, method="random", distribution=distribution,
                 seed=1)
    b = sparsify(_model(), batches, losses, sparsity=sparsity, method="random", distribution=distribution,
                 seed=1)
    c = sparsify(_model(), batches, losses, sparsity=sparsity, method="random", distribution=distribution,
                 seed=2)
    assert abs(a.achieved_sparsity - sparsity) <= 0.001
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert any(not torch.equal(a.masks[n], c.masks[n]) for n in a.masks)
    layer = {n: 1 - float(m.float().mean()) for n, m in a.masks.items()}
    if distribution == "uniform":
        assert all(abs(s - sparsity) < 0.02 for s in layer.values())
    else:  # ERK: the small first conv is denser than the large last conv
        assert layer["trunk.0.0.weight"] < layer["trunk.2.0.weight"]


@pytest.mark.parametrize("method, criterion", [("disparse_pretrained", "magnitude"), ("disparse_static", "snip"),
                                               ("snip", None), ("random", None)])
def test_sparsify_changes_masks_only_not_batchnorm_statistics(method, criterion):
    """The scoring and ownership forwards run in train mode; a pretrained net's BatchNorm running
    statistics (and batch counters) must be what training left, before finetuning and evaluation."""
    tasks = ("seg", "cls", "reg")
    model = BranchedNet(tasks)
    model.train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    assert any("running_mean" in n for n in before)
    sparsify(model, make_batches(tasks, n=3), losses_for(tasks), sparsity=0.8, method=method,
             criterion=criterion)
    after = dict(model.named_buffers())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert get_masks(model)


def test_dense_keeps_everything():
    model = _model()
    result = sparsify(model, make_batches(TASKS, n=1), losses_for(TASKS), sparsity=0.0, method="dense")
    assert result.achieved_sparsity == 0.0 and all(m.all() for m in result.masks.values())
    assert sparsity_report(model)["sparsity"] == 0.0


def test_dead_layer_is_pruned_and_the_target_still_met():
    model = _model(dead_layer=True)
    result = sparsify(model, make_batches(TASKS, n=2), losses_for(TASKS), sparsity=0.7)
    assert not result.masks["unused.weight"].any()
    assert abs(result.achieved_sparsity - 0.7) <= 0.001


def test_score_batches_takes_the_first_n_of_any_iterable():
    batches, losses = make_batches(TASKS, n=5), losses_for(TASKS)
    consumed = []

    def stream():
        for b in batches:
            consumed.append(1)
            yield b

    a = sparsify(_model(), stream(), losses, sparsity=0.8, score_batches=2)
    b = sparsify(_model(), batches[:2], losses, sparsity=0.8)
    assert len(consumed) == 2
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)


def test_gradual_pruner_follows_the_cubic_schedule_and_never_regrows():
    model = _model()
    batches, losses = make_batches(TASKS, n=2), losses_for(TASKS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
    schedule = dict(initial=0.0, final=0.9, start=5, n=3, interval=5)
    pruner = GradualPruner(model, losses, final_sparsity=0.9, initial_sparsity=0.0, start=5,
                           prune_steps=3, interval=5, method="disparse_pretrained")
    previous = get_masks(model)
    pruned_at = []
    for step in range(25):
        result = pruner.maybe_prune(step, batches)
        if result is not None:
            pruned_at.append(step)
            assert abs(result.achieved_sparsity - cubic_sparsity(step, **schedule)) <= 0.001
            assert not any((result.masks[n] & ~previous[n]).any() for n in previous)
            previous = result.masks
        _train(model, opt, batches, losses, 1)
    assert pruned_at == [10, 15, 20]  # step 5 is the schedule's start at 0 % sparsity
    assert pruner.history[-1].achieved_sparsity == pytest.approx(0.9, abs=0.001)
    _assert_masked_weights_are_zero(model, previous)


def test_bad_input_raises_one_line_value_errors():
    batches, losses = make_batches(TASKS, n=1), losses_for(TASKS)
    cases = [
        (dict(sparsity=1.0), "sparsity must be in [0, 1), got sparsity=1.0"),
        (dict(sparsity=-0.1), "sparsity must be in [0, 1), got sparsity=-0.1"),
        (dict(sparsity=0.5, method="prune_it"), "unknown method 'prune_it'"),
        (dict(sparsity=0.5, criterion="fisher"), "unknown criterion 'fisher'"),
        (dict(sparsity=0.5, method="snip", criterion="magnitude"),
         "criterion 'magnitude' not allowed for method 'snip'"),
        (dict(sparsity=0.5, method="random", criterion="snip"),
         "criterion 'snip' not allowed for method 'random'"),
        (dict(sparsity=0.5, n_batches=3), "unknown option 'n_batches'"),
        (dict(sparsity=0.5, method="random", distribution="gauss"), "distribution must be"),
        (dict(sparsity=0.5, loss_weights={"depth": 1.0}), "loss weight given for unknown task 'depth'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as err:
            sparsify(_model(), batches, losses, **kwargs)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no batches given"):
        sparsify(_model(), [], losses, sparsity=0.5)
    with pytest.raises(ValueError, match="no batches given"):
        sparsify(_model(), iter([]), losses, sparsity=0.5)
    with pytest.raises(ValueError, match="task 'reg' has no loss"):
        sparsify(_model(), batches, losses_for(("seg", "cls")), sparsity=0.5)
    with pytest.raises(ValueError, match="must return a non-empty dict"):
        sparsify(NotADictNet(), batches, losses, sparsity=0.5)
    with pytest.raises(ValueError, match="batch must be"):
        sparsify(_model(), [torch.zeros(2, 3, 8, 8)], losses, sparsity=0.5)
