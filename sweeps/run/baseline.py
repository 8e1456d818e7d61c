"""The dense baseline every trial is compared with: its config, and reusing or training it once.

Part of :mod:`sweeps.run`, which re-exports the public names.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import RunError, UserInputError
from .settings import trial_resources, trial_threads

__all__ = ["baseline_config", "absolute_paths", "run_baseline", "baseline_note", "shared_dense", "SharedDense"]

# run_trial keys that only matter to sparsification: a dense baseline drops them
_SPARSE_ONLY = ("criterion", "sparsity", "distribution", "score_on", "allotment", "layer_floor",
                "score_rounds", "score_batches", "pretrain_steps",
                "finetune_lr", "gradual", "dynamic", "checkpoint_dir", "checkpoint_every", "resume",
                "export_path", "baseline_metrics")


def baseline_config(spec) -> dict:
    """The dense run every trial is compared with: the space's fixed base, same training budget."""
    config = json.loads(json.dumps(spec.workload))
    for key in _SPARSE_ONLY:
        config.pop(key, None)
    config["method"] = "dense"
    return absolute_paths(config)


def baseline_note(spec) -> str | None:
    """A line for the user when the sweep samples training settings the one dense baseline cannot share
    (``lr``, ``loss_weights.*``, ``optimizer``, ``seed``, ``cutoff``: the baseline keeps the workload's
    network, fully shared unless it fixes a cutoff, ...): a trial's ``delta_m`` and relative budgets then
    measure those settings too, not only the cost of sparsity. ``None`` when there are none."""
    if not spec.baseline:
        return None
    differ = [p.name for p in spec.parameters if p.name.split(".", 1)[0] not in _SPARSE_ONLY + ("method",)]
    if not differ:
        return None
    from disparse_core.config import resolved_config

    resolved = resolved_config(baseline_config(spec))
    shown = ", ".join(f"{n}={_value(resolved, n)}" for n in differ[:4]) + (", ..." if len(differ) > 4 else "")
    return (f"note: the sweep samples {', '.join(differ)}; the dense baseline trains with the workload's "
            f"({shown}), so delta_m and relative budgets include the effect of these settings, not only "
            f"of pruning (fix them in the workload to compare at equal training)")


@dataclass(frozen=True)
class SharedDense:
    """What the pretrained trials of a sweep share with its dense baseline (:func:`shared_dense`)."""

    steps: tuple          # the steps the baseline saves, where those trials' dense phase can end
    folder: Path | None   # where the snapshots go (``<results root>/.dense/<baseline key>/step<N>.pt``)
    reason: str           # one line for the plan: what is shared, or why nothing is


_MAX_SNAPSHOTS = 8


def _candidates(spec, name: str, fixed):
    """The values the space can give ``name`` (a parameter's ``values``/``value``, else the fixed one), or
    None when it samples a range."""
    for p in spec.parameters:
        if p.name == name:
            d = p.to_dict()
            if "values" in d:
                return list(d["values"])
            if "value" in d:
                return [d["value"]]
            return None
    return [fixed]


