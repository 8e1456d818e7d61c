"""The ``parameters`` section of a space: each entry becomes a :class:`Param` (distribution, bounds,
values, ``when`` conditions), checked against the fixed workload base and the active tasks.

Private to :mod:`sweeps.space`; :class:`ParametersSection` is used by the validator.
"""

from __future__ import annotations

from typing import Any, Mapping

from disparse_core.config import num_blocks

from ..errors import SpaceError
from .fields import (DISTRIBUTIONS, LOSS_WEIGHT, PARAM_KEYS, RANGE_DISTS, SCALAR, SUB_FIELDS, TRIAL_FIELDS, SpaceField,
                     as_number, bad_value, check_task, get_dotted, is_finite, show_value, unknown_key)
from .spec import Param


def _arch_blocks(arch: str) -> int | None:
    """Number of backbone blocks ``B`` (cutoffs are ``0..B``), or None when the core cannot say."""
    try:
        return int(num_blocks(arch))
    except (ImportError, ValueError, TypeError, KeyError):
        return None


def _dependency_order(entries: Mapping[str, Any]) -> list[str]:
    """Parameter names with every ``when`` reference before its dependant (file order otherwise)."""
    deps = {}
    for name, entry in entries.items():
        when = entry.get("when") if isinstance(entry, Mapping) else None
        deps[name] = [str(r) for r in when if str(r) in entries] if isinstance(when, Mapping) else []
    order: list[str] = []
    while len(order) < len(entries):
        ready = [n for n in entries if n not in order and all(d in order for d in deps[n])]
        if not ready:
            stuck = next(n for n in entries if n not in order)
            chain = [stuck]
            while chain[-1] not in chain[:-1]:
                chain.append(next(d for d in deps[chain[-1]] if d not in order))
            raise SpaceError(f"parameters.{stuck}.when: the conditions form a cycle "
                             f"({' -> '.join(chain)}); expected conditions without cycles")
        order.append(ready[0])
    return order


