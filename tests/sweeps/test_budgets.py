"""Budgets: grammar and sign conventions, constraint values, the best model under budget."""

from __future__ import annotations

import math

import pytest

from sweeps.budgets import (MISSING_VIOLATION, Budget, best_under_budget, check_known_metrics,
                            constraint_values, parse_budget, parse_budgets, violations)
from sweeps.errors import BudgetError

BASE = {"seg.miou": 0.30, "normal.mean": 20.0, "depth.abs_err": 0.5}
KNOWN = ["seg.miou", "seg.pixel_acc", "normal.mean", "depth.abs_err", "compression", "delta_m"]

VALID = [
    # expression,          canonical,            relative, amount, threshold against BASE
    ("seg.miou=-2%",       "seg.miou=-2%",       True,  0.02, 0.294),
    ("seg.miou=2%",        "seg.miou=-2%",       True,  0.02, 0.294),   # unsigned = tolerated loss
    ("seg.miou = -2.5 %",  "seg.miou=-2.5%",     True,  0.025, 0.2925),
    ("seg.miou>=-2%",      "seg.miou=-2%",       True,  0.02, 0.294),
    ("seg.miou=0%",        "seg.miou=-0%",       True,  0.0, 0.30),
    ("normal.mean=+5%",    "normal.mean=+5%",    True,  0.05, 21.0),
    ("normal.mean=5%",     "normal.mean=+5%",    True,  0.05, 21.0),
    ("normal.mean<=+5%",   "normal.mean=+5%",    True,  0.05, 21.0),
    ("seg.miou>=0.25",     "seg.miou>=0.25",     False, 0.25, 0.25),
    ("seg.miou=0.25",      "seg.miou>=0.25",     False, 0.25, 0.25),    # bare number: bound by direction
    ("normal.mean<=18",    "normal.mean<=18",    False, 18.0, 18.0),
    ("normal.mean=18",     "normal.mean<=18",    False, 18.0, 18.0),
    ("delta_m>=-1",        "delta_m>=-1",        False, -1.0, -1.0),
    ("compression>=0.8",   "compression>=0.8",   False, 0.8, 0.8),
    ("wall_time_s<=60",    "wall_time_s<=60",    False, 60.0, 60.0),
    ("min_layer_density=0.01", "min_layer_density>=0.01", False, 0.01, 0.01),   # no layer emptied
    ("depth.abs_err=1e-1", "depth.abs_err<=0.1", False, 0.1, 0.1),
]


@pytest.mark.parametrize("expr, text, relative, amount, threshold", VALID, ids=[v[0] for v in VALID])
def test_valid_budgets(expr, text, relative, amount, threshold):
    b = parse_budget(expr, known_metrics=KNOWN + ["wall_time_s", "min_layer_density"])
    assert (b.text, b.relative) == (text, relative)
    assert b.amount == pytest.approx(amount)
    assert b.threshold(BASE) == pytest.approx(threshold)
    assert parse_budget(b.text) == b                       # the canonical form parses to the same budget


INVALID = [
    ("seg.miou=+2%", "would demand an improvement; expected seg.miou=-2%"),
    ("normal.mean=-5%", "would demand an improvement; expected normal.mean=+5%"),
    ("seg.miou<=0.3", "wrong side (higher is better); expected seg.miou>=0.3"),
    ("normal.mean>=10", "wrong side (lower is better); expected normal.mean<=10"),
    ("seg.miou<=-2%", "wrong side"),
    ("delta_m=-1%", "a relative budget needs a <task>.<metric> key"),
    ("compression=5%", "a relative budget needs a <task>.<metric> key"),
    ("seg.miou=-100%", "leaves no bound; expected a percentage below 100"),
    ("seg.miou", "cannot parse; expected METRIC=-2%"),
    ("seg.miou>>0.2", "cannot parse; expected METRIC=-2%"),
    ("seg.miou=", "cannot parse ''"),
    ("seg.miou=two", "cannot parse 'two'"),
    ("seg.miou=2%%", "cannot parse '2%%'"),
    ("seg.miou=nan", "cannot parse 'nan'"),
    ("seg.miou=inf", "cannot parse 'inf'"),
    ("=-2%", "cannot parse"),
    ("seg.mIoU=-2%", "unknown metric 'seg.mIoU' (did you mean seg.miou?); expected one of compression"),
    ("normal.angle<=20", "unknown metric 'normal.angle'"),
    ("seg.miou>=1.5", "seg.miou takes values in [0, 1], so no trial can meet >=1.5; expected a bound <= 1"),
    ("seg.miou=75", "no trial can meet >=75; expected a bound <= 1 (fractions are in [0, 1], not percent)"),
    ("normal.mean<=-1", "normal.mean takes values in [0, 180], so no trial can meet <=-1; expected a bound >= 0"),
    ("compression>=1.01", "no trial can meet >=1.01; expected a bound <= 1"),
]


