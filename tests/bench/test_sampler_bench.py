"""bench/sampler_bench.py: the surrogate of the demo sweep and its simulated sweeps (real Optuna samplers,
real MOAshaRungs, the recorded curves in bench/results)."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


@pytest.fixture(scope="module")
def sur():
    import sampler_bench

    return sampler_bench.Surrogate(sorted(glob.glob(str(BENCH / "results" / "asha_curves_seed*.json"))))


def test_the_surrogate_fits_the_records_better_than_their_spread(sur):
    assert sur.n == 288 and 0 < sur.loo_rmse < sur.final_sd
    assert len(sur.resid_sd) == 9 and all(s > 0 for s in sur.resid_sd)


def test_a_simulated_sweep_charges_stopped_trials_their_steps_and_reaches_its_own_hypervolume(sur):
    import sampler_bench as sb

    full = sb.simulate(sur, "random", 0, 6)
    assert [d["steps"] for d in full] == [45] * 6 and all(d["complete"] for d in full)
    again = sb.simulate(sur, "random", 0, 6)
    assert [d["values"] for d in again] == [d["values"] for d in full]          # seeded: repeatable
    target = sb.to_reach(full, 0.0, 0)[2]
    frac, at_budget, final = sb.to_reach(full, target, 6 * 45)
    assert frac is not None and frac <= 1.0 and final == pytest.approx(target)
    stopped = sb.simulate(sur, "random", 0, 12, sb.make_rule("random/mo_asha_g5".split("/")[1]))
    assert any(not d["complete"] and d["steps"] < 45 for d in stopped)
    assert sum(d["steps"] for d in stopped) < 12 * 45


def test_the_paired_interval_is_a_t_interval():
    import sampler_bench as sb

    r = sb.paired_interval([1.1, 1.1, 1.1, 1.1])
    assert r["mean"] == pytest.approx(0.1) and r["low"] == pytest.approx(0.1) and r["wins"] == 4
    m = sb.median_range([0.2, None, 0.4])
    assert m["median"] == 0.4 and m["max"] is None and m["third"] == 1 and m["reached"] == 2
