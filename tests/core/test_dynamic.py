"""DynamicSparsifier: DiSparse dynamic sparse training and RigL (the same class, tasks collapsed)."""

import copy
import doctest
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import disparse_core.dynamic as dynamic_module
from disparse_core.dynamic import COLLAPSED_TASK, DynamicSparsifier, merge_round_robin
from disparse_core.masks import get_masks, prunable_weights
from disparse_core.schedules import drop_fraction


class TwoTaskNet(nn.Module):
    """Shared conv trunk, one linear head per task. ``same_head``: both tasks read one head's output
    (identical tasks when their targets are identical too)."""

    def __init__(self, same_head: bool = False, dead_layer: bool = False):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.same_head = same_head
        self.heads = nn.ModuleDict({"a": nn.Linear(16, 4), "b": nn.Linear(16, 4)})
        self.unused = nn.Linear(5, 5) if dead_layer else None

    def forward(self, x):
        h = self.trunk(x).mean(dim=(2, 3))
        if self.same_head:
            out = self.heads["a"](h)
            return {"a": out, "b": out}
        return {t: head(h) for t, head in self.heads.items()}


LOSSES = {"a": F.cross_entropy, "b": F.cross_entropy}
TRUNK = ["trunk.0.weight", "trunk.3.weight", "trunk.5.weight"]


