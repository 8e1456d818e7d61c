"""Search spaces: load and validate a YAML sweep file, sample trial configs, build the Optuna sampler.

``load_space(name_or_path, overrides=())`` reads a file from ``search_spaces/`` (or any path), applies
``--set KEY=VALUE`` overrides, validates everything and returns a :class:`SweepSpec`; every problem is a
:class:`~sweeps.errors.SpaceError` (or BudgetError) whose one-line message names the dotted key, the
value and what was expected. ``suggest(spec, trial)`` samples one trial config define-by-run;
``make_sampler(spec)`` builds the Optuna sampler. The YAML syntax is documented in
docs/search-spaces.md.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from .budgets import GLOBAL_METRICS, Budget, higher_is_better, parse_budgets
from .errors import BudgetError, SpaceError

__all__ = [
    "DEFAULT_SPACE",
    "Param",
    "Objective",
    "SweepSpec",
    "load_space",
    "apply_overrides",
    "parse_overrides",
    "space_from_dict",
    "list_spaces",
    "suggest",
    "make_sampler",
    "directions",
    "ConstraintsFromUserAttrs",
]

DEFAULT_SPACE = "dynamic"
"""The space ``tune.py`` runs when ``--space`` is not given (search_spaces/dynamic.yaml)."""

SPACE_DIRS = (Path.cwd, lambda: Path(__file__).resolve().parent.parent)   # each + "/search_spaces"

# --- what the core accepts (docs/ARCHITECTURE.md, "Trial config") -----------------------------------

WORKLOADS = ("scenes", "digits", "nyuv2", "cityscapes", "taskonomy")
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
        return repr(value)
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
            if not math.isfinite(num) or not self._in_range(num):
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
    "seed": _int(0),
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
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


# --- knowledge from the core (lazy; torch loads only when these are needed) ----------------------------

def workload_tasks(name: str, tasks: Sequence[str] | None = None) -> dict[str, tuple[tuple[str, ...], str]]:
    """``{task: (metric names, primary metric)}`` of a workload (its default tasks, or ``tasks``).

    Raises ``ValueError`` (from the core) for an unknown workload or task.
    """
    from disparse_core.data import workload_tasks as core_workload_tasks
    return {t: (tuple(info.metrics), info.primary) for t, info in core_workload_tasks(name, tasks).items()}


def _core_presets() -> dict:
    from disparse_core.trial import PRESETS
    return PRESETS


def _arch_blocks(arch: str) -> int | None:
    """Number of backbone blocks ``B`` (cutoffs are ``0..B``), or None when the core cannot say."""
    try:
        from disparse_core.models import num_blocks
        return int(num_blocks(arch))
    except (ImportError, ValueError, TypeError, KeyError):
        return None


# --- the spec -----------------------------------------------------------------------------------

@dataclass
class Param:
    """One entry of ``parameters``: how to sample the trial config key ``name`` (dotted = nested)."""

    name: str
    distribution: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    values: tuple = ()
    value: Any = None
    when: dict[str, tuple] = field(default_factory=dict)

    def to_dict(self) -> dict:
        if self.distribution == "fixed":
            out: dict[str, Any] = {"value": self.value}
        elif self.distribution == "categorical":
            out = {"values": list(self.values)}
        else:
            out = {"distribution": self.distribution, "low": self.low, "high": self.high}
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out

    def possible_values(self) -> tuple | None:
        """The finite set of values this parameter can take, or None for a range."""
        if self.distribution == "fixed":
            return (self.value,)
        if self.distribution == "categorical":
            return self.values
        return None


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str          # "maximize" | "minimize"


@dataclass
class SweepSpec:
    """A validated search space. Plain data; ``to_dict()`` gives a loadable, loggable mapping."""

    name: str
    workload: dict                      # the fixed trial-config base (nested dicts, absolute paths)
    parameters: list[Param]
    objectives: list[Objective]
    budgets: list[Budget]
    sampler: dict                       # {type, seed, ...options with defaults filled in}
    trials: int
    concurrency: int
    resources: dict                     # {cpu, gpu}
    early_stopping: dict                # {type: none} or {type: asha, metric, mode, grace_steps, reduction_factor}
    baseline: bool
    max_retries: int
    description: str = ""
    tasks: dict = field(default_factory=dict)      # active tasks → tuple of metric names
    path: str | None = None                        # the resolved file (None when built from a dict)
    raw_text: str = ""                             # the file as read, for logging
    raw: dict = field(default_factory=dict)        # the mapping as parsed, before overrides
    overrides: tuple = ()                          # the ``--set`` overrides applied, in order

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def param(self) -> dict[str, Param]:
        return {p.name: p for p in self.parameters}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "workload": copy.deepcopy(self.workload),
            "parameters": {p.name: p.to_dict() for p in self.parameters},
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
            "budgets": [b.text for b in self.budgets],
            "sampler": dict(self.sampler),
            "trials": self.trials,
            "concurrency": self.concurrency,
            "resources": dict(self.resources),
            "early_stopping": dict(self.early_stopping),
            "baseline": self.baseline,
            "max_retries": self.max_retries,
        }


def directions(spec: SweepSpec) -> list[str]:
    """Optuna directions of the objectives, in order."""
    return [o.direction for o in spec.objectives]


# --- YAML reading ----------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain safe_load keeps the last one silently)."""


