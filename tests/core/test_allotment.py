"""Scoring and allotment options shared by every one-shot criterion: exact targets, the layer floor,
fixed per-layer budgets, re-drawn scoring weights that leave the model's own weights alone, and the
same path for DiSparse and its collapsed baselines."""

import math

import pytest
import torch

from disparse_core.allotment import allotted_keep, fixed_layer_counts, layer_floors, settle_counts
from disparse_core.decision import calibrated_keep
from disparse_core.erk import erk_densities, mask_counts
from disparse_core.masks import get_masks, prunable_weights, weights_redrawn
from disparse_core.sparsify import sparsify
from disparse_core.trial import TrialConfig
from toy_models import MultiHeadNet, losses_for, make_batches

TASKS = ("seg", "cls", "reg")
METHODS = ("disparse_static", "snip", "random")


def _model(seed=0):
    torch.manual_seed(seed)
    return MultiHeadNet(TASKS, width=8)


def _kept(masks):
    return sum(int(m.sum()) for m in masks.values())


def _problem(seed=0):
    """Two tasks sharing a big layer whose scores are tiny, each with a small private layer."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"shared": (40, 40), "a_head": (4, 10), "b_head": (4, 10)}
    own = {"shared": frozenset({"a", "b"}), "a_head": frozenset({"a"}), "b_head": frozenset({"b"})}
    scores = {"a": {"shared": torch.rand(40, 40, generator=g) * 1e-3, "a_head": torch.rand(4, 10, generator=g)},
              "b": {"shared": torch.rand(40, 40, generator=g) * 1e-3, "b_head": torch.rand(4, 10, generator=g)}}
    return scores, own, shapes


def test_global_without_floor_is_the_calibrated_decision():
    scores, own, shapes = _problem()
    masks, keep, k, achieved = allotted_keep(scores, own, 0.9, shapes=shapes, allotment="global", floor=0.0)
    ref_masks, ref_keep, ref_k, ref_achieved = calibrated_keep(scores, own, 0.9, exact=True)
    assert all(torch.equal(masks[n], ref_masks[n]) for n in own)
    assert k == ref_k and achieved == ref_achieved


def test_floor_saves_a_starved_layer_and_keeps_the_total_exact():
    scores, own, shapes = _problem()
    bare, _, _, _ = allotted_keep(scores, own, 0.96, shapes=shapes, floor=0.0)
    assert int(bare["shared"].sum()) == 0            # the global ranking empties the big layer
    masks, _, _, achieved = allotted_keep(scores, own, 0.96, shapes=shapes, floor=0.2)
    floor = math.ceil(0.2 * 0.04 * 1600)
    assert int(masks["shared"].sum()) == floor
    assert _kept(masks) == round(0.04 * 1680)
    assert achieved == pytest.approx(1 - round(0.04 * 1680) / 1680)


@pytest.mark.parametrize("allotment", ["erk", "uniform"])
def test_fixed_budgets_are_met_layer_by_layer(allotment):
    scores, own, shapes = _problem()
    masks, keep, _, _ = allotted_keep(scores, own, 0.9, shapes=shapes, allotment=allotment, floor=0.0)
    counts = fixed_layer_counts(own, shapes, round(0.1 * 1680), allotment)
    assert {n: int(m.sum()) for n, m in masks.items()} == counts
    assert sum(counts.values()) == round(0.1 * 1680)
    if allotment == "uniform":
        assert counts["shared"] == 160 and counts["a_head"] == 4
    else:   # ERK gives the small heads a higher density than the big layer
        assert counts["a_head"] / 40 > counts["shared"] / 1600
    # inside a layer the union of the tasks' keep-sets is the mask (DiSparse decides which weights)
    assert torch.equal(keep["a"]["shared"] | keep["b"]["shared"], masks["shared"])


def test_layer_normalised_scores_let_a_small_scale_layer_compete():
    scores, own, shapes = _problem()
    g, _, _, _ = allotted_keep(scores, own, 0.96, shapes=shapes, allotment="global", floor=0.0)
    n, _, _, _ = allotted_keep(scores, own, 0.96, shapes=shapes, allotment="layer", floor=0.0)
    assert int(g["shared"].sum()) == 0 < int(n["shared"].sum())
    assert _kept(g) == _kept(n) == round(0.04 * 1680)


def test_floors_and_settling_are_exact():
    own = {"x": frozenset({"t"}), "y": frozenset({"t"}), "dead": frozenset()}
    shapes = {"x": (100,), "y": (10,), "dead": (50,)}
    floors = layer_floors(own, shapes, 0.9, 0.5)
    assert floors == {"x": 5, "y": 1}
    settled = settle_counts({"x": 20, "y": 0}, {"x": 5, "y": 3}, {"x": 100, "y": 10}, 20)
    assert settled == {"x": 17, "y": 3}
    with pytest.raises(ValueError, match="floor must be a number in"):
        layer_floors(own, shapes, 0.9, 1.5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("allotment", ["global", "layer", "iterative", "erk", "uniform"])
@pytest.mark.parametrize("score_on", ["weights", "reinit"])
def test_every_method_takes_every_option_and_hits_the_target(method, allotment, score_on):
    model = _model()
    result = sparsify(model, make_batches(TASKS, n=2), losses_for(TASKS), sparsity=0.9, method=method,
                      allotment=allotment, score_on=score_on, floor=0.1, rounds=3, seed=4)
    total = sum(p.numel() for p in prunable_weights(model).values())
    assert _kept(result.masks) == round(0.1 * total)
    for name, m in result.masks.items():
        n = m.numel()
        assert int(m.sum()) >= min(n, max(1, math.ceil(0.1 * 0.1 * n))), name


def test_uniform_allotment_gives_every_layer_the_target_density_for_every_criterion():
    for method in METHODS:
        result = sparsify(_model(), make_batches(TASKS, n=2), losses_for(TASKS), sparsity=0.8,
                          method=method, allotment="uniform")
        for name, m in result.masks.items():
            assert abs(int(m.sum()) - 0.2 * m.numel()) < 1, (method, name)


def test_erk_allotment_matches_random_erk_counts():
    """random with allotment erk has the per-layer counts of the ERK budgets the scored methods use."""
    model = _model()
    rnd = sparsify(model, make_batches(TASKS, n=1), losses_for(TASKS), sparsity=0.9, method="random",
                   allotment="erk", erk_power=0.9)
    shapes = {n: tuple(m.shape) for n, m in rnd.masks.items()}
    expected = mask_counts(shapes, erk_densities(shapes, 0.1, power=0.9))
    assert {n: int(m.sum()) for n, m in rnd.masks.items()} == expected


def test_reinit_scores_another_draw_and_leaves_the_weights_alone():
    model = _model()
    before = {n: p.detach().clone() for n, p in prunable_weights(model).items()}
    batches, losses = make_batches(TASKS, n=2), losses_for(TASKS)
    own = sparsify(_model(), batches, losses, sparsity=0.9, method="disparse_static").masks
    redrawn = sparsify(model, batches, losses, sparsity=0.9, method="disparse_static", score_on="reinit",
                       seed=1).masks
    again = sparsify(_model(), batches, losses, sparsity=0.9, method="disparse_static", score_on="reinit",
                     seed=1).masks
    assert any(not torch.equal(own[n], redrawn[n]) for n in own)
    assert all(torch.equal(redrawn[n], again[n]) for n in own)          # seeded
    for name, p in prunable_weights(model).items():                     # only masked positions zeroed
        assert torch.equal(p.detach()[redrawn[name]], before[name][redrawn[name]]), name


def test_weights_redrawn_restores_on_error_and_is_xavier_scaled():
    model = _model()
    before = {n: p.detach().clone() for n, p in prunable_weights(model).items()}
    with pytest.raises(RuntimeError):
        with weights_redrawn(model, seed=3):
            for name, p in prunable_weights(model).items():
                fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(p)
                if p.numel() > 500:
                    assert float(p.std()) == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.15)
            raise RuntimeError("stop")
    assert all(torch.equal(p.detach(), before[n]) for n, p in prunable_weights(model).items())
    assert all(bool(m.all()) for m in get_masks(model).values())


def test_iterative_with_one_round_is_global():
    batches, losses = make_batches(TASKS, n=2), losses_for(TASKS)
    a = sparsify(_model(), batches, losses, sparsity=0.9, method="snip", allotment="iterative", rounds=1)
    b = sparsify(_model(), batches, losses, sparsity=0.9, method="snip", allotment="global")
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)


def test_bad_options_are_one_line_errors():
    batches, losses = make_batches(TASKS, n=1), losses_for(TASKS)
    for options, match in [({"allotment": "ranked"}, "allotment must be one of"),
                           ({"score_on": "xavier"}, "score_on must be"),
                           ({"floor": -0.1}, "floor must be a number in"),
                           ({"rounds": 0}, "rounds must be a positive integer")]:
        with pytest.raises(ValueError, match=match):
            sparsify(_model(), batches, losses, sparsity=0.9, method="snip", **options)
    for key, value, match in [("allotment", "ranked", "allotment"), ("score_on", 1, "score_on"),
                              ("layer_floor", 2.0, "layer_floor"), ("score_rounds", 0, "score_rounds")]:
        with pytest.raises(ValueError, match=match):
            TrialConfig.from_dict({key: value})
