"""Search-space schema: what the core accepts (field tables and key lists) and the one-line errors.

Private to :mod:`sweeps.space` (which re-exports the public names). ``_Field.check`` validates one value
and raises :class:`~sweeps.errors.SpaceError` naming the dotted key, the value and what was expected.
``space.py`` keeps its own copy of the core's names so that importing it stays light (no torch); a test
checks that the two agree.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import yaml

from .errors import SpaceError

# --- what the core accepts (docs/ARCHITECTURE.md, "Trial config") -----------------------------------

WORKLOADS = ("scenes", "digits", "cues", "nyuv2", "cityscapes", "taskonomy")
REAL_DATA = ("nyuv2", "cityscapes", "taskonomy")        # need data_root
ARCHS = ("small", "deeplab_resnet34")
METHODS = ("dense", "disparse_static", "disparse_pretrained", "disparse_dynamic", "snip", "random",
           "magnitude", "rigl")
CRITERIA = ("snip", "magnitude", "taylor", "gradient")
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform", "categorical", "fixed")


def _show(value: Any) -> str:
    """A value as the user wrote it (YAML-ish)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 200 else text[:40] + f"…(shortened, {len(value)} characters)"
    if isinstance(value, int) and abs(value) >= 10 ** 30:
        digits = str(value)
        return f"{digits[:12]}…(shortened, {len(digits.lstrip('-'))} digits)"
    text = repr(value) if not isinstance(value, (dict, list)) else yaml.safe_dump(
        value, default_flow_style=True, width=10_000).strip()
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(key: str, value: Any, problem: str, expected: str) -> SpaceError:
    return SpaceError(f"{key}: {_show(value)} {problem}; expected {expected}")


def _unknown(key: str, name: str, known: Iterable[str]) -> SpaceError:
    known = sorted(known)
    hints = {"min": "low", "max": "high", "q": "step", "choices": "values", "condition": "when",
             "n_trials": "trials", "num_samples": "trials", "max_concurrent": "concurrency"}
    close = [hints[name]] if hints.get(name) in known else difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"{key}.{name}" if key else name
    return SpaceError(f"{where}: unknown key{hint}; expected one of {', '.join(known)}")


# --- field checks -------------------------------------------------------------------------------