def _mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"{where}: invalid YAML{at}: {problem}; expected a YAML mapping "
                         f"(see docs/search-spaces.md)") from None


def list_spaces() -> list[str]:
    """Names of the spaces found in ./search_spaces and the project's search_spaces/."""
    names = set()
    for root in SPACE_DIRS:
        folder = root() / "search_spaces"
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.y*ml"))
    return sorted(names)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    given = Path(text).expanduser()
    if given.is_file():
        return given.resolve()
    bare = os.sep not in text and "/" not in text
    if bare:
        stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
        for root in SPACE_DIRS:
            for suffix in (".yaml", ".yml"):
                candidate = root() / "search_spaces" / (stem + suffix)
                if candidate.is_file():
                    return candidate.resolve()
    known = list_spaces()
    close = difflib.get_close_matches(Path(text).stem, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpaceError(f"space: {text!r} not found{hint}; expected a YAML file path or one of "
                     f"{', '.join(known) or '(none found)'} from search_spaces/")


def load_space(name_or_path: str | os.PathLike = DEFAULT_SPACE, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override and validate a search space. Raises SpaceError/BudgetError (one line)."""
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceError(f"space: {str(path)!r} cannot be read ({err.__class__.__name__}); "
                         f"expected a readable UTF-8 YAML file") from None
    raw = _parse_yaml(text, str(path))
    return space_from_dict(raw, overrides, path=str(path), raw_text=text, default_name=path.stem)


def apply_overrides(spec: SweepSpec, overrides: Sequence[str]) -> SweepSpec:
    """A new spec: ``spec``'s source with ``overrides`` (``["trials=4", "workload.data_root=/x"]``)
    applied after its own, validated like the file."""
    return space_from_dict(spec.raw, tuple(spec.overrides) + tuple(overrides), path=spec.path,
                           raw_text=spec.raw_text, default_name=spec.name)


def space_from_dict(raw: Any, overrides: Sequence[str] = (), *, path: str | None = None,
                    raw_text: str = "", default_name: str = "sweep") -> SweepSpec:
    """Validate a parsed mapping (plus overrides) into a SweepSpec."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"space: {_show(raw)} is not a mapping; expected a YAML mapping with "
                         f"workload, parameters, objectives, ... (see docs/search-spaces.md)")
    data = copy.deepcopy(dict(raw))
    for item in parse_overrides(overrides):
        data = _apply_override(data, *item)
    data = _interpolate(data, "")
    spec = _Validator(data, default_name).run()
    spec.path, spec.raw_text, spec.raw, spec.overrides = path, raw_text, copy.deepcopy(dict(raw)), tuple(overrides)
    return spec


# --- overrides and ${ENV} interpolation -----------------------------------------------------------------

def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any, str]]:
    """``"a.b=VALUE"`` → ``(key, yaml value, original text)``; SpaceError if malformed."""
    if isinstance(overrides, str):
        overrides = [overrides]
    out = []
    for text in overrides:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][\w\-]*(\.[\w\-]+)*$", key):
            raise SpaceError(f"--set {str(text)!r}: cannot parse; expected KEY=VALUE with a dotted "
                             f"KEY, e.g. trials=4 or workload.data_root=/data/nyuv2")
        out.append((key, _override_value(value, str(text)), str(text)))
    return out


