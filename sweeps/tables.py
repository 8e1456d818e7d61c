"""Plain-text tables and numbers for the answers of ``tune.py best / pareto / report`` and the end-of-sweep
front (re-exported by :mod:`sweeps.queries`)."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["format_number", "format_table", "param_value", "is_number", "pct_change"]


def format_number(value: Any) -> str:
    """Numbers with sensible precision (ints as ints, 4 significant digits, thousands separators)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) >= 1000:
        return f"{int(value):,}"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 10000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.3f}"
    if a >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.3e}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: str = "") -> str:
    """A plain-text table: numbers right-aligned (and formatted), text left-aligned."""
    rows = [list(r) for r in rows]
    cells = [[format_number(v) if is_number(v) else ("" if v is None else str(v)) for v in r] for r in rows]
    numeric = [bool(rows) and all(is_number(r[i]) or r[i] in (None, "") for r in rows)
               and any(is_number(r[i]) for r in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def pct_change(value: float, base: float) -> str:
    if base == 0 or not math.isfinite(base) or not math.isfinite(value):
        return ""
    change = round((value - base) / abs(base) * 100, 2)
    return f"{change + 0.0:+.2f}%"                       # + 0.0: no "-0.00%" for a change that rounds to 0


def param_value(rec: Mapping[str, Any], key: str) -> Any:
    """A trial record's logged param ``key`` for a table: the number it holds, else its text."""
    raw = (rec.get("params") or {}).get(key, "")
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return raw
    return value if is_number(value) else raw
