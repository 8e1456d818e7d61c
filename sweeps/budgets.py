"""Per-task accuracy budgets: parse them, turn them into Optuna constraints, pick the best model.

Grammar (one budget; see docs/search-spaces.md)::

    budget   := METRIC "=" PERCENT          relative to the dense baseline: "seg.miou=-2%", "normal.mean=+5%"
              | METRIC "=" NUMBER           absolute, bound by the metric's direction: "seg.miou=0.25"
              | METRIC (">=" | "<=") NUMBER absolute: "seg.miou>=0.25", "normal.mean<=20"
    PERCENT  := ["+" | "-"] NUMBER "%"

In YAML the same thing is a mapping ``{METRIC: VALUE}`` where VALUE is ``"-2%"``, ``0.25``,
``">=0.25"`` …, or a list of budget strings.

Budgets are parsed once, where they come in (:func:`parse_budgets`: the space's ``budgets`` section,
the ``--budget`` flags, the budgets a sweep logged); everything else here takes the parsed
``list[Budget]``.

Sign convention: **a relative budget is the loss you tolerate**, measured in the metric's own direction.
``seg.miou=-2%`` (higher is better) means ``seg.miou >= 0.98 · baseline``; ``normal.mean=+5%`` (lower is
better) means ``normal.mean <= 1.05 · baseline``. An unsigned ``2%`` means the same as the signed form
that fits the direction. A sign that would demand an *improvement* (``seg.miou=+2%``) is rejected with
a hint, as is an absolute bound on the wrong side (``seg.miou<=0.25``): they are almost always typos.
Relative budgets need a ``<task>.<metric>`` key (``delta_m`` and ``compression`` are 0 for the dense
baseline, so "2 % of it" means nothing); give those absolute bounds (``delta_m>=-1``).

Constraint values (:func:`constraint_values`) follow Optuna: ``<= 0`` is feasible. Each is the signed
shortfall divided by a reference scale, so values of different metrics are comparable: relative budgets
divide by the baseline's value, absolute bounds by the bound (``delta_m``, already in percent, by 100).
``0.05`` therefore means "5 % short". A missing or non-finite metric counts as :data:`MISSING_VIOLATION`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from disparse_core.metric_keys import higher_is_better, metric_range

from .errors import BudgetError

__all__ = [
    "Budget",
    "Violation",
    "Closest",
    "MISSING_VIOLATION",
    "GLOBAL_METRICS",
    "parse_budget",
    "parse_budgets",
    "check_known_metrics",
    "constraint_values",
    "violations",
    "best_under_budget",
    "lost_task_metrics",
    "higher_is_better",
]

MISSING_VIOLATION = 1.0e3
"""Constraint value of a budget whose metric is missing or not finite (e.g. a diverged trial)."""

GLOBAL_METRICS = ("compression", "sparsity", "delta_m", "nonzero_params", "wall_time_s",
                  "min_layer_density")
"""Result keys of ``run_trial`` that are not ``<task>.<metric>``; usable as objectives and (absolute) budgets."""

GRAMMAR = ("METRIC=-2% (relative loss vs. the dense baseline), METRIC>=X, METRIC<=X or METRIC=X "
           "(absolute)")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_EXPR = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|=)\s*(?P<value>.*?)\s*$")
_VALUE = re.compile(rf"^(?P<op>>=|<=|=)?\s*(?P<num>{_NUMBER})\s*(?P<pct>%)?$")


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Budget:
    """One accuracy budget. ``amount``: tolerated loss as a fraction (relative) or the bound (absolute)."""

    metric: str
    relative: bool
    amount: float
    higher_is_better: bool

    @property
    def text(self) -> str:
        """Canonical expression, e.g. ``seg.miou=-2%`` or ``normal.mean<=20``."""
        if self.relative:
            sign = "-" if self.higher_is_better else "+"
            return f"{self.metric}={sign}{_fmt(self.amount * 100)}%"
        return f"{self.metric}{'>=' if self.higher_is_better else '<='}{_fmt(self.amount)}"

    def __str__(self) -> str:
        return self.text

    def _baseline_value(self, baseline: Mapping[str, float] | None) -> float:
        value = None if baseline is None else baseline.get(self.metric)
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise BudgetError(f"{self.text}: relative to the dense baseline, but the baseline has no "
                              f"finite {self.metric} (got {None if baseline is None else baseline.get(self.metric)!r}); "
                              f"expected baseline metrics from a dense run (baseline: true)")
        return value

    def threshold(self, baseline: Mapping[str, float] | None = None) -> float:
        """The bound a value must meet (``>=`` if higher is better, else ``<=``)."""
        if not self.relative:
            return self.amount
        base = self._baseline_value(baseline)
        factor = 1.0 - self.amount if self.higher_is_better else 1.0 + self.amount
        return base * factor if base >= 0 else base * (2.0 - factor)

    def scale(self, baseline: Mapping[str, float] | None = None) -> float:
        """Reference magnitude that normalises the shortfall."""
        if self.metric == "delta_m":
            return 100.0
        ref = self._baseline_value(baseline) if self.relative else self.amount
        return abs(ref) if ref != 0 else 1.0

    def violation(self, value: Any, baseline: Mapping[str, float] | None = None) -> float:
        """Normalised shortfall: ``<= 0`` when the budget is met (negative = slack)."""
        threshold = self.threshold(baseline)
        scale = self.scale(baseline)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return MISSING_VIOLATION
        if not math.isfinite(value):
            return MISSING_VIOLATION
        gap = threshold - value if self.higher_is_better else value - threshold
        return gap / scale

    def to_dict(self) -> dict:
        return {"metric": self.metric, "expr": self.text, "relative": self.relative,
                "amount": self.amount, "direction": "maximize" if self.higher_is_better else "minimize"}


def _known_list(known: Iterable[str]) -> str:
    return ", ".join(sorted(known))


def parse_budget(expr: str, value: Any = None, *, known_metrics: Iterable[str] | None = None) -> Budget:
    """Parse ``"seg.miou=-2%"`` (or ``("seg.miou", "-2%")`` as ``expr, value`` from a YAML mapping).

    ``known_metrics``: the metric keys the workload produces; an unknown metric is a BudgetError that
    lists them. Raises BudgetError (one line naming the expression and the grammar) on bad input.
    """
    if value is None:
        if not isinstance(expr, str):
            raise BudgetError(f"budget {expr!r}: not a string; expected {GRAMMAR}")
        text = expr.strip()
        match = _EXPR.match(text)
        if not match:
            raise BudgetError(f"budget {text!r}: cannot parse; expected {GRAMMAR}")
        metric, op, raw = match["metric"], match["op"], match["value"]
        value_text = raw if op == "=" else f"{op}{raw}"
    else:
        metric = str(expr).strip()
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise BudgetError(f"budgets.{metric}: {value!r} is not a budget value; expected -2%, "
                              f"+5%, >=0.25, <=20 or a number")
        value_text = str(value).strip()
        text = f"{metric}={value_text}" if not value_text.startswith((">", "<")) else metric + value_text
    if known_metrics is not None:
        _check_known(text, metric, set(known_metrics))
    try:
        higher = higher_is_better(metric)
    except ValueError:
        raise BudgetError(f"budget {text!r}: unknown metric {metric!r}; expected <task>.<metric> "
                          f"(e.g. seg.miou) or one of {', '.join(GLOBAL_METRICS)}") from None
    match = _VALUE.match(value_text)
    if not match:
        raise BudgetError(f"budget {text!r}: cannot parse {value_text!r}; expected {GRAMMAR}")
    op, number, pct = match["op"] or "=", float(match["num"]), bool(match["pct"])
    if not math.isfinite(number):
        raise BudgetError(f"budget {text!r}: {number} is not finite; expected a finite number")
    if op != "=" and (op == ">=") != higher:
        right = ">=" if higher else "<="
        word = "higher" if higher else "lower"
        raise BudgetError(f"budget {text!r}: {op} bounds {metric} on the wrong side ({word} is better); "
                          f"expected {metric}{right}{match['num']}{'%' if pct else ''}")
    if pct:
        return _relative(text, metric, match["num"], number, higher)
    _check_reachable(text, metric, number, higher)
    return Budget(metric=metric, relative=False, amount=number, higher_is_better=higher)


def _check_known(text: str, metric: str, known: set[str]) -> None:
    if metric not in known:
        import difflib
        close = difflib.get_close_matches(metric, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BudgetError(f"budget {text!r}: unknown metric {metric!r}{hint}; expected one of "
                          f"{_known_list(known)}")


def check_known_metrics(budgets: Sequence[Budget], known_metrics: Iterable[str]) -> None:
    """BudgetError (one line, the closest known name) for the first budget whose metric is not one of
    ``known_metrics`` (e.g. the metrics a sweep's trials logged)."""
    known = set(known_metrics)
    for b in _parsed(budgets):
        _check_known(b.text, b.metric, known)


def _check_reachable(text: str, metric: str, number: float, higher: bool) -> None:
    """An absolute bound outside the metric's range can never be met: say so now, not after the sweep."""
    low, high = metric_range(metric)
    if (number > high) if higher else (number < low):
        edge = _fmt(high if higher else low)
        raise BudgetError(f"budget {text!r}: {metric} takes values in [{_fmt(low)}, {_fmt(high)}], so no "
                          f"trial can meet {'>=' if higher else '<='}{_fmt(number)}; expected a bound "
                          f"{'<=' if higher else '>='} {edge}"
                          f"{' (fractions are in [0, 1], not percent)' if high == 1.0 and number <= 100 else ''}")


def _relative(text: str, metric: str, num_text: str, number: float, higher: bool) -> Budget:
    if "." not in metric:
        raise BudgetError(f"budget {text!r}: a relative budget needs a <task>.<metric> key ({metric} has "
                          f"no dense reference); expected an absolute bound such as {metric}"
                          f"{'>=' if higher else '<='}X")
    signed = num_text.lstrip()[0] in "+-"
    loss = -number if higher else number        # the tolerated move in the worse direction, in percent
    if signed and loss < 0:
        good = f"{metric}={'-' if higher else '+'}{_fmt(abs(number))}%"
        word = "higher" if higher else "lower"
        raise BudgetError(f"budget {text!r}: a relative budget is the loss you tolerate and {metric} is "
                          f"{word}-is-better, so {num_text.strip()}% would demand an improvement; "
                          f"expected {good} (or an absolute bound)")
    loss = abs(number)
    if higher and loss >= 100:
        raise BudgetError(f"budget {text!r}: a loss of {_fmt(loss)}% leaves no bound; expected a "
                          f"percentage below 100")
    return Budget(metric=metric, relative=True, amount=loss / 100.0, higher_is_better=higher)


def parse_budgets(budgets: Any, *, known_metrics: Iterable[str] | None = None) -> list[Budget]:
    """The one way in for budgets as a user writes them (a space's ``budgets`` section, ``--budget``
    flags, the text a sweep logged): ``None``, a mapping ``{metric: value}``, a list of expressions or
    one expression. One budget per metric. Bad input is one BudgetError line naming the expression."""
    if budgets is None:
        return []
    if isinstance(budgets, str):
        items: list[Budget] = [parse_budget(budgets, known_metrics=known_metrics)]
    elif isinstance(budgets, Mapping):
        items = [parse_budget(k, v if v is not None else "", known_metrics=known_metrics)
                 for k, v in budgets.items()]
    elif isinstance(budgets, (list, tuple)):
        items = [parse_budget(b, known_metrics=known_metrics) for b in budgets]
    else:
        raise BudgetError(f"budgets: {budgets!r} is not a mapping or a list; expected e.g. "
                          f"{{seg.miou: -2%, normal.mean: +5%}} or [seg.miou>=0.25]")
    seen: dict[str, Budget] = {}
    for b in items:
        if b.metric in seen:
            raise BudgetError(f"budget {b.text!r}: {b.metric} already has a budget ({seen[b.metric].text}); "
                              f"expected one budget per metric")
        seen[b.metric] = b
    return items


def _parsed(budgets: Sequence[Budget]) -> Sequence[Budget]:
    """``budgets`` itself, after checking that it holds parsed budgets (:func:`parse_budgets` is the way
    from text to them)."""
    for b in budgets:
        if not isinstance(b, Budget):
            raise TypeError(f"expected parsed budgets (sweeps.budgets.parse_budgets), got {b!r}")
    return budgets


def constraint_values(budgets: Sequence[Budget], metrics: Mapping[str, Any],
                      baseline: Mapping[str, float] | None = None) -> list[float]:
    """One Optuna constraint value per budget (``<= 0`` feasible), in the order of ``budgets``."""
    return [b.violation(metrics.get(b.metric), baseline) for b in _parsed(budgets)]


# --- choosing a model ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    """A budget a record does not meet."""

    budget: str
    metric: str
    value: float | None
    threshold: float
    amount: float          # normalised shortfall (> 0)
    higher_is_better: bool = True

    def __str__(self) -> str:
        side = "<" if self.higher_is_better else ">"
        if self.value is None:
            bound = ">=" if self.higher_is_better else "<="
            return f"{self.budget}: missing or not finite (needs {bound} {self.threshold:.4g})"
        return f"{self.budget}: {self.value:.4g} {side} {self.threshold:.4g} (short by {self.shortfall()})"

    def shortfall(self) -> str:
        """How far from the bound, in words: points for ``delta_m`` (already a percentage), else percent."""
        if self.metric == "delta_m" and self.value is not None:
            return f"{abs(self.threshold - self.value):.2f} points"
        return f"{self.amount:.1%}"


@dataclass(frozen=True)
class Closest:
    """The record nearest to meeting every budget, when none meets them all."""

    record: Mapping[str, Any]
    violations: tuple[Violation, ...]
    total: float

    def describe(self) -> str:
        return "; ".join(str(v) for v in self.violations)


def _metrics_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = record.get("metrics")
    return metrics if isinstance(metrics, Mapping) else record


def _is_baseline(record: Mapping[str, Any]) -> bool:
    if record.get("baseline") or record.get("is_baseline"):
        return True
    for section in ("config", "params"):
        sec = record.get(section)
        if isinstance(sec, Mapping) and str(sec.get("method", "")) == "dense":
            return True
    return False


def _float(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def lost_task_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """The task metrics (``<task>.<metric>`` keys of known metrics) whose value is not finite: a task the
    model lost (diverged head, NaN evaluation), budgeted or not."""
    lost = []
    for key, value in metrics.items():
        if "." not in str(key) or math.isfinite(_float(value)):
            continue
        try:
            higher_is_better(key)
        except ValueError:
            continue                    # not a task metric (mask_iou.<layer>, dynamic.<stat>, ...)
        lost.append(str(key))
    return sorted(lost)


def violations(budgets: Sequence[Budget], metrics: Mapping[str, Any],
               baseline: Mapping[str, float] | None = None) -> list[Violation]:
    """The budgets that ``metrics`` does not meet, with values, thresholds and normalised shortfalls."""
    out = []
    for b in _parsed(budgets):
        amount = b.violation(metrics.get(b.metric), baseline)
        if amount > 0:
            value = _float(metrics.get(b.metric))
            out.append(Violation(b.text, b.metric, value if math.isfinite(value) else None,
                                 b.threshold(baseline), amount, b.higher_is_better))
    return out


def best_under_budget(records: Iterable[Mapping[str, Any]], budgets: Sequence[Budget],
                      baseline: Mapping[str, float] | None = None
                      ) -> tuple[Mapping[str, Any] | None, Closest | None]:
    """The sparsest record that meets every budget, else the closest one.

    ``records``: mappings with ``metrics`` (flat ``{key: value}``; the record itself if absent) and
    optionally ``config``/``params`` and ``run_id``. Dense baseline records (``method: dense`` or a
    truthy ``baseline``/``is_baseline``), records without a finite ``compression`` and records with a
    non-finite task metric (:func:`lost_task_metrics`, budgeted or not) are skipped.

    Returns ``(best, None)`` where ``best`` has the highest ``compression`` among the records meeting
    every budget (ties: more total slack, then higher ``delta_m``, then the smallest ``run_id``), or
    ``(None, closest)`` with the record of smallest total normalised violation and its violations, or
    ``(None, None)`` when there is no usable record.
    """
    parsed = _parsed(budgets)
    rows = []
    for index, rec in enumerate(records):
        metrics = _metrics_of(rec)
        compression = _float(metrics.get("compression"))
        if _is_baseline(rec) or not math.isfinite(compression) or lost_task_metrics(metrics):
            continue
        values = [b.violation(metrics.get(b.metric), baseline) for b in parsed]
        delta = _float(metrics.get("delta_m"))
        rows.append((rec, compression, values, delta if math.isfinite(delta) else -math.inf,
                     str(rec.get("run_id", "")), index))
    feasible = [r for r in rows if all(v <= 0 for v in r[2])]
    if feasible:
        best = min(feasible, key=lambda r: (-r[1], sum(r[2]), -r[3], r[4], r[5]))
        return best[0], None
    if not rows:
        return None, None
    closest = min(rows, key=lambda r: (sum(max(v, 0.0) for v in r[2]), -r[1], r[4], r[5]))
    rec = closest[0]
    found = violations(parsed, _metrics_of(rec), baseline)
    return None, Closest(rec, tuple(found), sum(v.amount for v in found))
