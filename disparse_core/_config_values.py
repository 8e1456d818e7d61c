"""Value checks of the trial config (private; :mod:`disparse_core.config` holds the tables that use
them, built of :class:`Field`, re-exported there): each takes the key and the value and returns the value normalised, or raises a one-line
``ValueError`` naming the key, the value and what was expected. Also the dotted-key nesting and preset
merging of ``TrialConfig.from_dict``.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .factories import check_factory


def nest_dotted(d: dict) -> dict:
    out: dict = {}
    for key, value in d.items():
        if isinstance(key, str) and "." in key:
            head, tail = key.split(".", 1)
            section = out.setdefault(head, {})
            if not isinstance(section, dict):
                raise ValueError(f"{head}: cannot set {key!r} because {head!r} is not a section")
            section.update(nest_dotted({tail: value}))
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def merge_sections(base: dict, over: Mapping) -> dict:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = merge_sections(base[key], value)
        else:
            base[key] = value
    return base


def unknown_key_message(key, known) -> str:
    close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown config key {key!r}{hint} (known keys: {', '.join(known)})"


def check_int(key, v, low=None, high=None, none=False):
    if v is None and none:
        return None
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise ValueError(f"{key}: expected an integer{' or None' if none else ''}, got {v!r}")
    v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{key}: expected an integer {bounds}, got {v}")
    return v


def check_float(key, v, low=None, high=None, low_open=False, high_open=False, none=False):
    if v is None and none:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(float(v)):
        raise ValueError(f"{key}: expected a finite number{' or None' if none else ''}, got {v!r}")
    v = float(v)
    bad = ((low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{key}: expected a number in {lo}{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}{hi}, got {v}")
    return v


def check_choice(key, v, options, none=False):
    if v is None and none:
        return None
    if v not in options:
        close = difflib.get_close_matches(str(v), list(options), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{key}: expected one of {', '.join(options)}, got {v!r}{hint}")
    return v


def check_bool(key, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{key}: expected true or false, got {v!r}")
    return bool(v)


def check_path(key, v):
    if v is None:
        return None
    if not isinstance(v, (str, Path)) or not str(v):
        raise ValueError(f"{key}: expected a path (string), got {v!r}")
    return str(v)


def check_float_dict(key, v):
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ValueError(f"{key}: expected a mapping {{name: number}}, got {v!r}")
    return {str(k): check_float(f"{key}.{k}", x) for k, x in v.items()}


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")          # use with fullmatch ("cpu\n" is no device)


def check_device(key, v):
    if not isinstance(v, str) or not DEVICE_PATTERN.fullmatch(v):
        raise ValueError(f"{key}: expected auto, cpu, cuda, cuda:<index> or mps, got {v!r}")
    return v


def check_tasks(key, v):
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v \
            or not all(isinstance(t, str) for t in v):
        raise ValueError(f"{key}: expected a non-empty list of task names, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key}: task names repeat in {list(v)!r}")
    return list(v)


@dataclass(frozen=True)
class Field:
    """What one config key accepts. ``kind``: ``int``, ``float`` (bounds ``low``/``high``, open with
    ``low_open``/``high_open``), ``choice`` (``choices``; ``what`` names them in messages), ``bool``,
    ``str``, ``path``, ``device``, ``tasks`` (a list of task names), ``float_map`` (``{name: number}``) or
    ``section`` (a mapping checked by :data:`SECTION_FIELDS`). ``nullable``: None is a value of its own."""
    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nullable: bool = False
    what: str = ""

    def check(self, key: str, value: Any) -> Any:
        """The value normalised, or a one-line ``ValueError`` naming ``key``, the value and what was expected."""
        kind = self.kind
        if kind == "int":
            return check_int(key, value, self.low, self.high, none=self.nullable)
        if kind == "float":
            return check_float(key, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open,
                          none=self.nullable)
        if kind == "choice":
            return check_choice(key, value, self.choices, none=self.nullable)
        if kind == "factory":      # a built-in name or a factory of your own (disparse_core.factories)
            return check_factory(key, value, self.choices, self.what)
        return _KIND_CHECKS[kind](key, value)


def _str(key, v):
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{key}: expected a string or None, got {v!r}")
    return v


_KIND_CHECKS = {"bool": lambda k, v: check_bool(k, v), "str": _str, "path": check_path, "device": check_device,
                "tasks": check_tasks, "float_map": check_float_dict}
