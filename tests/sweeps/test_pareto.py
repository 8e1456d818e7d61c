"""Pareto fronts and hypervolumes against brute force, Optuna, and hand-computed cases."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from sweeps.pareto import default_reference, dominates, hypervolume, hypervolume_history, pareto_front


def _brute_front(points, directions):
    signs = [1 if d == "minimize" else -1 for d in directions]
    pts = [[s * v for s, v in zip(signs, p)] for p in points]
    return [i for i, p in enumerate(pts)
            if not any(math.isnan(v) for v in p)
            and not any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                        for j, q in enumerate(pts) if j != i and not any(math.isnan(v) for v in q))]


def _random_directions(rng, dims):
    return [rng.choice(["maximize", "minimize"]) for _ in range(dims)]


@pytest.mark.parametrize("dims", [1, 2, 3, 4, 5])
def test_front_matches_brute_force_with_ties(dims):
    rng = random.Random(dims)
    for _ in range(40):
        n = rng.randint(1, 30)
        points = [[rng.randint(0, 4) for _ in range(dims)] for _ in range(n)]   # many ties and duplicates
        directions = _random_directions(rng, dims)
        assert pareto_front(points, directions) == _brute_front(points, directions)


def test_front_keeps_every_copy_of_a_duplicate_and_drops_nan():
    points = [(1, 2), (1, 2), (2, 1), (2, 2), (float("nan"), 0), (0.5, 3)]
    assert pareto_front(points, ["minimize", "minimize"]) == [0, 1, 2, 5]
    assert pareto_front(points, ["max", "max"]) == [3, 5]
    assert pareto_front([], ["minimize"]) == []


def test_front_of_sweep_results_compression_vs_error():
    # (compression ↑, normal.mean ↓)
    points = [(0.5, 20.0), (0.9, 22.0), (0.9, 21.0), (0.7, 20.0), (0.95, 30.0)]
    assert pareto_front(points, ["maximize", "minimize"]) == [2, 3, 4]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="directions"):
        pareto_front([(1, 2)], ["minimize"])
    with pytest.raises(ValueError, match="same"):
        pareto_front([(1, 2), (1,)], ["minimize", "minimize"])
    with pytest.raises(ValueError, match="'up' is not one of"):
        hypervolume([(1, 2)], ["up", "minimize"], [3, 3])
    with pytest.raises(ValueError, match="reference"):
        hypervolume([(1, 2)], ["minimize", "minimize"], [3])


# --- hypervolume ----------------------------------------------------------------------------------

def test_hand_computed_2d():
    mm = ["minimize", "minimize"]
    assert hypervolume([(1, 2), (2, 1)], mm, (3, 3)) == pytest.approx(3.0)      # 2 + 2 - 1
    assert hypervolume([(1, 1)], mm, (3, 3)) == pytest.approx(4.0)
    assert hypervolume([(1, 1), (2, 2), (1, 1)], mm, (3, 3)) == pytest.approx(4.0)  # dominated, duplicate
    assert hypervolume([(3, 1), (4, 0)], mm, (3, 3)) == 0.0                       # on/outside the reference
    assert hypervolume([], mm, (3, 3)) == 0.0
    # maximise compression, minimise error: reference (0, 30)
    assert hypervolume([(0.9, 20.0), (0.5, 10.0)], ["maximize", "minimize"], (0.0, 30.0)) == \
        pytest.approx(0.9 * 10 + 0.5 * 10)                  # the second adds [0, 0.5] x [10, 20]


def test_hand_computed_3d_and_1d():
    mmm = ["minimize"] * 3
    # two unit-offset boxes from the origin to (2, 2, 2): 4 + 4 - overlap 2
    assert hypervolume([(0, 1, 0), (1, 0, 0)], mmm, (2, 2, 2)) == pytest.approx(6.0)
    # an L-shape of three unit cubes of a 2x2x1 slab plus a tower
    assert hypervolume([(0, 0, 1), (1, 1, 0)], mmm, (2, 2, 2)) == pytest.approx(4 + 1)
    assert hypervolume([(3,), (1,), (2,)], ["minimize"], (5,)) == pytest.approx(4.0)


@pytest.mark.parametrize("dims", [2, 3, 4, 5])
def test_hypervolume_matches_optuna(dims):
    # optuna._hypervolume is private; this test uses it only to cross-check (Optuna 5.0).
    from optuna._hypervolume import compute_hypervolume
    rng = np.random.default_rng(dims)
    for n in (1, 3, 10, 30):
        directions = [("maximize", "minimize")[k % 2] for k in range(dims)]
        points = rng.random((n, dims))
        points[: n // 3] = np.round(points[: n // 3], 1)        # some ties
        reference = [-0.1 if d == "maximize" else 1.1 for d in directions]
        signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
        expected = compute_hypervolume(points * signs, np.array(reference) * signs)
        assert hypervolume(points.tolist(), directions, reference) == pytest.approx(expected, rel=1e-9)


def test_hypervolume_equals_inclusion_exclusion_on_small_sets():
    rng = random.Random(7)
    for _ in range(25):
        dims, n = rng.randint(2, 4), rng.randint(1, 5)
        points = [tuple(rng.random() for _ in range(dims)) for _ in range(n)]
        ref = tuple([1.0] * dims)
        total = 0.0
        for k in range(1, n + 1):
            for subset in itertools.combinations(points, k):
                corner = [max(c) for c in zip(*subset)]
                total += (-1) ** (k + 1) * math.prod(r - c for r, c in zip(ref, corner))
        assert hypervolume(points, ["minimize"] * dims, ref) == pytest.approx(total, rel=1e-9, abs=1e-12)


def test_default_reference_rule():
    points = [(0.5, 20.0), (0.9, 22.0), (0.7, 21.0)]
    ref = default_reference(points, ["maximize", "minimize"])
    assert ref == pytest.approx([0.5 - 0.04, 22.0 + 0.2])            # worst ± 10 % of the range
    assert default_reference([(2.0, 0.0)], ["minimize", "minimize"]) == pytest.approx([2.2, 1.0])
    assert hypervolume(points, ["maximize", "minimize"]) == pytest.approx(
        hypervolume(points, ["maximize", "minimize"], ref))
    with pytest.raises(ValueError):
        default_reference([(float("nan"), 1.0)], ["minimize", "minimize"])


def test_hypervolume_history_is_monotone_and_ends_at_the_total():
    rng = random.Random(3)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(25)]
    directions = ["maximize", "minimize", "minimize"]
    ref = [0.0, 1.0, 1.0]
    history = hypervolume_history(points, directions, ref)
    assert len(history) == len(points)
    assert all(b >= a for a, b in zip(history, history[1:]))
    for k in (1, 7, 25):
        assert history[k - 1] == pytest.approx(hypervolume(points[:k], directions, ref))
    with_nan = hypervolume_history([(0.5, 0.5, 0.5), (float("nan"), 0, 0)], directions, ref)
    assert with_nan[0] == with_nan[1] > 0
    assert hypervolume_history([], directions, ref) == []


def test_dominates():
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (1, 2)) and not dominates((0, 3), (1, 2))


def test_live_hypervolume_never_decreases_while_the_plain_default_reference_can():
    from sweeps.pareto import OutwardHypervolume

    dirs = ["maximize", "maximize"]
    first, better = (0.7, -1.5), (0.71, -1.4)
    # recomputing the default reference each time: the second point narrows the range, the margin shrinks
    assert hypervolume([first, better], dirs) < hypervolume([first], dirs)
    live = OutwardHypervolume()
    a = live([first], dirs)
    assert live.reference == pytest.approx([0.63, -1.65])
    b = live([first, better], dirs)
    assert live.reference == pytest.approx([0.63, -1.65]) and b == pytest.approx(0.08 * 0.25) and b > a

    rng = random.Random(5)
    for directions in (["maximize", "minimize"], ["minimize", "minimize", "maximize"]):
        live, points, last = OutwardHypervolume(), [], 0.0
        for _ in range(60):
            points.append(tuple(rng.gauss(0, 1) for _ in directions))
            value = live(points, directions)
            assert value >= last - 1e-12
            # never inside the plain reference of the same points, which bounds every point
            plain = default_reference(points, directions)
            for r, p, d in zip(live.reference, plain, directions):
                assert (r <= p) if d == "maximize" else (r >= p)
            last = value


def test_the_final_hypervolume_does_not_depend_on_the_order_trials_finished_in():
    from sweeps.run import final_hypervolume
    from sweeps.pareto import OutwardHypervolume

    dirs = ["maximize", "maximize"]
    points = [(0.5, -10.0), (0.9, -2.0), (0.6, -10.1), (0.95, -20.0)]
    finals, lives = set(), set()
    for order in itertools.permutations(points):
        ref, history = final_hypervolume(order, dirs)
        finals.add(round(history[-1], 12))
        live = OutwardHypervolume()
        for k in range(1, len(order) + 1):
            value = live(order[:k], dirs)
        lives.add(round(value, 12))
    assert finals == {round(hypervolume(points, dirs), 12)}
    assert len(lives) > 1                # the live figure's outward reference does depend on the order


def test_reference_values_from_the_space_fix_the_hypervolume_box():
    from sweeps.run import final_hypervolume
    from sweeps.pareto import OutwardHypervolume

    dirs = ["maximize", "maximize"]
    points = [(0.7, -1.5), (0.9, -30.0)]
    ref, history = final_hypervolume(points, dirs, [0.0, -100.0])
    assert ref == [0.0, -100.0]
    assert history[-1] == pytest.approx(hypervolume(points, dirs, [0.0, -100.0]))
    live = OutwardHypervolume([0.0, None])          # one value given: the other one from the trials
    live(points, dirs)
    assert live.reference[0] == 0.0 and live.reference[1] == pytest.approx(default_reference(points, dirs)[1])


def test_a_resumed_live_hypervolume_goes_on_from_where_the_first_run_ended():
    from sweeps.pareto import OutwardHypervolume

    dirs = ["maximize", "maximize"]
    points = [(0.7, -1.5), (0.71, -1.4), (0.9, -30.0), (0.3, 5.0)]
    first = OutwardHypervolume()
    for k in range(1, 3):
        ended = first(points[:k], dirs)                    # the first run saw two trials, one by one
    resumed = OutwardHypervolume()
    resumed.replay(points[:2], dirs)                       # a resume primed with them, in that order
    assert resumed.reference == first.reference
    assert resumed(points[:2], dirs) == pytest.approx(ended)
    assert OutwardHypervolume()(points[:2], dirs) < ended  # computed over both at once: smaller
    assert resumed(points[:3], dirs) == pytest.approx(first(points[:3], dirs))