def shared_dense(spec, results_root: Path | None) -> SharedDense:
    """Whether the sweep's ``disparse_pretrained``/``magnitude`` trials can start from snapshots of its dense
    baseline instead of training dense again (``disparse_core.trial.run_trial``'s ``start_from``): the
    baseline is on, such a method can be sampled, no sampled parameter shapes the dense phase (``lr``,
    ``cutoff``, ``loss_weights``, ``seed`` ... would make the trial's dense phase differ from the baseline's)
    and the steps where their dense phase ends (``pretrain_steps``, a gradual schedule's first event) are
    among at most 8 values. A trial without a fitting snapshot (e.g. the baseline was reused from MLflow and
    its snapshots are not in this results root, or the worker runs on another machine) trains itself, with
    the same result."""
    from disparse_core.trial import NOT_DENSE_PHASE, PRETRAINED

    none = lambda why: SharedDense((), None, why)  # noqa: E731
    w = spec.workload
    methods = _candidates(spec, "method", w.get("method"))
    if not spec.baseline or not methods or not any(m in PRETRAINED for m in methods):
        return none("nothing (no pretrained method with a dense baseline)")
    shaping = [p.name for p in spec.parameters if p.name.split(".", 1)[0] not in NOT_DENSE_PHASE]
    if shaping:
        return none(f"nothing: the space samples {', '.join(shaping)}, which shape(s) the dense phase of "
                    f"pretrained trials; each trains it itself")
    gradual = w.get("gradual") or {}
    pre = _candidates(spec, "pretrain_steps", w.get("pretrain_steps"))
    intervals = _candidates(spec, "gradual.interval", gradual.get("interval", 10))
    if pre is None or intervals is None:
        return none("nothing: pretrain_steps or gradual.interval is sampled from a range; each pretrained "
                    "trial trains its dense phase itself")
    steps_total = int(w.get("steps", 0) or 0)
    pre = [steps_total // 2 if v is None else int(v) for v in pre]
    ends = set(pre)
    if "gradual" in w or any(p.name.startswith("gradual.") for p in spec.parameters):
        ends |= {v - int(i) for v in pre for i in intervals if i is not None}
    ends = sorted(e for e in ends if 0 < e < steps_total)
    if not ends or len(ends) > _MAX_SNAPSHOTS:
        return none(f"nothing: {len(ends)} possible ends of the dense phase (at most {_MAX_SNAPSHOTS} are saved)")
    from ..tracking import baseline_key

    key = baseline_key(baseline_config(spec))
    folder = Path(results_root).resolve() / ".dense" / key if results_root is not None else None
    return SharedDense(tuple(ends), folder,
                       f"the dense phase of pretrained trials: the baseline saves its state at step(s) "
                       f"{', '.join(map(str, ends))} ({folder}), a trial whose pretraining ends there starts from it")


def _value(resolved: dict, dotted: str):
    """The baseline's value of a dotted key in its resolved config (defaults written out by the core)."""
    value = resolved
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "none (fully shared)" if dotted == "cutoff" and value is None else value


def absolute_paths(config: dict) -> dict:
    """Make the path entries of a trial config absolute (Ray changes a trial's working directory)."""
    for key in ("data_root", "checkpoint_dir", "export_path"):
        if isinstance(config.get(key), str) and config[key]:
            config[key] = str(Path(config[key]).expanduser().resolve())
    return config


def run_baseline(plan, tracker, backend, out: TextIO) -> tuple[dict | None, float]:
    """(baseline metrics, seconds spent training it): reused from MLflow when its key was run before,
    else trained as one Ray task and logged; (None, 0.0) when the space turns the baseline off. A trained
    baseline saves the snapshots its pretrained trials start from (:func:`shared_dense`)."""
    from ..tracking import baseline_key

    if not plan.spec.baseline:
        return None, 0.0
    config = baseline_config(plan.spec)
    key = baseline_key(config)
    note = baseline_note(plan.spec)
    if note:
        print(note, file=out)
    found = tracker.find_baseline_run(key)
    if found:
        tracker.set_baseline(found["run_id"])
        print(f"dense baseline: reusing MLflow run {found['run_id']} (key {key})", file=out)
        return dict(found["metrics"]), 0.0
    cpu, gpu = trial_resources(plan.spec)
    config["num_threads"] = trial_threads(plan.spec)
    print(f"dense baseline: training (key {key}) ...", file=out, flush=True)
    t0, started_ms = time.perf_counter(), int(time.time() * 1000)   # the MLflow run covers the training
    shared = shared_dense(plan.spec, None)
    if shared.steps:
        shared = shared_dense(plan.spec, plan.results_dir.parent)
    snapshots = {e: str(shared.folder / f"step{e}.pt") for e in shared.steps} if shared.folder else None
    result = _train(backend, config, cpu, gpu, snapshots)
    seconds = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in result.items()    # as MLflow gives them back when reused: no step
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "final")}
    tracker.log_baseline(key, config, metrics, started_ms=started_ms)
    print(f"dense baseline: done in {seconds:.1f}s", file=out, flush=True)
    return metrics, seconds


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300] or type(err).__name__


def _train(backend, config: dict, cpu: float, gpu: float, snapshots: dict | None = None) -> dict:
    """The baseline task; its failure becomes one line: a ``ValueError`` of the core is the input's fault
    (exit 2), anything else a failed run (exit 1). Ctrl+C passes through."""
    try:
        args = (config, snapshots) if snapshots else (config,)
        return backend.run_remote(backend.baseline_task, *args, cpu=cpu, gpu=gpu)
    except ValueError as err:
        raise UserInputError(f"dense baseline: the fixed workload failed to run ({_first_line(err)}); "
                             f"expected a workload config the core accepts (fix the space's workload)") from None
    except Exception as err:  # noqa: BLE001 - a worker crash, OOM, a bug: reported in one line
        raise RunError(f"dense baseline: training failed ({type(err).__name__}: {_first_line(err)}); "
                       f"the sweep is marked failed, nothing was tried") from None