def _override_value(value: str, text: str) -> Any:
    """YAML for ``4``, ``[a, b]``, ``{value: 1}``; plain text for what YAML rejects (``>=20``)."""
    if not value.strip():
        return None
    try:
        return yaml.load(value, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        if value.lstrip().startswith(("{", "[")):
            return _parse_yaml(value, f"--set {text!r}")     # raises with the position
        return value.strip()


def _budget_dict(budgets: Any) -> Any:
    if not isinstance(budgets, list):
        return budgets
    out = {}
    for item in budgets:
        m = re.match(r"^\s*([A-Za-z_][\w.\-]*?)\s*(>=|<=|=)\s*(.*)$", str(item))
        if not m:
            raise BudgetError(f"budget {item!r}: cannot parse; expected METRIC=-2%, METRIC>=X or METRIC<=X")
        out[m[1]] = m[3] if m[2] == "=" else m[2] + m[3]
    return out


def _apply_override(data: dict, key: str, value: Any, text: str) -> dict:
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return data
    section = data.get(head)
    if head == "budgets":
        section = _budget_dict(section) or {}
        if value is None:
            section.pop(rest, None)
        else:
            section[rest] = value
        data[head] = section
        return data
    if head == "parameters":
        section = section if isinstance(section, dict) else {}
        names = sorted((n for n in section if rest == n or rest.startswith(n + ".")), key=len)
        if names and names[-1] != rest:
            name, sub = names[-1], rest[len(names[-1]) + 1:]
            entry = section[name] if isinstance(section[name], dict) else {}
            entry[sub] = value
            section[name] = entry
        else:
            # shorthand: a list is a categorical, a scalar a fixed value
            section[rest] = (value if isinstance(value, dict) or value is None
                             else {"values": value} if isinstance(value, list) else {"value": value})
            if value is None:
                section.pop(rest)
        data[head] = section
        return data
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise _fail(head, section, f"cannot take --set {text!r}", "a mapping")
    if head == "workload":
        section = _expand_dotted(section, "workload")
    node = section
    parts = rest.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value is None and head == "workload":
        node.pop(parts[-1], None)          # null removes a fixed key (the core's default applies)
    else:
        node[parts[-1]] = value
    data[head] = section
    return data


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, key: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings; an unset VAR without default is an error."""
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        env = os.environ.get(m[1])
        if env is not None and env != "":
            return env
        if m[2] is not None:
            return m[2]
        raise SpaceError(f"{key}: {value!r} uses ${{{m[1]}}}, which is not set; expected the "
                         f"environment variable {m[1]} set or --set {key}=VALUE")
    return _ENV.sub(sub, value)


def _expand_dotted(section: Mapping, where: str) -> dict:
    """``{"dynamic.alpha0": 0.3}`` → ``{"dynamic": {"alpha0": 0.3}}``; a key given twice is an error."""
    out: dict = {}
    for key, value in section.items():
        if not isinstance(key, str):
            raise _fail(f"{where}.{key}", key, "is not a string key", "string keys")
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            existing = node.get(part)
            if existing is None:
                node[part] = existing = {}
            if not isinstance(existing, dict):
                raise SpaceError(f"{where}.{'.'.join(parts[:i + 1])}: given twice (as a value and as "
                                 f"a section); expected one of the two")
            node = existing
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            for sub_key, sub_value in _expand_dotted(value, f"{where}.{key}").items():
                if sub_key in node[leaf]:
                    raise SpaceError(f"{where}.{key}.{sub_key}: given twice; expected it once")
                node[leaf][sub_key] = sub_value
        elif leaf in node:
            raise SpaceError(f"{where}.{key}: given twice; expected it once")
        else:
            node[leaf] = _expand_dotted(value, f"{where}.{key}") if (
                isinstance(value, Mapping) and leaf in SUB_FIELDS) else value
    return out


# --- validation -----------------------------------------------------------------------------------

TOP_KEYS = ("name", "description", "workload", "parameters", "objectives", "budgets", "sampler",
            "trials", "concurrency", "resources", "early_stopping", "baseline", "max_retries")
PARAM_KEYS = ("distribution", "low", "high", "step", "q", "values", "value", "when")
RANGE_DISTS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform")
SAMPLER_OPTIONS = {"tpe": ("n_startup_trials", "multivariate"), "gp": ("n_startup_trials",),
                   "nsga2": ("population_size",), "random": ()}
_SCALAR = (str, int, float, bool, type(None))


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


class _Validator:
    """Turns a parsed mapping into a SweepSpec; raises at the first problem."""

    def __init__(self, data: dict, default_name: str):
        self.data = data
        self.default_name = default_name

    def run(self) -> SweepSpec:
        data = self.data
        for key in data:
            if key not in TOP_KEYS:
                raise _unknown("", str(key), TOP_KEYS)
        name = data.get("name", self.default_name)
        if not isinstance(name, str) or not name.strip():
            raise _fail("name", name, "is not a name", "a non-empty string")
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise _fail("description", description, "is not a string", "a string")
        self.base = self._workload(data.get("workload"))
        self.params = self._parameters(data.get("parameters"))
        self.baseline = data.get("baseline", True)
        if not isinstance(self.baseline, bool):
            raise _fail("baseline", self.baseline, "is not a boolean", "true or false")
        self.known_metrics = {f"{t}.{m}" for t, ms in self.tasks.items() for m in ms} | set(GLOBAL_METRICS)
        objectives = self._objectives(data.get("objectives"))
        budgets = self._budgets(data.get("budgets"))
        trials = _int(1).check("trials", data.get("trials", 10))
        concurrency = _int(1).check("concurrency", data.get("concurrency", 1))
        max_retries = _int(0).check("max_retries", data.get("max_retries", 1))
        spec = SweepSpec(
            name=name.strip(), description=description, workload=self.base, parameters=self.params,
            objectives=objectives, budgets=budgets, sampler=self._sampler(data.get("sampler"), trials),
            trials=trials, concurrency=concurrency, resources=self._resources(data.get("resources")),
            early_stopping=self._early_stopping(data.get("early_stopping"), objectives),
            baseline=self.baseline, max_retries=max_retries, tasks=dict(self.tasks))
        _check_with_core(spec)
        return spec

    # workload ---------------------------------------------------------------------------------
    def _workload(self, section: Any) -> dict:
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise _fail("workload", section, "is not a mapping",
                        "the fixed trial config, e.g. {workload: scenes, arch: small, steps: 200}")
        base = _expand_dotted(section, "workload")
        for key in base:
            if key not in TRIAL_FIELDS:
                raise _unknown("workload", key, TRIAL_FIELDS)
        base = self._preset(base)
        base.setdefault("workload", "scenes")
        workload = TRIAL_FIELDS["workload"].check("workload.workload", base["workload"])
        for key, value in list(base.items()):
            base[key] = self._value(f"workload.{key}", TRIAL_FIELDS[key], value)
        tasks = base.get("tasks")
        if tasks is not None and (not tasks or len(set(map(str, tasks))) != len(tasks)):
            raise _fail("workload.tasks", tasks, "is empty or repeats a task",
                        f"a list of distinct tasks of {workload}")
        try:
            infos = workload_tasks(workload, tasks)
        except ValueError as err:
            raise SpaceError(f"workload.tasks: {_show(tasks)}: {err}") from None
        self.tasks = {t: metrics for t, (metrics, _) in infos.items()}
        self.primary = {t: primary for t, (_, primary) in infos.items()}
        for task, weight in (base.get("loss_weights") or {}).items():
            self._value(f"workload.loss_weights.{task}", LOSS_WEIGHT, weight)
            self._loss_task(f"workload.loss_weights.{task}", task)
        if base.get("loss_weights"):
            base["loss_weights"] = {t: _number(w) for t, w in base["loss_weights"].items()}
        for metric, value in (base.get("baseline_metrics") or {}).items():
            if _number(value) is None:
                raise _fail(f"workload.baseline_metrics.{metric}", value, "is not a number", "a number")
        if "device" in base and not _DEVICE.match(str(base["device"])):
            raise _fail("workload.device", base["device"], "is not a device", "auto, cpu, cuda or cuda:N")
        for key in PATH_KEYS:
            if base.get(key):
                base[key] = str(Path(base[key]).expanduser().resolve())
        if workload in REAL_DATA:
            root = base.get("data_root")
            if not root:
                raise _fail("workload.data_root", root, f"is missing for {workload}",
                            "the data set folder, e.g. --set workload.data_root=/data/" + workload)
            if not Path(root).is_dir():
                raise _fail("workload.data_root", root, "is not a folder",
                            f"an existing folder holding the {workload} data")
        return base

    def _preset(self, base: dict) -> dict:
        """``preset: NAME`` in the workload: the core's named settings, overridden by the other keys."""
        name = base.pop("preset", None)
        if name is None:
            return base
        presets = _core_presets()
        if name not in presets:
            raise _fail("workload.preset", name, "is not a known preset", f"one of {', '.join(presets)}")
        merged = copy.deepcopy(presets[name])
        for key, value in base.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        return merged

    def _value(self, key: str, fld: _Field, value: Any) -> Any:
        value = fld.check(key, value)
        name = key.rsplit(".", 1)[-1]
        if fld.kind == "map" and name in SUB_FIELDS and value is not None:
            subs = SUB_FIELDS[name]
            for sub, sub_value in value.items():
                if sub not in subs:
                    raise _unknown(key, str(sub), subs)
                value[sub] = subs[sub].check(f"{key}.{sub}", sub_value)
        if fld.kind == "map" and value is not None and name in ("loss_weights", "baseline_metrics"):
            value = dict(value)
        return value

    def _loss_task(self, key: str, task: str) -> None:
        if task not in self.tasks:
            raise _fail(key, task, "is not an active task", f"one of {', '.join(self.tasks)}")

    # parameters -------------------------------------------------------------------------------
    def _sweepable_names(self) -> list[str]:
        names = [k for k, f in TRIAL_FIELDS.items() if f.sweepable and f.kind != "map"]
        names += [f"{s}.{k}" for s, subs in SUB_FIELDS.items() for k in subs]
        return names + [f"loss_weights.{t}" for t in self.tasks]

    def _param_field(self, name: str) -> _Field:
        key = f"parameters.{name}"
        head, _, rest = name.partition(".")
        fld = TRIAL_FIELDS.get(head)
        if fld is not None and not rest:
            if not fld.sweepable:
                raise SpaceError(f"{key}: cannot be swept; expected it fixed under workload "
                                 f"(workload.{name})")
            if fld.kind == "map":
                example = f"{head}.alpha0" if head == "dynamic" else f"{head}.{next(iter(SUB_FIELDS.get(head, self.tasks)))}"
                raise SpaceError(f"{key}: is a section; expected one of its keys, e.g. {example}")
            return fld
        if head in SUB_FIELDS and rest in SUB_FIELDS[head]:
            return SUB_FIELDS[head][rest]
        if head == "loss_weights" and rest:
            self._loss_task(key, rest)
            return LOSS_WEIGHT
        if head in SUB_FIELDS and rest:
            raise _unknown(f"parameters.{head}", rest, SUB_FIELDS[head])
        raise _unknown("parameters", name, self._sweepable_names())

    def _parameters(self, section: Any) -> list[Param]:
        if section is None:
            return []
        if not isinstance(section, Mapping):
            raise _fail("parameters", section, "is not a mapping",
                        "{name: {distribution: uniform, low: .., high: ..}, ...}")
        params: list[Param] = []
        entries = {str(name): entry for name, entry in section.items()}
        for name in _dependency_order(entries):
            entry = entries[name]
            fld = self._param_field(name)
            if _get_dotted(self.base, name) is not None:
                raise SpaceError(f"parameters.{name}: also fixed as workload.{name}; expected it in one "
                                 f"place (remove one, or --set parameters.{name}={{value: X}})")
            params.append(self._param(name, fld, entry, {p.name: p for p in params}))
        self._check_cutoff(params)
        return params

    def _param(self, name: str, fld: _Field, entry: Any, earlier: dict[str, Param]) -> Param:
        key = f"parameters.{name}"
        if not isinstance(entry, Mapping):
            raise _fail(key, entry, "is not a mapping",
                        "{distribution: uniform, low: .., high: ..}, {values: [..]} or {value: ..}")
        entry = dict(entry)
        for k in entry:
            if k not in PARAM_KEYS:
                raise _unknown(key, str(k), PARAM_KEYS)
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
            raise _fail(f"{key}.distribution", dist, "is not a known distribution",
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
            param.value = self._choice_value(f"{key}.value", fld, name, entry["value"])
        elif dist == "categorical":
            param.values = self._values(key, fld, name, entry["values"])
        else:
            self._range(key, fld, dist, entry, param)
        param.when = self._when(key, entry.get("when"), earlier)
        return param

    def _choice_value(self, key: str, fld: _Field, name: str, value: Any) -> Any:
        if not isinstance(value, _SCALAR):
            raise _fail(key, value, "is not a scalar",
                        f"{fld.expected()} (nested keys are swept by their dotted names)")
        return fld.check(key, value)

    def _values(self, key: str, fld: _Field, name: str, values: Any) -> tuple:
        if not isinstance(values, list) or not values:
            raise _fail(f"{key}.values", values, "is not a non-empty list", f"a list of {fld.expected()}")
        out = tuple(self._choice_value(f"{key}.values[{i}]", fld, name, v) for i, v in enumerate(values))
        seen = []
        for i, v in enumerate(out):
            if any(v == s and type(v) is type(s) for s in seen):
                raise _fail(f"{key}.values[{i}]", v, "is repeated", "distinct values")
            seen.append(v)
        return out

    def _range(self, key: str, fld: _Field, dist: str, entry: dict, param: Param) -> None:
        is_int = dist.startswith("int_")
        log = dist.endswith("log_uniform")
        if fld.kind not in ("int", "float") or (fld.kind == "int" and not is_int):
            fits = ("int_uniform, int_log_uniform, categorical or fixed" if fld.kind == "int"
                    else "categorical or fixed")
            raise _fail(f"{key}.distribution", dist, f"does not fit {param.name} ({fld.expected()})", fits)
        bounds = []
        for side in ("low", "high"):
            value = entry[side]
            num = _number(value)
            if num is None:
                raise _fail(f"{key}.{side}", value, "is not a number", fld.expected())
            if is_int and not isinstance(num, int):
                raise _fail(f"{key}.{side}", value, "is not an integer", f"an integer for {dist}")
            bounds.append(fld.check(f"{key}.{side}", num))
        low, high = bounds
        if log and low <= 0:
            raise _fail(f"{key}.low", entry["low"], "is out of range",
                        f"a number > 0 for {dist} (a log scale starts above 0)")
        if not high > low:
            raise _fail(f"{key}.high", entry["high"], f"is not above low ({_show(low)})", "high > low")
        step = entry.get("step")
        if step is not None:
            num = _number(step)
            if num is None or num <= 0 or (is_int and not isinstance(num, int)):
                raise _fail(f"{key}.step", step, "is not a valid step",
                            "a positive integer" if is_int else "a positive number")
            if log and not (is_int and num == 1):
                raise _fail(f"{key}.step", step, f"cannot be used with {dist}", "no step on a log scale")
            span = (high - low) / num
            if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)) or round(span) < 1:
                raise _fail(f"{key}.step", step, f"does not divide high - low ({_show(high - low)})",
                            "a step that divides the range")
            step = num
        param.low, param.high, param.step = low, high, step

    def _when(self, key: str, when: Any, earlier: dict[str, Param]) -> dict[str, tuple]:
        if when is None:
            return {}
        if not isinstance(when, Mapping) or not when:
            raise _fail(f"{key}.when", when, "is not a mapping", "{param: [allowed values]}")
        out = {}
        for ref, allowed in when.items():
            ref = str(ref)
            rkey = f"{key}.when.{ref}"
            allowed_list = allowed if isinstance(allowed, list) else [allowed]
            if not allowed_list:
                raise _fail(rkey, allowed, "is empty", "a list of values that enable this parameter")
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
                        self._choice_value(f"{rkey}[{i}]" if isinstance(allowed, list) else rkey, fld, ref, v)
            elif _get_dotted(self.base, ref) is not None:
                head, _, rest = ref.partition(".")
                fld = SUB_FIELDS[head].get(rest) if head in SUB_FIELDS else TRIAL_FIELDS.get(ref)
                for i, v in enumerate(allowed_list):
                    if fld is not None:
                        fld.check(f"{rkey}[{i}]" if isinstance(allowed, list) else rkey, v)
            else:
                fixed = [k for k, v in self.base.items() if not isinstance(v, dict)]
                raise _unknown(f"{key}.when", ref, list(earlier) + fixed)
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
            raise _fail("workload.cutoff", base_cutoff, "is out of range", expected)
        p = by_name.get("cutoff")
        if p is None:
            return
        if p.possible_values() is None:
            if p.high > limit:
                raise _fail("parameters.cutoff.high", p.high, "is out of range", expected)
            return
        for i, v in enumerate(p.possible_values()):
            if v is not None and v > limit:
                where = "parameters.cutoff.value" if p.distribution == "fixed" else f"parameters.cutoff.values[{i}]"
                raise _fail(where, v, "is out of range", expected)

    # objectives, budgets, run settings ---------------------------------------------------------------
    def _has_baseline(self) -> bool:
        return self.baseline or bool(self.base.get("baseline_metrics"))

    def _metric(self, key: str, name: Any) -> str:
        if not isinstance(name, str) or name not in self.known_metrics:
            close = difflib.get_close_matches(str(name), sorted(self.known_metrics), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(key, name, f"is not a metric of this workload{hint}",
                        f"one of {', '.join(sorted(self.known_metrics))}")
        if name == "delta_m" and not self._has_baseline():
            raise _fail(key, name, "needs the dense baseline, but baseline is false",
                        "baseline: true or workload.baseline_metrics")
        return name

    def _objectives(self, section: Any) -> list[Objective]:
        if section is None:
            section = ["compression", "delta_m"] if self._has_baseline() else (
                ["compression"] + [f"{t}.{m}" for t, m in self.primary.items()])
        if isinstance(section, str):
            section = [section]
        if not isinstance(section, list) or not section:
            raise _fail("objectives", section, "is not a non-empty list", "e.g. [compression, delta_m]")
        out: list[Objective] = []
        for i, item in enumerate(section):
            key = f"objectives[{i}]"
            if isinstance(item, Mapping):
                item = _mapping(key, item, ("name", "direction"), "{name: .., direction: ..}")
                name, direction = item.get("name"), item.get("direction")
            else:
                name, direction = item, None
            name = self._metric(f"{key}.name" if isinstance(section[i], Mapping) else key, name)
            if direction is None:
                direction = "maximize" if higher_is_better(name) else "minimize"
            elif direction not in ("maximize", "minimize"):
                raise _fail(f"{key}.direction", direction, "is not a direction", "maximize or minimize")
            if any(o.name == name for o in out):
                raise _fail(key, name, "is listed twice", "distinct objectives")
            out.append(Objective(name, direction))
        return out

    def _budgets(self, section: Any) -> list[Budget]:
        budgets = parse_budgets(section, known_metrics=self.known_metrics)
        for b in budgets:
            if b.relative and not self._has_baseline():
                raise BudgetError(f"budget {b.text!r}: relative to the dense baseline, but baseline is "
                                  f"false; expected baseline: true or an absolute bound such as "
                                  f"{b.metric}{'>=' if b.higher_is_better else '<='}X")
        return budgets

    def _sampler(self, section: Any, trials: int) -> dict:
        if isinstance(section, str):
            section = {"type": section}
        keys = ("type", "seed") + tuple(sorted({o for opts in SAMPLER_OPTIONS.values() for o in opts}))
        section = _mapping("sampler", section, keys, "{type: tpe, seed: 0}")
        kind = _choice(SAMPLERS, "sampler").check("sampler.type", section.get("type", "tpe"))
        for k in section:
            if k not in ("type", "seed") and k not in SAMPLER_OPTIONS[kind]:
                raise SpaceError(f"sampler.{k}: does not apply to type {kind}; expected "
                                 f"{', '.join(('seed',) + SAMPLER_OPTIONS[kind])}")
        out = {"type": kind, "seed": _int(0, nullable=True).check("sampler.seed", section.get("seed", 0))}
        if "n_startup_trials" in SAMPLER_OPTIONS[kind]:
            out["n_startup_trials"] = _int(0).check(
                "sampler.n_startup_trials", section.get("n_startup_trials", min(10, max(2, trials // 3))))
        if kind == "tpe":
            out["multivariate"] = _Field("bool").check("sampler.multivariate", section.get("multivariate", False))
        if kind == "nsga2":
            out["population_size"] = _int(2).check(
                "sampler.population_size", section.get("population_size", min(50, max(4, trials // 4))))
        return out

    def _resources(self, section: Any) -> dict:
        section = _mapping("resources", section, ("cpu", "gpu"), "{cpu: 1, gpu: 0}")
        cpu = _float(0).check("resources.cpu", section.get("cpu", 1))
        gpu = _float(0).check("resources.gpu", section.get("gpu", 0))
        if gpu > 1 and not float(gpu).is_integer():
            raise _fail("resources.gpu", gpu, "is a fraction above 1", "a fraction up to 1 or a whole number")
        if cpu == 0 and gpu == 0:
            raise _fail("resources", section, "asks for nothing", "cpu > 0 or gpu > 0 per trial")
        return {"cpu": cpu, "gpu": gpu}

    def _steps_range(self) -> tuple[int | None, int | None]:
        p = {q.name: q for q in self.params}.get("steps")
        if p is None:
            steps = self.base.get("steps")
            return steps, steps
        values = p.possible_values()
        if values is None:
            return p.low, p.high
        return min(values), max(values)

    def _early_stopping(self, section: Any, objectives: list[Objective]) -> dict:
        section = _mapping("early_stopping", section,
                           ("type", "metric", "grace_steps", "reduction_factor"), "{type: none} or {type: asha, ...}")
        kind = _choice(("none", "asha"), "early-stopping type").check(
            "early_stopping.type", section.get("type", "none") or "none")
        if kind == "none":
            extra = [k for k in section if k != "type"]
            if extra:
                raise SpaceError(f"early_stopping.{extra[0]}: given with type none; expected type: asha")
            return {"type": "none"}
        default = "delta_m" if self._has_baseline() else next(
            (o.name for o in objectives if "." in o.name), f"{next(iter(self.primary.items()))[0]}."
                                                          f"{next(iter(self.primary.values()))}")
        metric = self._metric("early_stopping.metric", section.get("metric", default))
        low_steps, high_steps = self._steps_range()
        grace = section.get("grace_steps", max(1, low_steps // 4) if low_steps else None)
        if grace is not None:
            grace = _int(1).check("early_stopping.grace_steps", grace)
            if low_steps is not None and grace >= low_steps:
                raise _fail("early_stopping.grace_steps", grace, f"is not below the trial length "
                            f"({low_steps} steps)", "fewer grace steps than a trial runs")
        factor = _float(1, lo_open=True).check("early_stopping.reduction_factor",
                                               section.get("reduction_factor", 3))
        return {"type": "asha", "metric": metric,
                "mode": "max" if higher_is_better(metric) else "min",
                "grace_steps": grace, "reduction_factor": factor, "max_steps": high_steps}


# --- combinations, checked by the core's own validator ----------------------------------------------

class _PickTrial:
    """A stand-in for ``optuna.Trial`` that answers from ``pick(param_name, candidates)``."""

    def __init__(self, spec: SweepSpec, pick):
        self._param = spec.param
        self._pick = pick
        self.params: dict[str, Any] = {}

    def _answer(self, name: str) -> Any:
        self.params[name] = value = self._pick(self._param[name])
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self._answer(name)

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self._answer(name)

    def suggest_categorical(self, name, choices):
        return self._answer(name)


def _candidates(p: Param) -> tuple:
    return p.possible_values() or (p.low, p.high)


def _random_value(p: Param, rng) -> Any:
    if p.possible_values() is not None:
        return rng.choice(p.possible_values())
    if p.distribution.endswith("log_uniform"):
        value = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    else:
        value = rng.uniform(p.low, p.high)
    if p.step:
        value = p.low + round((value - p.low) / p.step) * p.step
    return int(round(value)) if p.distribution.startswith("int_") else min(max(value, p.low), p.high)


def _probe_picks(spec: SweepSpec, n_random: int = 16):
    """Pickers covering every candidate of every parameter (others at their first), both corners, and
    ``n_random`` seeded random combinations."""
    import random
    yield lambda p: _candidates(p)[0]
    yield lambda p: _candidates(p)[-1]
    for target in spec.parameters:
        for value in _candidates(target)[1:]:
            yield lambda p, t=target.name, v=value: v if p.name == t else _candidates(p)[0]
    rng = random.Random(0)
    for _ in range(n_random):
        seed = rng.random()
        yield lambda p, r=random.Random(seed): _random_value(p, r)


def _check_with_core(spec: SweepSpec) -> None:
    """Every combination probed must pass ``disparse_core.trial.TrialConfig.from_dict`` (criterion vs
    method, pretrain_steps vs steps, width vs arch, ...), so a bad space fails before any trial starts."""
    from disparse_core.trial import TrialConfig
    for pick in _probe_picks(spec):
        trial = _PickTrial(spec, pick)
        config = suggest(spec, trial)
        try:
            TrialConfig.from_dict(config)
        except ValueError as err:
            chosen = ", ".join(f"{k}={_show(v)}" for k, v in trial.params.items())
            where = f" (sampling {chosen})" if chosen else ""
            text = str(err).rstrip(".")
            raise SpaceError(f"trial config {text}{where}; expected every combination the space can sample "
                             f"to be a valid trial config (fix workload or parameters)") from None


# --- sampling ---------------------------------------------------------------------------------------

_MISSING = object()


def _is_active(param: Param, chosen: Mapping[str, Any], base: Mapping) -> bool:
    """Every ``when`` holds: the referenced parameter was sampled (or is fixed in the base) with an
    allowed value (compared with its type, so ``1`` does not match ``true``)."""
    for ref, allowed in param.when.items():
        value = chosen[ref] if ref in chosen else _get_dotted(base, ref, _MISSING)
        if value is _MISSING or not any(value == a and type(value) is type(a) for a in allowed):
            return False
    return True


def suggest(spec: SweepSpec, trial: Any) -> dict:
    """Sample one trial config define-by-run: the fixed base merged with the active parameters.

    ``trial`` is an ``optuna.Trial`` (or ``optuna.trial.FixedTrial``). A conditional parameter is asked
    for only when its ``when`` holds for the values chosen before it; fixed parameters never reach Optuna.
    """
    config = copy.deepcopy(spec.workload)
    chosen: dict[str, Any] = {}
    for p in spec.parameters:
        if not _is_active(p, chosen, spec.workload):
            continue                       # a condition fails, or it depends on an inactive parameter
        if p.distribution == "fixed":
            value = p.value
        elif p.distribution == "categorical":
            value = trial.suggest_categorical(p.name, list(p.values))
        elif p.distribution in ("uniform", "log_uniform"):
            value = trial.suggest_float(p.name, float(p.low), float(p.high),
                                        step=None if p.step is None else float(p.step),
                                        log=p.distribution == "log_uniform")
        else:
            log = p.distribution == "int_log_uniform"
            value = trial.suggest_int(p.name, int(p.low), int(p.high),
                                      step=1 if log or p.step is None else int(p.step), log=log)
        chosen[p.name] = value
        _set_dotted(config, p.name, value)
    return config


class ConstraintsFromUserAttrs:
    """Optuna ``constraints_func``: ``trial.user_attrs["constraints"]`` (set by the searcher before
    ``tell``). A trial without them (pruned, or told without metrics) counts as infeasible."""

    def __init__(self, count: int):
        self.count = count

    def __call__(self, trial: Any) -> tuple[float, ...]:
        from .budgets import MISSING_VIOLATION
        values = trial.user_attrs.get("constraints")
        if not isinstance(values, (list, tuple)) or len(values) != self.count:
            return (MISSING_VIOLATION,) * self.count
        out = []
        for v in values:
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = math.nan
            out.append(v if math.isfinite(v) else MISSING_VIOLATION)
        return tuple(out)


def make_sampler(spec: SweepSpec):
    """The Optuna sampler named by ``spec.sampler``, seeded; with budgets, TPE, NSGA-II and GP get a
    ``constraints_func`` that reads ``trial.user_attrs["constraints"]`` (random ignores budgets)."""
    import optuna

    opts = spec.sampler
    seed = opts.get("seed")
    constraints = ConstraintsFromUserAttrs(len(spec.budgets)) if spec.budgets else None
    kind = opts["type"]
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # Optuna 5 deprecates constraints_func (removal planned for v7) in favour of
        # Trial.set_constraint; ARCHITECTURE.md fixes the user_attrs contract, so keep it quiet here.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=opts["n_startup_trials"],
                                              multivariate=opts["multivariate"], constraints_func=constraints)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=opts["population_size"],
                                                 constraints_func=constraints)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=opts["n_startup_trials"],
                                         constraints_func=constraints)
