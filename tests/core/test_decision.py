"""The unanimous decision and its calibration, on hand-made scores (no model, no training)."""

import pytest
import torch

from disparse_core.decision import calibrated_keep, unanimous_keep

OWN = {"shared": frozenset({"a", "b"}), "head_a": frozenset({"a"}), "head_b": frozenset({"b"})}


def _disagreeing_scores():
    # the tasks rank the shared weights in opposite orders; each head has its own scores
    return {
        "a": {"shared": torch.tensor([8., 7., 6., 5., 4., 3., 2., 1.]),
              "head_a": torch.tensor([[7.5, 0.1], [0.2, 6.5]])},
        "b": {"shared": torch.tensor([1., 2., 3., 4., 5., 6., 7., 8.]),
              "head_b": torch.tensor([[0.3, 7.5], [0.4, 0.5]])},
    }


def test_kept_set_is_the_union_of_the_tasks_top_sets():
    # each task owns 12 weights; k = 0.25 keeps its top 3
    masks, keep = unanimous_keep(_disagreeing_scores(), OWN, 0.25)
    assert keep["a"]["shared"].tolist() == [True, True, False, False, False, False, False, False]
    assert keep["a"]["head_a"].tolist() == [[True, False], [False, False]]
    assert keep["b"]["shared"].tolist() == [False, False, False, False, False, False, True, True]
    assert keep["b"]["head_b"].tolist() == [[False, True], [False, False]]
    assert masks["shared"].tolist() == [True, True, False, False, False, False, True, True]
    assert torch.equal(masks["head_a"], keep["a"]["head_a"])
    assert torch.equal(masks["head_b"], keep["b"]["head_b"])
    assert set(keep["a"]) == {"shared", "head_a"} and set(keep["b"]) == {"shared", "head_b"}


def test_ranking_is_global_over_the_tasks_tensors():
    # task a's head holds its two largest scores, so a layer-wise top-k would differ
    scores = _disagreeing_scores()
    scores["a"]["head_a"] = torch.tensor([[100., 90.], [0.0, 0.0]])
    _, keep = unanimous_keep(scores, OWN, 0.25)
    assert int(keep["a"]["head_a"].sum()) == 2
    assert int(keep["a"]["shared"].sum()) == 1 and bool(keep["a"]["shared"][0])


def test_ties_are_broken_by_position_and_repeatably():
    own = {"l1": frozenset({"a"}), "l2": frozenset({"a"})}
    scores = {"a": {"l1": torch.ones(2, 3), "l2": torch.ones(4)}}
    masks, _ = unanimous_keep(scores, own, 0.5)  # 5 of 10 weights: the first five in model order
    assert masks["l1"].reshape(-1).tolist() == [True] * 5 + [False]
    assert not masks["l2"].any()
    masks2, _, k, achieved = calibrated_keep(scores, own, 0.3)  # keep 7
    assert masks2["l1"].all() and masks2["l2"].tolist() == [True, False, False, False]
    assert achieved == pytest.approx(0.3)
    again = calibrated_keep(scores, own, 0.3)
    assert all(torch.equal(masks2[n], again[0][n]) for n in own)


def _random_problem(seed=0, tasks=("a", "b", "c")):
    g = torch.Generator().manual_seed(seed)
    shapes = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "conv3": (64, 32, 3, 3)}
    own = {n: frozenset(tasks) for n in shapes}
    for t in tasks:
        shapes[f"head_{t}"] = (10, 64)
        own[f"head_{t}"] = frozenset({t})
    scores = {t: {n: torch.rand(shapes[n], generator=g) for n, o in own.items() if t in o} for t in tasks}
    return scores, own


@pytest.mark.parametrize("target", [0.0, 0.5, 0.7, 0.9, 0.95, 0.99])
def test_calibration_hits_the_target_sparsity(target):
    scores, own = _random_problem()
    masks, keep, k, achieved = calibrated_keep(scores, own, target)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert achieved == pytest.approx(1 - kept / total)
    assert abs(achieved - target) < 0.001
    # the union keeps more than k of each task's weights, so the calibrated k is below the density
    if 0 < target:
        assert k < 1 - target
    # the reported k reproduces the same decision
    again, _ = unanimous_keep(scores, own, k)
    assert all(torch.equal(again[n], masks[n]) for n in own)


def test_single_task_calibration_is_a_global_top_k():
    g = torch.Generator().manual_seed(3)
    own = {"l1": frozenset({"t"}), "l2": frozenset({"t"})}
    scores = {"t": {"l1": torch.rand(50, generator=g), "l2": torch.rand(5, 10, generator=g)}}
    masks, _, _, achieved = calibrated_keep(scores, own, 0.8)
    flat = torch.cat([scores["t"]["l1"], scores["t"]["l2"].reshape(-1)])
    top = torch.zeros(100, dtype=torch.bool)
    top[torch.topk(flat, 20).indices] = True
    assert torch.equal(torch.cat([masks["l1"], masks["l2"].reshape(-1)]), top)
    assert achieved == pytest.approx(0.8)


def test_unowned_tensor_is_pruned_and_counts_in_the_denominator():
    scores, own = _random_problem(tasks=("a", "b"))
    own = dict(own, dead=frozenset())
    alive = {n: torch.ones(s.shape, dtype=torch.bool) for t in scores for n, s in scores[t].items()}
    alive["dead"] = torch.ones(100, dtype=torch.bool)
    masks, keep, _, achieved = calibrated_keep(scores, own, 0.5, alive=alive)
    assert not masks["dead"].any()
    assert all("dead" not in k for k in keep.values())
    assert abs(achieved - 0.5) < 0.001
    with pytest.raises(ValueError, match="'dead' has no owner"):
        calibrated_keep(scores, own, 0.5)


def test_weights_outside_alive_are_never_kept():
    scores, own = _random_problem()
    g = torch.Generator().manual_seed(5)
    alive = {n: torch.rand(scores["a"][n].shape if n in scores["a"] else scores["b"].get(
        n, scores["c"].get(n)).shape, generator=g) > 0.3 for n in own}
    masks, _, _, achieved = calibrated_keep(scores, own, 0.8, alive=alive)
    for n in own:
        assert not (masks[n] & ~alive[n]).any()
    assert abs(achieved - 0.8) < 0.001


def test_unreachable_target_warns_and_returns_the_closest():
    scores, own = _random_problem(tasks=("a", "b"))
    alive = {n: torch.zeros(s.shape, dtype=torch.bool) for t in scores for n, s in scores[t].items()}
    with pytest.warns(RuntimeWarning, match="misses the target"):
        masks, _, _, achieved = calibrated_keep(scores, own, 0.5, alive=alive)
    assert achieved == 1.0 and not any(m.any() for m in masks.values())


def test_decision_rejects_bad_input():
    scores, own = _random_problem()
    with pytest.raises(ValueError, match="target sparsity must be in \\[0, 1\\), got 1.0"):
        calibrated_keep(scores, own, 1.0)
    with pytest.raises(ValueError, match="keep_fraction must be in \\[0, 1\\], got 1.5"):
        unanimous_keep(scores, own, 1.5)
    wrong = {"a": dict(scores["a"], head_b=torch.rand(10, 64))}
    with pytest.raises(ValueError, match="does not own"):
        unanimous_keep(wrong, own, 0.5)
    missing = {t: s for t, s in scores.items() if t != "c"}
    with pytest.raises(ValueError, match="no 'c' score"):
        unanimous_keep(missing, own, 0.5)