def batches(n=4, same_targets=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(8, 3, 8, 8, generator=g)
        a = torch.randint(0, 4, (8,), generator=g)
        b = a.clone() if same_targets else (3 - a)  # disagreeing tasks
        out.append((x, {"a": a, "b": b}))
    return out


def make(model_seed=0, optimizer="adam", **kw):
    torch.manual_seed(model_seed)
    model = TwoTaskNet(same_head=kw.pop("same_head", False), dead_layer=kw.pop("dead_layer", False))
    params = list(model.parameters())
    opt = (torch.optim.Adam(params, lr=1e-2) if optimizer == "adam"
           else torch.optim.SGD(params, lr=1e-2, momentum=0.9))
    settings = dict(sparsity=0.8, t_end=30, delta_t=5, seed=0)
    settings.update(kw)
    if "ownership" not in settings:
        settings["sample_batch"] = batches(1)[0]
    return model, opt, DynamicSparsifier(model, opt, LOSSES, **settings)


def train(model, opt, sp, data, steps, start=0, on_mask_change=None):
    """The documented loop; returns the masks after every update."""
    snapshots = []
    for step in range(start, start + steps):
        x, y = data[step % len(data)]
        opt.zero_grad(set_to_none=True)
        with sp.recording(step):
            out = model(x)
            task_losses = {t: LOSSES[t](out[t], y[t]) for t in out}
        record = sp.backward(step, task_losses)
        opt.step()
        if record is not None:
            snapshots.append(get_masks(model))
    return snapshots


def density_of(masks):
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def test_exact_mode_keeps_density_on_target_and_follows_cosine():
    model, opt, sp = make(sparsity=0.8, t_end=30, delta_t=5, alpha0=0.5)
    snaps = train(model, opt, sp, batches(), 40)
    assert [r["step"] for r in sp.history] == [5, 10, 15, 20, 25]
    for record, masks in zip(sp.history, snaps):
        assert abs(density_of(masks) - 0.2) < 1e-3
        assert abs(record["density"] - 0.2) < 1e-3
        assert record["drop_fraction"] == pytest.approx(0.25 * (1 + math.cos(math.pi * record["step"] / 30)))
        assert record["dropped"] == record["grown"] > 0


def test_masks_move_before_t_end_and_freeze_after():
    model, opt, sp = make(t_end=20, delta_t=5)
    before = get_masks(model)
    train(model, opt, sp, batches(), 20)
    at_t_end = get_masks(model)
    assert any(not torch.equal(before[n], at_t_end[n]) for n in TRUNK)
    train(model, opt, sp, batches(), 30, start=20)
    after = get_masks(model)
    assert all(torch.equal(at_t_end[n], after[n]) for n in after)
    assert len(sp.history) == 3
    # masked weights stay exactly zero while training on
    for name, raw in prunable_weights(model).items():
        assert not bool(raw.detach()[~after[name]].any())


def test_dense_first_keeps_first_conv_dense():
    model, opt, sp = make()
    assert sp.densities["trunk.0.weight"] == 1.0
    train(model, opt, sp, batches(), 12)
    assert bool(get_masks(model)["trunk.0.weight"].all())
    _, _, sp2 = make(dense_first=False)
    assert sp2.densities["trunk.0.weight"] < 1.0


def test_dense_first_keeps_every_task_s_first_conv_dense_when_the_net_branches_at_the_stem():
    """cutoff=0: each task has its own copy of the first conv; all copies stay dense, not just one."""
    from disparse_core.models import build_model

    model = build_model("small", {"seg": 3, "normal": 3}, cutoff=0, seed=0, width=8,
                        task_kinds={"seg": "segmentation", "normal": "normals"})
    losses = {"seg": lambda o, t: o.mean(), "normal": lambda o, t: o.mean()}
    sp = DynamicSparsifier(model, torch.optim.Adam(model.parameters()), losses, sparsity=0.9, t_end=10,
                           sample_batch=torch.randn(2, 3, 16, 16))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    firsts = {t: next(n for n in convs if t in sp.ownership[n + ".weight"]) for t in ("seg", "normal")}
    assert firsts["seg"] != firsts["normal"]
    assert all(sp.densities[n + ".weight"] == 1.0 for n in firsts.values())
    without = DynamicSparsifier(model, torch.optim.Adam(model.parameters()), losses, sparsity=0.9, t_end=10,
                                sample_batch=torch.randn(2, 3, 16, 16), dense_first=False)
    assert all(without.densities[n + ".weight"] < 1.0 for n in firsts.values())   # ERK alone would thin them


def test_union_mode_overshoots_target_when_tasks_disagree():
    model, opt, sp = make(grow="union")
    snaps = train(model, opt, sp, batches(), 26)
    assert len(snaps) == 5
    for record, masks in zip(sp.history, snaps):
        assert density_of(masks) >= 0.2 - 1e-9
        assert record["density"] == pytest.approx(density_of(masks))
    assert sp.history[0]["density"] > 0.2 + 1e-3  # proposals of a and b differ in the trunk
    assert sp.history[0]["grown"] > sp.history[0]["dropped"]


def test_union_with_identical_tasks_stays_on_target():
    # identical tasks propose identical sets: union grows exactly what was dropped
    model, opt, sp = make(grow="union", same_head=True)
    train(model, opt, sp, batches(same_targets=True), 12)
    assert all(abs(r["density"] - 0.2) < 1e-3 for r in sp.history)


def test_rigl_equals_disparse_when_tasks_are_identical():
    data = batches(same_targets=True)
    model_d, opt_d, sp_d = make(same_head=True)
    model_r, opt_r, sp_r = make(same_head=True, collapse=True)
    snaps_d = train(model_d, opt_d, sp_d, data, 16)
    snaps_r = train(model_r, opt_r, sp_r, data, 16)
    assert len(snaps_d) == 3
    for md, mr in zip(snaps_d, snaps_r):
        assert all(torch.equal(md[n], mr[n]) for n in md)
    assert set(sp_r.task_keep) == {COLLAPSED_TASK}


def test_rigl_differs_from_disparse_when_tasks_disagree():
    data = batches()
    model_d, opt_d, sp_d = make()
    model_r, opt_r, sp_r = make(collapse=True)
    # same initial masks (same seed): only the grow criterion differs
    assert all(torch.equal(a, b) for a, b in zip(get_masks(model_d).values(), get_masks(model_r).values()))
    snap_d = train(model_d, opt_d, sp_d, data, 6)[0]
    snap_r = train(model_r, opt_r, sp_r, data, 6)[0]
    assert any(not torch.equal(snap_d[n], snap_r[n]) for n in TRUNK)
    assert sp_d.history[0]["density"] == pytest.approx(sp_r.history[0]["density"])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_grown_and_dropped_weights_start_at_zero_with_fresh_optimizer_state(optimizer):
    model, opt, sp = make(optimizer=optimizer)
    data = batches()
    train(model, opt, sp, data, 5)  # steps 0..4: optimizer state exists
    params_before = [id(p) for g in opt.param_groups for p in g["params"]]
    old = get_masks(model)
    x, y = data[5 % len(data)]
    opt.zero_grad(set_to_none=True)
    with sp.recording(5):
        out = model(x)
        task_losses = {t: LOSSES[t](out[t], y[t]) for t in out}
    assert sp.backward(5, task_losses) is not None
    new = get_masks(model)
    raw = prunable_weights(model)
    changed_any = False
    for name in new:
        changed = old[name] ^ new[name]
        changed_any |= bool(changed.any())
        assert not bool(raw[name].detach()[changed].any())
        for key, value in opt.state[raw[name]].items():
            if torch.is_tensor(value) and value.shape == raw[name].shape:
                assert not bool(value[changed].any()), key
        assert not bool(raw[name].grad[~new[name]].any())  # no gradient where masked
    assert changed_any
    # in place: same parameter objects, same optimizer
    assert params_before == [id(p) for g in opt.param_groups for p in g["params"]]


def test_update_step_gradient_equals_the_summed_loss_gradient():
    model, opt, sp = make(loss_weights={"a": 1.0, "b": 3.0})
    x, y = batches()[0]
    with sp.recording(5):
        out = model(x)
        task_losses = {t: LOSSES[t](out[t], y[t]) for t in out}
    # reference: plain backward of Σλ_t L_t with the masks before the update
    before = get_masks(model)
    ref = torch.autograd.grad(task_losses["a"] + 3.0 * task_losses["b"], list(model.parameters()),
                              retain_graph=True)
    sp.backward(5, task_losses)
    after = get_masks(model)
    names = {id(p): n for n, p in prunable_weights(model).items()}
    for p, g_ref in zip(model.parameters(), ref):
        keep = torch.ones_like(p, dtype=torch.bool)
        if id(p) in names:
            keep = before[names[id(p)]] & after[names[id(p)]]
        torch.testing.assert_close(p.grad[keep], g_ref[keep])


def test_update_without_recording_is_an_error():
    model, opt, sp = make()
    x, y = batches()[0]
    out = model(x)
    with pytest.raises(ValueError, match="recording"):
        sp.backward(5, {t: LOSSES[t](out[t], y[t]) for t in out})


def test_task_keep_and_proposals():
    model, opt, sp = make()
    train(model, opt, sp, batches(), 6)
    assert set(sp.task_keep) == {"a", "b"}
    for name in TRUNK[1:]:
        ka, kb = sp.task_keep["a"][name], sp.task_keep["b"][name]
        # exact mode: the merged mask lies inside the union of the tasks' own keep-sets
        assert not bool((get_masks(model)[name] & ~(ka | kb)).any())
        assert not torch.equal(ka, kb)  # the tasks disagree
    assert "heads.b.weight" not in sp.task_keep["a"]  # a task keeps only what it owns


def test_dead_layer_keeps_its_mask():
    model, opt, sp = make(dead_layer=True, sparsity=0.7)
    assert sp.ownership["unused.weight"] == frozenset()
    before = get_masks(model)["unused.weight"]
    train(model, opt, sp, batches(), 12)
    assert torch.equal(before, get_masks(model)["unused.weight"])
    assert abs(sp.history[-1]["density"] - 0.3) < 1e-3


def test_state_dict_round_trip_resumes_identically():
    data = batches()
    model, opt, sp = make()
    train(model, opt, sp, data, 8)
    # deep copies: state_dict() tensors alias the live ones (as a checkpoint file would not)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sp.state_dict()))
    model2, opt2, sp2 = make(seed=123, model_seed=5)  # different initial masks and weights
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    sp2.load_state_dict(saved[2])
    assert sp2.history == sp.history
    assert all(torch.equal(a, b) for a, b in zip(get_masks(model).values(), get_masks(model2).values()))
    snap = train(model, opt, sp, data, 5, start=8)
    snap2 = train(model2, opt2, sp2, data, 5, start=8)
    assert all(torch.equal(snap[0][n], snap2[0][n]) for n in snap[0])


def test_ownership_given_and_bad_arguments():
    ownership = {n: frozenset({"a", "b"}) for n in TRUNK}
    ownership.update({"heads.a.weight": frozenset({"a"}), "heads.b.weight": frozenset({"b"})})
    model, opt, sp = make(ownership=ownership)
    assert sp.ownership == ownership
    with pytest.raises(ValueError, match="grow"):
        make(grow="intersection")
    with pytest.raises(ValueError, match="sparsity"):
        make(sparsity=1.0)
    with pytest.raises(ValueError, match="ownership or sample_batch"):
        DynamicSparsifier(model, opt, LOSSES, sparsity=0.5, t_end=10)


def test_merge_round_robin_alternates_between_tasks():
    a = torch.tensor([0, 1, 2, 3])
    b = torch.tensor([0, 5, 6, 7])
    # a's best (0) = b's best; then a's 2nd (1), b's 2nd (5), a's 3rd (2), ...
    assert sorted(merge_round_robin([a, b], 3, 10).tolist()) == [0, 1, 5]
    assert sorted(merge_round_robin([a, b], 4, 10).tolist()) == [0, 1, 2, 5]
    assert merge_round_robin([a], 2, 10).tolist() == [0, 1]


def test_drop_fraction_used_matches_schedule_for_linear_decay():
    model, opt, sp = make(decay="linear", alpha0=0.4, t_end=30)
    train(model, opt, sp, batches(), 30)
    for r in sp.history:
        assert r["drop_fraction"] == pytest.approx(drop_fraction(r["step"], alpha0=0.4, t_end=30, decay="linear"))


def test_module_docstring_example_runs():
    failures, tried = doctest.testmod(dynamic_module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_inferring_ownership_leaves_batchnorm_statistics_alone():
    torch.manual_seed(0)
    model = TwoTaskNet()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    opt = torch.optim.Adam(model.parameters())
    DynamicSparsifier(model, opt, LOSSES, sparsity=0.5, t_end=10, sample_batch=batches(1)[0])
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