@pytest.mark.parametrize("expr", ["seg.miou>=1", "seg.miou>=0", "normal.mean<=0", "normal.mean<=400",
                                  "compression>=1", "compression>=-3", "delta_m>=250", "delta_m>=-1000"])
def test_bounds_at_the_edge_of_a_metric_range_are_accepted(expr):
    assert parse_budget(expr, known_metrics=KNOWN).text == expr


@pytest.mark.parametrize("expr, part", INVALID, ids=[i[0] or "empty" for i in INVALID])
def test_invalid_budgets_are_one_line_errors(expr, part):
    with pytest.raises(BudgetError) as info:
        parse_budget(expr, known_metrics=KNOWN)
    message = str(info.value)
    assert "\n" not in message and "expected" in message
    assert expr.strip() in message or repr(expr) in message
    assert part in message


def test_unknown_metric_without_a_workload_names_the_global_metrics():
    with pytest.raises(BudgetError, match=r"unknown metric 'seg\.foo'; expected <task>\.<metric>"):
        parse_budget("seg.foo>=1")


def test_mapping_and_list_forms():
    from_map = parse_budgets({"seg.miou": "-2%", "normal.mean": "+5%", "depth.abs_err": 0.6,
                              "compression": ">=0.5"})
    assert [b.text for b in from_map] == ["seg.miou=-2%", "normal.mean=+5%", "depth.abs_err<=0.6",
                                          "compression>=0.5"]
    assert parse_budgets(["seg.miou=-2%", "normal.mean<=21"]) == [parse_budget("seg.miou=-2%"),
                                                                 parse_budget("normal.mean<=21")]
    assert parse_budgets(None) == [] and parse_budgets("seg.miou=-2%") == [parse_budget("seg.miou=-2%")]
    with pytest.raises(BudgetError, match="already has a budget"):
        parse_budgets(["seg.miou=-2%", "seg.miou>=0.2"])
    with pytest.raises(BudgetError, match=r"budgets\.seg\.miou: True is not a budget value"):
        parse_budgets({"seg.miou": True})


# --- constraint values ------------------------------------------------------------------------------

def test_constraint_values_sign_and_scale():
    budgets = parse_budgets(["seg.miou=-2%", "normal.mean=+5%", "depth.abs_err<=0.5", "delta_m>=-1"])
    met = {"seg.miou": 0.297, "normal.mean": 20.0, "depth.abs_err": 0.45, "delta_m": 0.0}
    values = constraint_values(budgets, met, BASE)
    assert values == pytest.approx([(0.294 - 0.297) / 0.30, (20.0 - 21.0) / 20.0, (0.45 - 0.5) / 0.5,
                                    (-1 - 0.0) / 100])
    assert all(v <= 0 for v in values)
    missed = {"seg.miou": 0.279, "normal.mean": 22.0, "depth.abs_err": 0.6, "delta_m": -3.0}
    values = constraint_values(budgets, missed, BASE)
    assert values == pytest.approx([0.05, 0.05, 0.2, 0.02])       # "5 % short" reads 0.05 for each kind
    assert constraint_values(budgets, {**met, "seg.miou": 0.294}, BASE)[0] == pytest.approx(0, abs=1e-12)


def test_constraint_values_take_parsed_budgets_and_handle_missing_metrics():
    assert constraint_values(parse_budgets({"seg.miou": "-2%"}), {"seg.miou": 0.3}, BASE) == [pytest.approx(-0.02)]
    floor = parse_budgets(["seg.miou>=0.2"])
    assert constraint_values(floor, {}, None) == [MISSING_VIOLATION]
    assert constraint_values(floor, {"seg.miou": float("nan")}, None) == [MISSING_VIOLATION]
    assert constraint_values([], {"seg.miou": 0.1}, None) == []
    with pytest.raises(TypeError, match="parse_budgets"):     # text is parsed once, where it comes in
        constraint_values(["seg.miou>=0.2"], {}, None)


def test_known_metrics_are_checked_on_parsed_budgets():
    check_known_metrics(parse_budgets(["seg.miou=-2%"]), KNOWN)
    with pytest.raises(BudgetError, match=r"budget 'normal\.median<=5': unknown metric 'normal\.median' "
                                          r"\(did you mean normal\.mean\?\); expected one of compression"):
        check_known_metrics(parse_budgets(["seg.miou=-2%", "normal.median<=5"]), KNOWN)


def test_relative_budget_needs_the_baseline_metric():
    with pytest.raises(BudgetError, match=r"seg\.miou=-2%: relative to the dense baseline, but the baseline "
                                          r"has no finite seg\.miou"):
        constraint_values(parse_budgets(["seg.miou=-2%"]), {"seg.miou": 0.3}, {"normal.mean": 20})


def test_negative_baseline_keeps_the_direction():
    b = parse_budget("seg.miou=-10%")
    assert b.threshold({"seg.miou": -1.0}) == pytest.approx(-1.1)     # 10 % worse than -1 is -1.1


