"""What goes into MLflow and how it reads back: names and params within MLflow's limits, finite metric
values, one-line errors, the dense-baseline key and the code version; how a spec's fields become the
sweep run's params.

Private to :mod:`sweeps.tracking` (which re-exports the public names). No mlflow import here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

# MLflow limits (mlflow.utils.validation); repeated here so nothing private is imported.
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

# Trial-config fields that change what a *dense* model learns (and so its metrics). Everything else in a
# trial config (method, criterion, sparsity, gradual, dynamic, score_batches, pretrain_steps, finetune_lr,
# checkpoints, device, threads, eval cadence, baseline_metrics) only matters to sparsification or to
# bookkeeping. ``cutoff`` is here: it changes the dense architecture (where task branches split).
BASELINE_FIELDS = (
    "workload", "data_root", "image_size", "train_size", "test_size", "tasks",
    "arch", "width", "cutoff", "loss_weights",
    "steps", "batch_size", "lr", "weight_decay", "optimizer", "lr_step", "lr_gamma",
    "eval_batches", "bf16", "seed",
)


# --- values, names, params --------------------------------------------------------------------------------

_BAD_NAME_CHARS = re.compile(r"[^\w.\- :]")


def sanitize_name(name: Any) -> str:
    """A key MLflow accepts for params and metrics (no slashes, no '..', ≤ 250 chars)."""
    text = _BAD_NAME_CHARS.sub("_", str(name))
    text = re.sub(r"\.{2,}", "_", text).strip(". ") or "_"
    return text[:_MAX_KEY]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys, values strings (lists as JSON), within MLflow's limits.

    A dict whose own keys contain dots (e.g. ``baseline_metrics`` = ``{"seg.miou": …}``) is kept as one
    JSON value, so that :func:`unflatten_params` can rebuild the nesting unambiguously.
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not any("." in str(k) for k in value):
            out.update(flatten_params(value, prefix=full + "."))
        else:
            out[sanitize_name(full)] = truncate(_stringify(value), _MAX_PARAM_VALUE)
    return out


def _parse_value(text: str) -> Any:
    if text in ("None", "null"):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def unflatten_params(params: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params` with values parsed back (numbers, bools, None, JSON)."""
    out: dict[str, Any] = {}
    for key in sorted(params):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = _parse_value(params[key])
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every value that is a number (numpy / torch scalars too) as a float, under its logged name."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:                                    # numpy / torch scalars
                value = float(value) if hasattr(value, "__float__") and not isinstance(value, str) else None
            except (TypeError, ValueError):
                value = None
            if value is None:
                continue
        out[sanitize_name(key)] = float(value)
    return out


# --- metric names in MLflow -------------------------------------------------------------------------------
# ``step`` is the step every value is logged at, and ``final`` a flag of the last report: neither is a metric.
NOT_METRICS = frozenset({"step", "final"})
# A trial's config param and its metric of the same name mean different things: the param ``sparsity`` is
# the target the sampler chose, the metric what pruning achieved (a layer floor, a branched net or dynamic
# regrowth move it). MLflow keeps the param under its name (the config reruns the trial) and the metric as
# ``achieved_sparsity``; readers map it back (:func:`read_name`), so objectives and budgets say ``sparsity``.
_LOGGED_AS = {"sparsity": "achieved_sparsity"}
_READ_AS = {v: k for k, v in _LOGGED_AS.items()}
# Sweep-level figures on the sweep run: one prefix, apart from the trials' metrics in the UI's lists.
SWEEP_METRIC_PREFIX = "sweep."


def logged_name(key: str) -> str:
    """The MLflow metric name of a reported metric."""
    return _LOGGED_AS.get(key, key)


def read_name(key: str) -> str:
    """The reported metric an MLflow metric name stands for (older stores: the name itself)."""
    return _READ_AS.get(key, key)


def finite_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in _numbers(metrics).items() if math.isfinite(v)}


def not_finite_keys(metrics: Mapping[str, Any]) -> list[str]:
    """Names (as logged) of the numeric metrics that are NaN or infinite."""
    return sorted(k for k, v in _numbers(metrics).items() if not math.isfinite(v))