class ParametersSection:
    """Turns the ``parameters`` section into Params; raises at the first problem."""

    def __init__(self, base: Mapping, tasks: Mapping[str, tuple]):
        self.base = base            # the validated fixed trial config (workload section)
        self.tasks = tasks          # active task -> metric names

    def _sweepable_names(self) -> list[str]:
        names = [k for k, f in TRIAL_FIELDS.items() if f.sweepable and f.kind != "map"]
        names += [f"{s}.{k}" for s, subs in SUB_FIELDS.items() for k in subs]
        return names + [f"loss_weights.{t}" for t in self.tasks]

    def _param_field(self, name: str) -> SpaceField:
        key = f"parameters.{name}"
        head, _, rest = name.partition(".")
        fld = TRIAL_FIELDS.get(head)
        if fld is not None and not rest:
            if not fld.sweepable:
                raise SpaceError(f"{key}: cannot be swept; expected it fixed under workload "
                                 f"(workload.{name})")
            if fld.kind == "map":
                example = f"{head}.{next(iter(SUB_FIELDS.get(head, self.tasks)))}"    # dynamic.alpha0, ...
                raise SpaceError(f"{key}: is a section; expected one of its keys, e.g. {example}")
            return fld
        if head in SUB_FIELDS and rest in SUB_FIELDS[head]:
            return SUB_FIELDS[head][rest]
        if head == "loss_weights" and rest:
            check_task(key, rest, self.tasks)
            return LOSS_WEIGHT
        if head in SUB_FIELDS and rest:
            raise unknown_key(f"parameters.{head}", rest, SUB_FIELDS[head])
        raise unknown_key("parameters", name, self._sweepable_names())

    def parse(self, section: Any) -> list[Param]:
        if section is None:
            return []
        if not isinstance(section, Mapping):
            raise bad_value("parameters", section, "is not a mapping",
                            "{name: {distribution: uniform, low: .., high: ..}, ...}")
        params: list[Param] = []
        entries = {str(name): entry for name, entry in section.items()}
        for name in _dependency_order(entries):
            entry = entries[name]
            fld = self._param_field(name)
            if get_dotted(self.base, name) is not None:
                raise SpaceError(f"parameters.{name}: also fixed as workload.{name}; expected it in one "
                                 f"place (remove one, or --set parameters.{name}={{value: X}})")
            params.append(self._param(name, fld, entry, {p.name: p for p in params}))
        self._check_cutoff(params)
        return params

    def _param(self, name: str, fld: SpaceField, entry: Any, earlier: dict[str, Param]) -> Param:
        key = f"parameters.{name}"
        if not isinstance(entry, Mapping):
            raise bad_value(key, entry, "is not a mapping",
                            "{distribution: uniform, low: .., high: ..}, {values: [..]} or {value: ..}")
        entry = dict(entry)
        for k in entry:
            if k not in PARAM_KEYS:
                raise unknown_key(key, str(k), PARAM_KEYS)
        if "q" in entry:
            if "step" in entry:
                raise SpaceError(f"{key}.q: given with step; expected only one of q and step")
            entry["step"] = entry.pop("q")
        dist = entry.get("distribution")
        if dist is None:
            dist = "categorical" if "values" in entry else "fixed" if "value" in entry else None
            if dist is None:
                raise SpaceError(f"{key}: has no distribution; expected distribution: one of "
                                 f"{', '.join(DISTRIBUTIONS)} (or values: [..] / value: X)")
        if dist not in DISTRIBUTIONS:
            raise bad_value(f"{key}.distribution", dist, "is not a known distribution",
                            f"one of {', '.join(DISTRIBUTIONS)}")
        needed = {"categorical": ("values",), "fixed": ("value",)}.get(dist, ("low", "high"))
        allowed = set(needed) | {"distribution", "when"} | ({"step"} if dist in RANGE_DISTS else set())
        for k in entry:
            if k not in allowed:
                raise SpaceError(f"{key}.{k}: not used by distribution {dist}; expected "
                                 f"{', '.join(sorted(allowed - {'distribution', 'when'}))}")
        for k in needed:
            if k not in entry:
                raise SpaceError(f"{key}: distribution {dist} needs {k}; expected {key}.{k}")
        param = Param(name=name, distribution=dist)
        if dist == "fixed":
            param.value = self._choice_value(f"{key}.value", fld, entry["value"])
        elif dist == "categorical":
            param.values = self._values(key, fld, entry["values"])
        else:
            self._range(key, fld, dist, entry, param)
        param.when = self._when(key, entry.get("when"), earlier)
        return param

    def _choice_value(self, key: str, fld: SpaceField, value: Any) -> Any:
        if not isinstance(value, SCALAR):
            raise bad_value(key, value, "is not a scalar",
                            f"{fld.expected()} (nested keys are swept by their dotted names)")
        return fld.check(key, value)

    def _values(self, key: str, fld: SpaceField, values: Any) -> tuple:
        if not isinstance(values, list) or not values:
            raise bad_value(f"{key}.values", values, "is not a non-empty list", f"a list of {fld.expected()}")
        out = tuple(self._choice_value(f"{key}.values[{i}]", fld, v) for i, v in enumerate(values))
        seen = []
        for i, v in enumerate(out):
            if any(v == s and type(v) is type(s) for s in seen):
                raise bad_value(f"{key}.values[{i}]", v, "is repeated", "distinct values")
            seen.append(v)
        return out

    def _range(self, key: str, fld: SpaceField, dist: str, entry: dict, param: Param) -> None:
        is_int = dist.startswith("int_")
        log = dist.endswith("log_uniform")
        if fld.kind not in ("int", "float") or (fld.kind == "int" and not is_int):
            fits = ("int_uniform, int_log_uniform, categorical or fixed" if fld.kind == "int"
                    else "categorical or fixed")
            raise bad_value(f"{key}.distribution", dist, f"does not fit {param.name} ({fld.expected()})", fits)
        bounds = []
        for side in ("low", "high"):
            value = entry[side]
            num = as_number(value)
            if num is None:
                raise bad_value(f"{key}.{side}", value, "is not a number", fld.expected())
            if is_int and not isinstance(num, int):
                raise bad_value(f"{key}.{side}", value, "is not an integer", f"an integer for {dist}")
            bounds.append(fld.check(f"{key}.{side}", num))
        low, high = bounds
        if log and low <= 0:
            raise bad_value(f"{key}.low", entry["low"], "is out of range",
                            f"a number > 0 for {dist} (a log scale starts above 0)")
        if not high > low:
            raise bad_value(f"{key}.high", entry["high"], f"is not above low ({show_value(low)})", "high > low")
        step = entry.get("step")
        if step is not None:
            num = as_number(step)
            if num is None or not is_finite(num) or num <= 0 or (is_int and not isinstance(num, int)):
                raise bad_value(f"{key}.step", step, "is not a valid step",
                                "a positive integer" if is_int else "a finite number > 0")
            if log and not (is_int and num == 1):
                raise bad_value(f"{key}.step", step, f"cannot be used with {dist}", "no step on a log scale")
            span = (high - low) / num
            if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)) or round(span) < 1:
                raise bad_value(f"{key}.step", step, f"does not divide high - low ({show_value(high - low)})",
                                "a step that divides the range")
            step = num
        param.low, param.high, param.step = low, high, step

    def _when(self, key: str, when: Any, earlier: dict[str, Param]) -> dict[str, tuple]:
        if when is None:
            return {}
        if not isinstance(when, Mapping) or not when:
            raise bad_value(f"{key}.when", when, "is not a mapping", "{param: [allowed values]}")
        out = {}
        for ref, allowed in when.items():
            ref = str(ref)
            rkey = f"{key}.when.{ref}"
            allowed_list = allowed if isinstance(allowed, list) else [allowed]
            if not allowed_list:
                raise bad_value(rkey, allowed, "is empty", "a list of values that enable this parameter")
            if ref in earlier:
                possible = earlier[ref].possible_values()
                if possible is None:
                    raise SpaceError(f"{rkey}: {ref} is a range ({earlier[ref].distribution}); expected a "
                                     f"categorical or fixed parameter to condition on")
                # Values the key can take at all (typos fail), not only the current choices, so that
                # narrowing a categorical with --set leaves its dependants valid (and inactive).
                fld = self._param_field(ref)
                for i, v in enumerate(allowed_list):
                    if fld.kind == "choice" or not isinstance(v, (dict, list)):
                        self._choice_value(f"{rkey}[{i}]" if isinstance(allowed, list) else rkey, fld, v)
            elif get_dotted(self.base, ref) is not None:
                head, _, rest = ref.partition(".")
                fld = SUB_FIELDS[head].get(rest) if head in SUB_FIELDS else TRIAL_FIELDS.get(ref)
                for i, v in enumerate(allowed_list):
                    if fld is not None:
                        fld.check(f"{rkey}[{i}]" if isinstance(allowed, list) else rkey, v)
            else:
                fixed = [k for k, v in self.base.items() if not isinstance(v, dict)]
                raise unknown_key(f"{key}.when", ref, list(earlier) + fixed)
            out[ref] = tuple(allowed_list)
        return out

    def _check_cutoff(self, params: list[Param]) -> None:
        by_name = {p.name: p for p in params}
        arch_param = by_name.get("arch")
        archs = arch_param.possible_values() if arch_param else (self.base.get("arch", "small"),)
        blocks = [b for b in (_arch_blocks(a) for a in archs) if b is not None]
        if not blocks:
            return
        limit = max(blocks)
        expected = f"a cutoff in 0..{limit} ({', '.join(archs)}: {limit} backbone blocks)"
        base_cutoff = self.base.get("cutoff")
        if base_cutoff is not None and base_cutoff > limit:
            raise bad_value("workload.cutoff", base_cutoff, "is out of range", expected)
        p = by_name.get("cutoff")
        if p is None:
            return
        if p.possible_values() is None:
            if p.high > limit:
                raise bad_value("parameters.cutoff.high", p.high, "is out of range", expected)
            return
        for i, v in enumerate(p.possible_values()):
            if v is not None and v > limit:
                where = "parameters.cutoff.value" if p.distribution == "fixed" else f"parameters.cutoff.values[{i}]"
                raise bad_value(where, v, "is out of range", expected)
