"""Validation of a parsed space (overrides applied, ``${ENV}`` expanded) into a :class:`SweepSpec`.

:class:`SpaceValidator` checks the sections in this order: workload (the fixed trial config), parameters
(delegated to :mod:`sweeps.space.params`), objectives, budgets, sampler and run settings; then
every sampled combination is checked by the core's own ``TrialConfig``
(:func:`sweeps.space.probe.check_with_core`).
Raises one-line :class:`~sweeps.errors.SpaceError` / BudgetError at the first problem. Private to
:mod:`sweeps.space`.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from disparse_core.config import PRESETS, WORKLOADS
from disparse_core.factories import check_factory

from ..budgets import GLOBAL_METRICS, Budget, higher_is_better, parse_budgets
from ..errors import BudgetError, SpaceError
from .fields import (DEVICE_PATTERN, LOSS_WEIGHT, NAME_EXPECTED, NAME_MAX, NAME_PATTERN, PATH_KEYS, REAL_DATA,
                     SAMPLER_OPTIONS, SAMPLERS, SEED_MAX, SUB_FIELDS, TOP_KEYS, TRIAL_FIELDS, SpaceField, as_number,
                     bad_value, check_task, checked_mapping, choice_field, float_field, int_field, is_finite,
                     show_value, unknown_key)
from .data import check_layout
from .factories import UserFactories, check_user_factories, names_factory
from .params import ParametersSection
from .probe import check_with_core
from .spec import Objective, SweepSpec
from .yaml import expand_dotted


# --- knowledge from the core (the task tables load torch: imported when a space is validated) ----------

def workload_tasks(name: str, tasks: Sequence[str] | None = None) -> dict[str, tuple[tuple[str, ...], str]]:
    """``{task: (metric names, primary metric)}`` of a workload (its default tasks, or ``tasks``).

    Raises ``ValueError`` (from the core) for an unknown workload or task.
    """
    from disparse_core.data import workload_tasks as core_workload_tasks
    name = check_factory("workload", name, WORKLOADS, "workload")     # "module:function" -> a factory spec
    return {t: (tuple(info.metrics), info.primary) for t, info in core_workload_tasks(name, tasks).items()}


class SpaceValidator:
    """Turns a parsed mapping into a SweepSpec; raises at the first problem."""

    def __init__(self, data: dict, default_name: str, space_dir: Path | None = None):
        self.data = data
        self.default_name = default_name
        self.space_dir = space_dir      # a factory's module may sit next to the space file

    def run(self) -> SweepSpec:
        data = self.data
        for key in data:
            if key not in TOP_KEYS:
                raise unknown_key("", str(key), TOP_KEYS)
        name = _check_name(data.get("name", self.default_name))
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise bad_value("description", description, "is not a string", "a string")
        self.base = self._workload(data.get("workload"))
        self.params = ParametersSection(self.base, self.tasks).parse(data.get("parameters"))
        self.baseline = data.get("baseline", True)
        if not isinstance(self.baseline, bool):
            raise bad_value("baseline", self.baseline, "is not a boolean", "true or false")
        self.known_metrics = {f"{t}.{m}" for t, ms in self.tasks.items() for m in ms} | set(GLOBAL_METRICS)
        objectives = self._objectives(data.get("objectives"))
        budgets = self._budgets(data.get("budgets"))
        trials = int_field(1).check("trials", data.get("trials", 10))
        concurrency = int_field(1).check("concurrency", data.get("concurrency", 1))
        max_retries = int_field(0).check("max_retries", data.get("max_retries", 1))
        early = self._early_stopping(data.get("early_stopping"), objectives)
        if (early["type"] == "asha" and early.get("grace_steps") and "eval_every" not in self.base
                and "eval_every" not in {p.name for p in self.params}):
            # a rung is decided at the first evaluation at or after it: evaluate at every rung
            self.base["eval_every"] = early["grace_steps"]
        spec = SweepSpec(
            name=name.strip(), description=description, workload=self.base, parameters=self.params,
            objectives=objectives, budgets=budgets, sampler=self._sampler(data.get("sampler"), trials),
            trials=trials, concurrency=concurrency, resources=self._resources(data.get("resources")),
            early_stopping=early,
            baseline=self.baseline, max_retries=max_retries, tasks=dict(self.tasks),
            user_code=tuple(str(p) for p in self.user.code), metric_directions=dict(self.user.metric_directions))
        check_with_core(spec)
        return spec

    # workload ---------------------------------------------------------------------------------
    def _workload(self, section: Any) -> dict:
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise bad_value("workload", section, "is not a mapping",
                            "the fixed trial config, e.g. {workload: scenes, arch: small, steps: 200}")
        base = expand_dotted(section, "workload")
        for key in base:
            if key not in TRIAL_FIELDS:
                raise unknown_key("workload", key, TRIAL_FIELDS)
        base = self._preset(base)
        base.setdefault("workload", "scenes")
        workload = TRIAL_FIELDS["workload"].check("workload.workload", base["workload"])
        for key, value in list(base.items()):
            base[key] = self._value(f"workload.{key}", TRIAL_FIELDS[key], value)
        tasks = base.get("tasks")
        # a workload or arch of your own: built and checked here, before any trial (sweeps/space/factories.py)
        self.user = check_user_factories(base, self.space_dir) if names_factory(base) else UserFactories()
        base.update(self.user.specs)     # with the fingerprint of their code: a changed file is a new config
        for i, task in enumerate(tasks or ()):
            if not isinstance(task, str):
                raise bad_value(f"workload.tasks[{i}]", task, "is not a task name", f"a task of {workload} (a string)")
        if tasks is not None and (not tasks or len(set(map(str, tasks))) != len(tasks)):
            raise bad_value("workload.tasks", tasks, "is empty or repeats a task",
                            f"a list of distinct tasks of {workload}")
        try:
            infos = workload_tasks(workload, tasks)
        except ValueError as err:
            raise SpaceError(f"workload.tasks: {show_value(tasks)}: {err}") from None
        self.tasks = {t: metrics for t, (metrics, _) in infos.items()}
        self.primary = {t: primary for t, (_, primary) in infos.items()}
        for task, weight in (base.get("loss_weights") or {}).items():
            self._value(f"workload.loss_weights.{task}", LOSS_WEIGHT, weight)
            check_task(f"workload.loss_weights.{task}", task, self.tasks)
        if base.get("loss_weights"):
            base["loss_weights"] = {t: as_number(w) for t, w in base["loss_weights"].items()}
        for metric, value in (base.get("baseline_metrics") or {}).items():
            if not isinstance(metric, str):
                raise bad_value("workload.baseline_metrics", metric, "is not a metric name", "metric names as keys")
            if as_number(value) is None:
                raise bad_value(f"workload.baseline_metrics.{metric}", value, "is not a number", "a number")
            if not is_finite(as_number(value)):
                raise bad_value(f"workload.baseline_metrics.{metric}", value, "is not finite", "a finite number")
        if "device" in base and not DEVICE_PATTERN.fullmatch(str(base["device"])):
            raise bad_value("workload.device", base["device"], "is not a device", "auto, cpu, cuda or cuda:N")
        for key in PATH_KEYS:
            if base.get(key):
                base[key] = str(Path(base[key]).expanduser().resolve())
        if workload in REAL_DATA:
            root = base.get("data_root")
            if not root:
                raise bad_value("workload.data_root", root, f"is missing for {workload}",
                                "the data set folder, e.g. --set workload.data_root=/data/" + workload)
            if not Path(root).is_dir():
                raise bad_value("workload.data_root", root, "is not a folder",
                                f"an existing folder holding the {workload} data")
            check_layout("workload.data_root", workload, root)
        return base

    def _preset(self, base: dict) -> dict:
        """``preset: NAME`` in the workload: the core's named settings, overridden by the other keys."""
        name = base.pop("preset", None)
        if name is None:
            return base
        presets = PRESETS
        if not isinstance(name, str) or name not in presets:
            raise bad_value("workload.preset", name, "is not a known preset", f"one of {', '.join(presets)}")
        merged = copy.deepcopy(presets[name])
        for key, value in base.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        return merged

    def _value(self, key: str, fld: SpaceField, value: Any) -> Any:
        value = fld.check(key, value)
        name = key.rsplit(".", 1)[-1]
        if fld.kind == "map" and name in SUB_FIELDS and value is not None:
            subs = SUB_FIELDS[name]
            for sub, sub_value in value.items():
                if sub not in subs:
                    raise unknown_key(key, str(sub), subs)
                value[sub] = subs[sub].check(f"{key}.{sub}", sub_value)
        if fld.kind == "map" and value is not None and name in ("loss_weights", "baseline_metrics"):
            value = dict(value)
        return value

    # objectives, budgets, run settings ---------------------------------------------------------------
    def _has_baseline(self) -> bool:
        return self.baseline or bool(self.base.get("baseline_metrics"))

    def _metric(self, key: str, name: Any) -> str:
        if not isinstance(name, str) or name not in self.known_metrics:
            close = difflib.get_close_matches(str(name), sorted(self.known_metrics), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise bad_value(key, name, f"is not a metric of this workload{hint}",
                            f"one of {', '.join(sorted(self.known_metrics))}")
        if name == "delta_m" and not self._has_baseline():
            raise bad_value(key, name, "needs the dense baseline, but baseline is false",
                            "baseline: true or workload.baseline_metrics")
        return name

    def _objectives(self, section: Any) -> list[Objective]:
        if section is None:
            section = ["compression", "delta_m"] if self._has_baseline() else (
                ["compression"] + [f"{t}.{m}" for t, m in self.primary.items()])
        if isinstance(section, str):
            section = [section]
        if not isinstance(section, list) or not section:
            raise bad_value("objectives", section, "is not a non-empty list", "e.g. [compression, delta_m]")
        out: list[Objective] = []
        for i, item in enumerate(section):
            key = f"objectives[{i}]"
            reference = None
            if isinstance(item, Mapping):
                item = checked_mapping(key, item, ("name", "direction", "reference"),
                                       "{name: .., direction: .., reference: ..}")
                name, direction, reference = item.get("name"), item.get("direction"), item.get("reference")
            else:
                name, direction = item, None
            name = self._metric(f"{key}.name" if isinstance(section[i], Mapping) else key, name)
            if direction is None:
                direction = "maximize" if higher_is_better(name) else "minimize"
            elif direction not in ("maximize", "minimize"):
                raise bad_value(f"{key}.direction", direction, "is not a direction", "maximize or minimize")
            if any(o.name == name for o in out):
                raise bad_value(key, name, "is listed twice", "distinct objectives")
            if reference is not None and (isinstance(reference, bool) or not isinstance(reference, (int, float))
                                          or not math.isfinite(reference)):
                raise bad_value(f"{key}.reference", reference, "is not a finite number",
                                f"the worst {name} the hypervolume counts from, e.g. 0")
            out.append(Objective(name, direction, None if reference is None else float(reference)))
        return out

    def _budgets(self, section: Any) -> list[Budget]:
        budgets = parse_budgets(section, known_metrics=self.known_metrics)
        given = self.base.get("baseline_metrics") or {}
        for b in budgets:
            if b.relative and not self._has_baseline():
                raise BudgetError(f"budget {b.text!r}: relative to the dense baseline, but baseline is "
                                  f"false; expected baseline: true or an absolute bound such as "
                                  f"{b.metric}{'>=' if b.higher_is_better else '<='}X")
            if b.relative and not self.baseline and b.metric not in given:
                raise BudgetError(f"budgets.{b.metric}: {b.text!r} is relative to the baseline's {b.metric}, "
                                  f"which workload.baseline_metrics lacks; expected a relative budget to have "
                                  f"the baseline's value of {b.metric} (baseline: true, or "
                                  f"workload.baseline_metrics with {b.metric}) or an absolute bound")
        return budgets

    def _sampler(self, section: Any, trials: int) -> dict:
        if isinstance(section, str):
            section = {"type": section}
        keys = ("type", "seed") + tuple(sorted({o for opts in SAMPLER_OPTIONS.values() for o in opts}))
        section = checked_mapping("sampler", section, keys, "{type: tpe, seed: 0}")
        # gp: the default since issue 17 (bench/RESULTS.md, "Sampler"); the CPU demo spaces name tpe
        kind = choice_field(SAMPLERS, "sampler").check("sampler.type", section.get("type", "gp"))
        for k in section:
            if k not in ("type", "seed") and k not in SAMPLER_OPTIONS[kind]:
                raise SpaceError(f"sampler.{k}: does not apply to type {kind}; expected "
                                 f"{', '.join(('seed',) + SAMPLER_OPTIONS[kind])}")
        seed = int_field(0, high=SEED_MAX, nullable=True).check("sampler.seed", section.get("seed", 0))
        out = {"type": kind, "seed": seed}
        if "n_startup_trials" in SAMPLER_OPTIONS[kind]:
            out["n_startup_trials"] = int_field(0).check(
                "sampler.n_startup_trials", section.get("n_startup_trials", min(10, max(2, trials // 3))))
        if kind == "tpe":
            out["multivariate"] = SpaceField("bool").check("sampler.multivariate", section.get("multivariate", False))
        if kind == "nsga2":
            out["population_size"] = int_field(2).check(
                "sampler.population_size", section.get("population_size", min(50, max(4, trials // 4))))
        return out

    def _resources(self, section: Any) -> dict:
        section = checked_mapping("resources", section, ("cpu", "gpu"), "{cpu: 1, gpu: 0}")
        cpu = float_field(0).check("resources.cpu", section.get("cpu", 1))
        gpu = float_field(0).check("resources.gpu", section.get("gpu", 0))
        if gpu > 1 and not float(gpu).is_integer():
            raise bad_value("resources.gpu", gpu, "is a fraction above 1", "a fraction up to 1 or a whole number")
        for key, value in (("cpu", cpu), ("gpu", gpu)):
            if 0 < value < 0.0001:      # Ray refuses resource fractions finer than 0.0001
                raise bad_value(f"resources.{key}", value, "is too small", "0 or at least 0.0001")
        if cpu == 0 and gpu == 0:
            raise bad_value("resources", section, "asks for nothing", "cpu > 0 or gpu > 0 per trial")
        device = str(self.base.get("device", "auto"))
        if device.startswith("cuda") and gpu == 0:
            raise bad_value("workload.device", device, "needs resources.gpu > 0",
                            "resources.gpu > 0 with a cuda device, or device: auto or cpu")
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
        section = checked_mapping("early_stopping", section,
                                  ("type", "metric", "grace_steps", "reduction_factor", "keep_non_dominated"),
                                  "{type: none} or {type: asha, ...}")
        kind = choice_field(("none", "asha"), "early-stopping type").check(
            "early_stopping.type", section.get("type", "none") or "none")
        if kind == "none":
            extra = [k for k in section if k != "type"]
            if extra:
                raise SpaceError(f"early_stopping.{extra[0]}: given with type none; expected type: asha")
            return {"type": "none"}
        metric = section.get("metric")
        if metric is None:
            metric = "objectives" if len(objectives) > 1 else self._single_asha_default(objectives)
        if metric != "objectives":
            if not isinstance(metric, str) or metric not in self.known_metrics:
                close = difflib.get_close_matches(str(metric), sorted(self.known_metrics | {"objectives"}), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise bad_value("early_stopping.metric", metric, f"is not a metric of this workload{hint}",
                                "objectives (rank on every objective) or one of "
                                + ", ".join(sorted(self.known_metrics)))
            metric = self._metric("early_stopping.metric", metric)
        low_steps, high_steps = self._steps_range()
        grace = section.get("grace_steps", max(1, low_steps // 4) if low_steps else None)
        if grace is not None:
            grace = int_field(1).check("early_stopping.grace_steps", grace)
            if low_steps is not None and grace >= low_steps:
                raise bad_value("early_stopping.grace_steps", grace, f"is not below the trial length "
                                f"({low_steps} steps)", "fewer grace steps than a trial runs")
        factor = float_field(1, low_open=True).check("early_stopping.reduction_factor",
                                               section.get("reduction_factor", 3))
        keep = section.get("keep_non_dominated", True)
        if metric == "objectives":  # multi-objective ASHA: directions are the objectives' (sweeps.ray.mo_asha)
            if not isinstance(keep, bool):
                raise bad_value("early_stopping.keep_non_dominated", keep, "is not a boolean", "true or false")
            return {"type": "asha", "metric": "objectives", "grace_steps": grace, "reduction_factor": factor,
                    "keep_non_dominated": keep, "max_steps": high_steps}
        if "keep_non_dominated" in section:
            raise SpaceError(f"early_stopping.keep_non_dominated: given with metric {metric!r}; expected "
                             f"metric: objectives (it is a rule of multi-objective ASHA)")
        return {"type": "asha", "metric": metric,
                "mode": "max" if higher_is_better(metric) else "min",
                "grace_steps": grace, "reduction_factor": factor, "max_steps": high_steps}

    def _single_asha_default(self, objectives: list[Objective]) -> str:
        """Single-metric ASHA's default metric (a one-objective sweep): delta_m with a baseline, else the
        first task-metric objective, else the first task's primary metric."""
        if self._has_baseline():
            return "delta_m"
        task, primary = next(iter(self.primary.items()))
        return next((o.name for o in objectives if "." in o.name), f"{task}.{primary}")


def _check_name(name: Any) -> str:
    """The space's name: a results folder name and the MLflow sweep id."""
    if not isinstance(name, str):
        raise bad_value("name", name, "is not a name", NAME_EXPECTED)
    stripped = name.strip()
    if not stripped:
        raise bad_value("name", name, "is empty", NAME_EXPECTED)
    if len(stripped) > NAME_MAX:
        raise bad_value("name", stripped[:40] + "...", f"is too long ({len(stripped)} characters)", NAME_EXPECTED)
    if stripped in (".", "..") or not NAME_PATTERN.fullmatch(stripped):
        raise bad_value("name", name, "is not a folder name", NAME_EXPECTED)
    return stripped