# --- best under budget -------------------------------------------------------------------------------

def _rec(run_id, compression, miou, mean, method="disparse_dynamic", **extra):
    return {"run_id": run_id, "metrics": {"compression": compression, "seg.miou": miou, "normal.mean": mean,
                                          **extra}, "params": {"method": method}}


BUDGETS = parse_budgets(["seg.miou=-2%", "normal.mean=+5%"])


def test_best_is_the_sparsest_record_meeting_every_budget():
    records = [_rec("dense", 0.0, 0.31, 19.0, method="dense"),
               _rec("a", 0.95, 0.20, 30.0),               # sparsest, misses both
               _rec("b", 0.90, 0.299, 20.5),              # meets both
               _rec("c", 0.80, 0.31, 19.0),               # meets both, less sparse
               _rec("d", 0.92, 0.299, 21.5)]              # misses normal.mean
    best, closest = best_under_budget(records, BUDGETS, BASE)
    assert best["run_id"] == "b" and closest is None


def test_ties_prefer_slack_then_delta_m_then_run_id():
    records = [_rec("x", 0.9, 0.295, 20.9), _rec("y", 0.9, 0.30, 20.0), _rec("z", 0.9, 0.30, 20.0)]
    assert best_under_budget(records, BUDGETS, BASE)[0]["run_id"] == "y"
    records = [_rec("b", 0.9, 0.3, 20.0, delta_m=-1.0), _rec("c", 0.9, 0.3, 20.0, delta_m=0.5)]
    assert best_under_budget(records, BUDGETS, BASE)[0]["run_id"] == "c"
    records = [_rec("q", 0.9, 0.3, 20.0), _rec("p", 0.9, 0.3, 20.0)]
    assert best_under_budget(records, BUDGETS, BASE)[0]["run_id"] == "p"
    assert best_under_budget(list(reversed(records)), BUDGETS, BASE)[0]["run_id"] == "p"


def test_closest_when_nothing_meets_the_budgets():
    records = [_rec("dense", 0.0, 0.31, 19.0, method="dense"),
               _rec("far", 0.95, 0.20, 30.0),
               _rec("near", 0.90, 0.285, 21.2),
               _rec("broken", 0.99, float("nan"), 20.0)]
    best, closest = best_under_budget(records, BUDGETS, BASE)
    assert best is None and closest.record["run_id"] == "near"
    assert [v.budget for v in closest.violations] == ["seg.miou=-2%", "normal.mean=+5%"]
    assert closest.violations[0].amount == pytest.approx((0.294 - 0.285) / 0.30)
    assert closest.total == pytest.approx(sum(v.amount for v in closest.violations))
    text = closest.describe()
    assert "seg.miou=-2%: 0.285 < 0.294" in text and "normal.mean=+5%: 21.2 > 21" in text
    assert "\n" not in text


def test_records_without_compression_or_only_baselines():
    assert best_under_budget([], BUDGETS, BASE) == (None, None)
    assert best_under_budget([_rec("dense", 0.0, 0.3, 20.0, method="dense")], BUDGETS, BASE) == (None, None)
    assert best_under_budget([{"run_id": "x", "metrics": {"seg.miou": 0.3}}], BUDGETS, BASE) == (None, None)
    flagged = {**_rec("base", 0.0, 0.3, 20.0), "is_baseline": True}
    assert best_under_budget([flagged], BUDGETS, BASE) == (None, None)


def test_no_budgets_means_the_sparsest_and_flat_records_work():
    records = [{"run_id": "a", "compression": 0.5}, {"run_id": "b", "compression": 0.7, "config": {"method": "rigl"}}]
    assert best_under_budget(records, [], None)[0]["run_id"] == "b"


def test_violations_lists_only_unmet_budgets():
    found = violations(BUDGETS, {"seg.miou": 0.29, "normal.mean": 20.0}, BASE)
    assert len(found) == 1 and found[0].metric == "seg.miou" and math.isclose(found[0].threshold, 0.294)
    assert isinstance(BUDGETS[0], Budget)


def test_a_violation_says_how_far_in_the_metric_s_own_terms():
    from sweeps.budgets import violations

    (delta,) = violations(parse_budgets(["delta_m>=5"]), {"delta_m": 4.591})
    assert str(delta) == "delta_m>=5: 4.591 < 5 (short by 0.41 points)"      # Δm is a percentage already
    (seg,) = violations(parse_budgets(["seg.miou>=0.3"]), {"seg.miou": 0.285})
    assert str(seg) == "seg.miou>=0.3: 0.285 < 0.3 (short by 5.0%)"
    (gone,) = violations(parse_budgets(["normal.mean<=20"]), {"normal.mean": float("nan")})
    assert str(gone) == "normal.mean<=20: missing or not finite (needs <= 20)"