_NUMERIC_STRING = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def _number(value: Any) -> float | int | None:
    """A number, also from YAML's strings like ``1e-4`` (PyYAML reads those as text); None if not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMERIC_STRING.match(value.strip()):
        return float(value)
    return None


def _finite(num: Any) -> bool:
    """True for a finite number; False for nan/inf and for integers too large for a float."""
    try:
        return math.isfinite(num)
    except (OverflowError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class _Field:
    kind: str                      # int | float | bool | str | choice | map | list
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    nullable: bool = False
    sweepable: bool = True
    what: str = ""                 # noun for choices ("method", "workload", ...)

    def expected(self) -> str:
        null = " or null" if self.nullable else ""
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            if self.lo is not None and self.hi is not None:
                return (f"{noun} in {'(' if self.lo_open else '['}{_num(self.lo)}, "
                        f"{_num(self.hi)}{')' if self.hi_open else ']'}{null}")
            if self.lo is not None:
                return f"{noun} {'>' if self.lo_open else '>='} {_num(self.lo)}{null}"
            return noun + null
        if self.kind == "choice":
            return f"one of {', '.join(map(str, self.choices))}{null}"
        if self.kind == "bool":
            return "true or false" + null
        if self.kind == "str":
            return "a string" + null
        if self.kind == "map":
            return "a mapping" + null
        return "a list" + null

    def check(self, key: str, value: Any) -> Any:
        """The value (numbers coerced from ``1e-4``-like strings) or a SpaceError."""
        if value is None:
            if self.nullable:
                return None
            raise _fail(key, value, "is not allowed", self.expected())
        if self.kind in ("int", "float"):
            num = _number(value)
            if num is None:
                raise _fail(key, value, "is not a number", self.expected())
            if self.kind == "int" and not isinstance(num, int):
                raise _fail(key, value, "is not an integer", self.expected())
            if not _finite(num) or not self._in_range(num):
                raise _fail(key, value, "is out of range", self.expected())
            return num
        if self.kind == "choice":
            if value not in self.choices or isinstance(value, bool) != isinstance(self.choices[0], bool):
                close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _fail(key, value, f"is not a known {self.what or 'value'}{hint}", self.expected())
            return value
        if self.kind == "bool" and not isinstance(value, bool):
            raise _fail(key, value, "is not a boolean", self.expected())
        if self.kind == "str" and not isinstance(value, str):
            raise _fail(key, value, "is not a string", self.expected())
        if self.kind == "map" and not isinstance(value, Mapping):
            raise _fail(key, value, "is not a mapping", self.expected())
        if self.kind == "list" and not isinstance(value, list):
            raise _fail(key, value, "is not a list", self.expected())
        return value

    def _in_range(self, x: float) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        if self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)):
            return False
        return True


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _int(lo=None, **kw) -> _Field:
    return _Field("int", lo=lo, **kw)


def _float(lo=None, hi=None, **kw) -> _Field:
    return _Field("float", lo=lo, hi=hi, **kw)


def _choice(choices, what, **kw) -> _Field:
    return _Field("choice", choices=tuple(choices), what=what, **kw)


FRACTION = _float(0, 1, hi_open=True)
SEED_MAX = 2 ** 32 - 1                  # numpy's limit (np.random.seed)

TRIAL_FIELDS: dict[str, _Field] = {
    "workload": _choice(WORKLOADS, "workload", sweepable=False),
    "data_root": _Field("str", nullable=True, sweepable=False),
    "image_size": _int(8, nullable=True),
    "train_size": _int(1, nullable=True),
    "test_size": _int(1, nullable=True),
    "tasks": _Field("list", nullable=True, sweepable=False),
    "arch": _choice(ARCHS, "arch"),
    "width": _int(1),
    "cutoff": _int(0, nullable=True),
    "loss_weights": _Field("map", nullable=True),
    "method": _choice(METHODS, "method"),
    "criterion": _choice(CRITERIA, "criterion", nullable=True),
    "sparsity": FRACTION,
    "distribution": _choice(("uniform", "erk"), "mask distribution"),
    "score_on": _choice(("weights", "reinit"), "scoring weights"),
    "allotment": _choice(("global", "layer", "iterative", "erk", "uniform"), "layer allotment"),
    "layer_floor": _float(0, 1),
    "score_rounds": _int(1),
    "steps": _int(1),
    "batch_size": _int(1),
    "lr": _float(0, lo_open=True),
    "weight_decay": _float(0),
    "optimizer": _choice(("adam", "sgd"), "optimizer"),
    "lr_step": _int(1, nullable=True),
    "lr_gamma": _float(0, 1, lo_open=True),
    "eval_every": _int(1, nullable=True),
    "eval_batches": _int(1, nullable=True),
    "score_batches": _int(1),
    "pretrain_steps": _int(0),
    "finetune_lr": _float(0, lo_open=True, nullable=True),
    "gradual": _Field("map", nullable=True),
    "dynamic": _Field("map", nullable=True),
    "seed": _int(0, hi=SEED_MAX),
    "device": _Field("str", sweepable=False),
    "bf16": _Field("bool"),
    "num_threads": _int(1, nullable=True),
    "checkpoint_dir": _Field("str", nullable=True, sweepable=False),
    "checkpoint_every": _int(1, nullable=True),
    "resume": _Field("bool", sweepable=False),
    "export_path": _Field("str", nullable=True, sweepable=False),
    "baseline_metrics": _Field("map", nullable=True, sweepable=False),
    "preset": _Field("str", nullable=True, sweepable=False),
}
SUB_FIELDS: dict[str, dict[str, _Field]] = {
    "gradual": {"prune_steps": _int(1), "interval": _int(1), "initial_sparsity": FRACTION},
    "dynamic": {"alpha0": _float(0, 1), "delta_t": _int(1),
                "t_end_frac": _float(0, 1, lo_open=True),
                "decay": _choice(("cosine", "linear", "constant"), "decay"),
                "grow": _choice(("exact", "union"), "grow mode"), "erk_power": _float(0),
                "dense_first": _Field("bool")},
}
LOSS_WEIGHT = _float(0)
PATH_KEYS = ("data_root", "checkpoint_dir", "export_path")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")          # use with fullmatch
# the space's name is a results folder name and the MLflow sweep id
_NAME = re.compile(r"[A-Za-z0-9_\-.]+")
NAME_MAX = 100
NAME_EXPECTED = f"letters, digits, '-', '_', '.' (a folder name), at most {NAME_MAX} characters"


# --- keys of a space file -------------------------------------------------------------------------

TOP_KEYS = ("name", "description", "workload", "parameters", "objectives", "budgets", "sampler",
            "trials", "concurrency", "resources", "early_stopping", "baseline", "max_retries")
PARAM_KEYS = ("distribution", "low", "high", "step", "q", "values", "value", "when")
RANGE_DISTS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform")
SAMPLER_OPTIONS = {"tpe": ("n_startup_trials", "multivariate"), "gp": ("n_startup_trials",),
                   "nsga2": ("population_size",), "random": ()}
_SCALAR = (str, int, float, bool, type(None))


# --- small helpers shared by validation and sampling ------------------------------------------------

def _mapping(key: str, value: Any, allowed: Iterable[str], example: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, value, "is not a mapping", example)
    allowed = tuple(allowed)
    for k in value:
        if k not in allowed:
            raise _unknown(key, str(k), allowed)
    return dict(value)


def _get_dotted(config: Mapping, name: str, default: Any = None) -> Any:
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _set_dotted(config: dict, name: str, value: Any) -> None:
    parts = name.split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _check_task(key: str, task: str, tasks: Mapping[str, Any]) -> None:
    """``task`` must be one of the workload's active ``tasks`` (loss weights are per task)."""
    if task not in tasks:
        raise _fail(key, task, "is not an active task", f"one of {', '.join(tasks)}")