def one_line(text: Any, limit: int = 1000) -> str:
    """A reason on one line: a traceback's last line, else the first; cut to whole sentences
    (:func:`clip_sentences`), never mid-word."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return clip_sentences(lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else
                          "unknown error"), limit)


def clip_sentences(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its whole sentences that fit (``...`` says more
    followed); with no sentence end in reach, its whole words."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = text[:limit - 4]
    end = max(head.rfind(". "), head.rfind("; "), head.rfind("! "), head.rfind("? "))
    if end >= limit // 4:
        return head[:end + 1] + " ..."
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip(" ,;:") + " ..."



# --- baseline key and code version -----------------------------------------------------------------------

def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def baseline_key(config: Mapping[str, Any]) -> str:
    """Hash of the trial-config fields that change the dense result (:data:`BASELINE_FIELDS`).

    Sparsification-only fields (method, sparsity, criterion, gradual, dynamic, ...) do not change it;
    ``None`` values count as absent, ``tasks`` is order-free and ``1.0 == 1``. Pass a resolved config
    (defaults filled in) so that an omitted default and an explicit one give the same key.
    """
    picked = {}
    for field in BASELINE_FIELDS:
        value = config.get(field)
        if value is None:
            continue
        if field == "tasks" and isinstance(value, (list, tuple)):
            value = sorted(str(t) for t in value)
        picked[field] = _canonical(value)
    blob = json.dumps({"v": 1, "fields": picked}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_version(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"git_commit", "dirty"}`` when the code is a git checkout, else ``{"package_version"}``."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        if commit:
            return {"git_commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return {"package_version": version("disparse-tune")}
    except Exception:
        return {"package_version": "unknown"}


def code_version_text(cv: Any) -> str:
    if isinstance(cv, Mapping):
        if cv.get("git_commit"):
            return cv["git_commit"] + ("-dirty" if cv.get("dirty") else "")
        return str(cv.get("package_version", "unknown"))
    return str(cv)


# --- a spec (a SweepSpec, a mapping or None) as sweep-run params ----------------------------------------

def spec_attr(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def _first_of(config: Mapping[str, Any], spec: Any, names: Sequence[str]) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
        value = spec_attr(spec, name)
        if value is not None:
            return value
    return None


def _objective_text(value: Any) -> Any:
    """Objectives / budgets as readable text: a list of strings or objects with a ``name``/``key``."""
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps({str(k): _objective_text(v) if not isinstance(v, (int, float, str)) else v
                           for k, v in value.items()}, sort_keys=True, default=str)
    items = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        elif hasattr(item, "raw") and item.raw:
            items.append(str(item.raw))
        elif hasattr(item, "direction") and (hasattr(item, "name") or hasattr(item, "metric")):
            items.append(f"{getattr(item, 'name', None) or getattr(item, 'metric')}:{item.direction}")
        elif hasattr(item, "text"):
            items.append(str(item.text))
        else:
            items.append(str(item))
    return ",".join(items)


def sweep_params(spec: Any, sweep_id: str, config: Mapping[str, Any], *, sampler: Any, seed: Any,
                 space_path: str | os.PathLike | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sweep run's params (None where unknown) and the sampler options.

    Explicit ``sampler`` / ``seed`` win over the spec's; ``trials`` and ``concurrency`` come from
    ``config`` first, then from the spec; ``space`` is the spec's name or the space file's stem.
    """
    spec_sampler = spec_attr(spec, "sampler")
    if seed is None and isinstance(spec_sampler, Mapping):
        seed = spec_sampler.get("seed")
    objectives = spec_attr(spec, "objectives")
    budgets = spec_attr(spec, "budgets")
    sampler = sampler if sampler is not None else spec_sampler
    sampler_options = {}
    if isinstance(sampler, Mapping):
        sampler_options = {k: v for k, v in sampler.items() if k not in ("type", "name", "seed")}
        sampler = sampler.get("type") or sampler.get("name")
    params = {
        "sweep_id": sweep_id,
        "space": spec_attr(spec, "name") or (Path(space_path).stem if space_path else None),
        "sampler": sampler,
        "sampler_options": sampler_options or None,
        "seed": seed if seed is not None else spec_attr(spec, "seed"),
        "trials": _first_of(config, spec, ("trials", "num_trials", "n_trials", "num_samples")),
        "concurrency": _first_of(config, spec, ("concurrency", "max_concurrent", "max_concurrent_trials")),
        "objectives": _objective_text(objectives),
        "budgets": _objective_text(budgets),
    }
    return params, sampler_options
