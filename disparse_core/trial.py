"""One trial: build the data and the model, sparsify by ``method``, train, evaluate, report.

``run_trial(config, report=None) -> dict`` is what the sweep calls (docs/ARCHITECTURE.md holds the
contract). ``config`` is a plain dict (or a :class:`TrialConfig`); ``TrialConfig.from_dict`` validates it
and every problem is a one-line ``ValueError`` naming the key.

Methods and when they prune (``step`` counts training iterations from 0):

- ``dense``: never.
- ``disparse_static`` / ``snip`` / ``random``: once at step 0, before any update (score batches come
  from their own seeded stream, so they never shift the training data order); masks then fixed.
- ``disparse_pretrained`` / ``magnitude`` (IMP): dense until ``pretrain_steps``, then prune once (or
  gradually: ``gradual = {prune_steps, interval, initial_sparsity}``, cubic schedule, prune events at
  ``pretrain_steps + i·interval``), and finetune with ``finetune_lr``. The optimizer state is reset at
  each prune event (a finetune starts fresh, as in the reference's separate finetune run).
- ``disparse_dynamic`` / ``rigl``: :class:`~disparse_core.dynamic.DynamicSparsifier` from step 0
  (``rigl`` = ``collapse=True``), mask updates every ``dynamic.delta_t`` steps until
  ``t_end = round(dynamic.t_end_frac · steps)``.

The training loss is ``Σ_t λ_t L_t`` (``loss_weights``); sparsifiers get the raw per-task losses plus
the weights (a per-task ranking is scale-free; the collapsed baselines score the weighted sum).

Evaluation: every ``eval_every`` completed steps on the first ``eval_batches`` test batches (None =
all); the final evaluation always covers the whole test set and its report carries ``final: 1.0``.
Reproducibility: on CPU a rerun with the same config gives bit-identical metrics (seeded Python,
NumPy and torch, seeded model init and data order, deterministic algorithms while the trial runs).
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import random
import re
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from .masks import get_masks, sparsity_report
from .metrics import delta_m, evaluate
from .tasks import build_losses, check_loss_weights, weighted_total

__all__ = ["TrialConfig", "DynamicOptions", "GradualOptions", "METHODS", "PRESETS", "run_trial"]

# method -> (default criterion, allowed criteria)
METHODS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "dense": (None, ()),
    "disparse_static": ("snip", ("snip", "gradient", "taylor")),
    "disparse_pretrained": ("magnitude", ("magnitude", "taylor", "snip")),
    "disparse_dynamic": ("gradient", ("gradient",)),
    "snip": ("snip", ("snip",)),
    "random": (None, ()),
    "magnitude": ("magnitude", ("magnitude",)),
    "rigl": ("gradient", ("gradient",)),
}
ONE_SHOT_AT_INIT = ("disparse_static", "snip", "random")
PRETRAINED = ("disparse_pretrained", "magnitude")
DYNAMIC = ("disparse_dynamic", "rigl")
WORKLOADS = ("scenes", "digits", "nyuv2", "cityscapes", "taskonomy")
ARCHS = ("small", "deeplab_resnet34")

#: Named settings; ``{"preset": name, ...}`` starts from these and the other keys override them.
PRESETS: dict[str, dict[str, Any]] = {
    # DISPARSE.md §3: the reference NYUv2 training (DeepLab-ResNet34, 20000 steps of batch 16).
    "nyuv2_reference": {
        "workload": "nyuv2", "arch": "deeplab_resnet34", "sparsity": 0.9,
        "steps": 20000, "batch_size": 16, "optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4,
        "lr_step": 4000, "lr_gamma": 0.5, "loss_weights": {"seg": 1.0, "normal": 20.0},
        "score_batches": 50, "pretrain_steps": 19000, "finetune_lr": 1e-5,
        "eval_every": 1000,
        "dynamic": {"alpha0": 0.5, "delta_t": 50, "t_end_frac": 0.75, "decay": "cosine",
                    "grow": "exact", "erk_power": 0.9, "dense_first": True},
    },
}


# --- config -----------------------------------------------------------------------------------------

@dataclass
class DynamicOptions:
    """``dynamic`` section: the DynamicSparsifier's schedule (``t_end = round(t_end_frac · steps)``)."""
    alpha0: float = 0.5
    delta_t: int = 25
    t_end_frac: float = 0.75
    decay: str = "cosine"
    grow: str = "exact"
    erk_power: float = 0.9
    dense_first: bool = True


@dataclass
class GradualOptions:
    """``gradual`` section: ``prune_steps`` cubic prune events ``interval`` steps apart."""
    prune_steps: int = 4
    interval: int = 10
    initial_sparsity: float = 0.0


@dataclass
class TrialConfig:
    """A validated trial config; see docs/ARCHITECTURE.md for every key. Build with :meth:`from_dict`.

    Defaults are a short CPU run (scenes, small net, 300 steps). Notes on keys beyond the table:

    - ``sparsity`` is ignored by ``dense``; ``criterion`` defaults by method (:data:`METHODS`).
    - ``distribution``: ``random`` baseline's layer densities, ``uniform`` or ``erk``
      (``erk`` uses ``dynamic.erk_power``).
    - ``pretrain_steps`` (default ``steps // 2``), ``finetune_lr`` (default ``lr / 10``) and
      ``gradual`` apply to ``disparse_pretrained`` and ``magnitude``; ``dynamic`` to
      ``disparse_dynamic`` and ``rigl``; other methods ignore them.
    - ``eval_every`` defaults to ``steps // 3``; ``eval_batches`` limits the intermediate evaluations
      only (the final one always covers the whole test set).
    - ``optimizer: sgd`` uses momentum 0.9; ``lr_step`` (None = constant) is StepLR's step size in
      training steps.
    - ``preset``: a name in :data:`PRESETS`; the other keys override its values.
    - ``export_path``: the folded ``state_dict`` file; the JSON size report goes next to it (``.json``).
    """
    workload: str = "scenes"
    data_root: str | None = None
    image_size: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    tasks: list | None = None
    arch: str = "small"
    width: int | None = None
    cutoff: int | None = None
    loss_weights: dict | None = None
    method: str = "dense"
    criterion: str | None = None
    sparsity: float = 0.9
    distribution: str = "uniform"
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    lr_step: int | None = None
    lr_gamma: float = 0.5
    eval_every: int | None = None
    eval_batches: int | None = None
    score_batches: int = 4
    pretrain_steps: int | None = None
    finetune_lr: float | None = None
    gradual: GradualOptions | None = None
    dynamic: DynamicOptions = field(default_factory=DynamicOptions)
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    export_path: str | None = None
    baseline_metrics: dict | None = None
    preset: str | None = None

    # ----------------------------------------------------------------------------------- building
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None) -> "TrialConfig":
        """Validate a plain dict (dotted keys such as ``dynamic.alpha0`` allowed) into a config."""
        d = _nest(dict(d or {}))
        preset = d.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
            d = _merge(copy.deepcopy(PRESETS[preset]), d)
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ValueError(_unknown(key, known))
        values = {}
        for f in fields(cls):
            if f.name in ("dynamic", "gradual"):
                continue
            if f.name in d:
                values[f.name] = _check_field(f.name, d[f.name])
        values["dynamic"] = _section(DynamicOptions, "dynamic", d.get("dynamic") or {})
        if d.get("gradual") is not None:
            values["gradual"] = _section(GradualOptions, "gradual", d["gradual"])
        config = cls(**values)
        config._check_combinations()
        return config

    def to_dict(self) -> dict:
        """Plain nested dict (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    # ------------------------------------------------------------------------------------ derived
    @property
    def resolved_criterion(self) -> str | None:
        return self.criterion if self.criterion is not None else METHODS[self.method][0]

    @property
    def resolved_pretrain_steps(self) -> int:
        return self.steps // 2 if self.pretrain_steps is None else self.pretrain_steps

    @property
    def resolved_finetune_lr(self) -> float:
        return self.lr / 10.0 if self.finetune_lr is None else self.finetune_lr

    @property
    def resolved_eval_every(self) -> int:
        return self.eval_every if self.eval_every is not None else max(self.steps // 3, 1)

    @property
    def t_end(self) -> int:
        return max(1, round(self.dynamic.t_end_frac * self.steps))

    def _check_combinations(self) -> None:
        default, allowed = METHODS[self.method]
        if self.criterion is not None and self.criterion not in allowed:
            raise ValueError(f"criterion: {self.criterion!r} is not valid for method {self.method!r} "
                             f"(valid: {', '.join(allowed) or 'none'})")
        if self.arch != "small" and self.width is not None:
            raise ValueError(f"width: only arch 'small' takes a width, got arch {self.arch!r}")
        _check_cutoff(self.arch, self.cutoff)
        if self.workload in ("nyuv2", "cityscapes", "taskonomy") and not self.data_root:
            raise ValueError(f"data_root: workload {self.workload!r} needs data_root (a folder)")
        if self.method in PRETRAINED:
            pre = self.resolved_pretrain_steps
            if pre >= self.steps:
                raise ValueError(f"pretrain_steps: must be < steps={self.steps}, got {pre}")
            if self.gradual is not None:
                g = self.gradual
                last = pre + g.prune_steps * g.interval
                if last >= self.steps:
                    raise ValueError(f"gradual: last prune step pretrain_steps + prune_steps*interval = "
                                     f"{last} must be < steps={self.steps}")
                if g.initial_sparsity > self.sparsity:
                    raise ValueError(f"gradual.initial_sparsity: must be <= sparsity={self.sparsity}, "
                                     f"got {g.initial_sparsity}")
        self._check_tasks()
        if (self.checkpoint_every is not None or self.resume) and not self.checkpoint_dir:
            raise ValueError("checkpoint_dir: required when checkpoint_every or resume is set")
        if self.export_path is not None and str(self.export_path).endswith(".json"):
            raise ValueError(f"export_path: the model file cannot end in .json (the size report "
                             f"goes next to it as .json), got {self.export_path!r}")


    def _check_tasks(self) -> None:
        """Task names in ``tasks``, ``loss_weights`` and ``baseline_metrics`` (no data is built)."""
        from .data import workload_tasks
        try:
            infos = workload_tasks(self.workload, self.tasks)
        except ValueError as err:
            raise ValueError(f"tasks: {err}") from None
        check_loss_weights(infos, self.loss_weights)
        if self.baseline_metrics:
            known = [f"{t}.{m}" for t, info in infos.items() for m in info.metrics]
            named = [k for k in self.baseline_metrics if "." in k]
            for key in named:
                if key not in known:
                    raise ValueError(_unknown(key, known).replace("config key", "baseline_metrics key"))
            if not named:
                raise ValueError(f"baseline_metrics: names no task metric (expected keys such as "
                                 f"{known[0]!r})")


def _nest(d: dict) -> dict:
    out: dict = {}
    for key, value in d.items():
        if isinstance(key, str) and "." in key:
            head, tail = key.split(".", 1)
            section = out.setdefault(head, {})
            if not isinstance(section, dict):
                raise ValueError(f"{head}: cannot set {key!r} because {head!r} is not a section")
            section.update(_nest({tail: value}))
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def _merge(base: dict, over: Mapping) -> dict:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def _unknown(key, known) -> str:
    close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown config key {key!r}{hint} (known keys: {', '.join(known)})"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _int(key, v, low=None, high=None, none=False):
    if v is None and none:
        return None
    if not _is_int(v):
        raise ValueError(f"{key}: expected an integer{' or None' if none else ''}, got {v!r}")
    v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{key}: expected an integer {bounds}, got {v}")
    return v


def _float(key, v, low=None, high=None, low_open=False, high_open=False, none=False):
    if v is None and none:
        return None
    if not _is_real(v) or not math.isfinite(float(v)):
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


def _choice(key, v, options, none=False):
    if v is None and none:
        return None
    if v not in options:
        close = difflib.get_close_matches(str(v), list(options), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{key}: expected one of {', '.join(options)}, got {v!r}{hint}")
    return v


def _bool(key, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{key}: expected true or false, got {v!r}")
    return bool(v)


def _path(key, v):
    if v is None:
        return None
    if not isinstance(v, (str, Path)) or not str(v):
        raise ValueError(f"{key}: expected a path (string), got {v!r}")
    return str(v)


def _float_dict(key, v):
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ValueError(f"{key}: expected a mapping {{name: number}}, got {v!r}")
    out = {}
    for k, x in v.items():
        out[str(k)] = _float(f"{key}.{k}", x)
    return out


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def _device(key, v):
    if not isinstance(v, str) or not _DEVICE.match(v):
        raise ValueError(f"{key}: expected auto, cpu, cuda, cuda:<index> or mps, got {v!r}")
    return v


def _tasks(key, v):
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v \
            or not all(isinstance(t, str) for t in v):
        raise ValueError(f"{key}: expected a non-empty list of task names, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key}: task names repeat in {list(v)!r}")
    return list(v)


_CHECKS: dict[str, Callable] = {
    "workload": lambda k, v: _choice(k, v, WORKLOADS),
    "data_root": _path,
    "image_size": lambda k, v: _int(k, v, 8, none=True),
    "train_size": lambda k, v: _int(k, v, 1, none=True),
    "test_size": lambda k, v: _int(k, v, 1, none=True),
    "tasks": _tasks,
    "arch": lambda k, v: _choice(k, v, ARCHS),
    "width": lambda k, v: _int(k, v, 1, none=True),
    "cutoff": lambda k, v: _int(k, v, 0, none=True),
    "loss_weights": _float_dict,
    "method": lambda k, v: _choice(k, v, tuple(METHODS)),
    "criterion": lambda k, v: _choice(k, v, ("snip", "magnitude", "taylor", "gradient"), none=True),
    "sparsity": lambda k, v: _float(k, v, 0.0, 1.0, high_open=True),
    "distribution": lambda k, v: _choice(k, v, ("uniform", "erk")),
    "steps": lambda k, v: _int(k, v, 1),
    "batch_size": lambda k, v: _int(k, v, 1),
    "lr": lambda k, v: _float(k, v, 0.0, low_open=True),
    "weight_decay": lambda k, v: _float(k, v, 0.0),
    "optimizer": lambda k, v: _choice(k, v, ("adam", "sgd")),
    "lr_step": lambda k, v: _int(k, v, 1, none=True),
    "lr_gamma": lambda k, v: _float(k, v, 0.0, 1.0, low_open=True),
    "eval_every": lambda k, v: _int(k, v, 1, none=True),
    "eval_batches": lambda k, v: _int(k, v, 1, none=True),
    "score_batches": lambda k, v: _int(k, v, 1),
    "pretrain_steps": lambda k, v: _int(k, v, 0, none=True),
    "finetune_lr": lambda k, v: _float(k, v, 0.0, low_open=True, none=True),
    "seed": lambda k, v: _int(k, v, 0),
    "device": _device,
    "bf16": _bool,
    "num_threads": lambda k, v: _int(k, v, 1, none=True),
    "checkpoint_dir": _path,
    "checkpoint_every": lambda k, v: _int(k, v, 1, none=True),
    "resume": _bool,
    "export_path": _path,
    "baseline_metrics": _float_dict,
    "preset": lambda k, v: _choice(k, v, tuple(PRESETS), none=True),
}

_SECTION_CHECKS: dict[str, Callable] = {
    "dynamic.alpha0": lambda k, v: _float(k, v, 0.0, 1.0),
    "dynamic.delta_t": lambda k, v: _int(k, v, 1),
    "dynamic.t_end_frac": lambda k, v: _float(k, v, 0.0, 1.0, low_open=True),
    "dynamic.decay": lambda k, v: _choice(k, v, ("cosine", "linear", "constant")),
    "dynamic.grow": lambda k, v: _choice(k, v, ("exact", "union")),
    "dynamic.erk_power": lambda k, v: _float(k, v, 0.0),
    "dynamic.dense_first": _bool,
    "gradual.prune_steps": lambda k, v: _int(k, v, 1),
    "gradual.interval": lambda k, v: _int(k, v, 1),
    "gradual.initial_sparsity": lambda k, v: _float(k, v, 0.0, 1.0, high_open=True),
}


def _check_field(key, value):
    return _CHECKS[key](key, value)


def _section(cls, name, d):
    if isinstance(d, cls):
        d = asdict(d)
    if not isinstance(d, Mapping):
        raise ValueError(f"{name}: expected a mapping of options, got {d!r}")
    known = [f.name for f in fields(cls)]
    values = {}
    for key, value in d.items():
        if key not in known:
            raise ValueError(_unknown(f"{name}.{key}", [f"{name}.{k}" for k in known]))
        values[key] = _SECTION_CHECKS[f"{name}.{key}"](f"{name}.{key}", value)
    return cls(**values)


def _check_cutoff(arch, cutoff) -> None:
    if cutoff is None:
        return
    from .models import num_blocks
    blocks = num_blocks(arch)
    if cutoff > blocks:
        raise ValueError(f"cutoff: must be in 0..{blocks} (arch {arch!r} has {blocks} backbone "
                         f"blocks), got {cutoff}")


# --- running ----------------------------------------------------------------------------------------

Report = Callable[[dict], None]

# Keys that may differ between a checkpoint's config and the resuming config (they do not change
# what is computed).
_RESUMABLE = {"resume", "checkpoint_dir", "checkpoint_every", "export_path", "eval_every",
              "eval_batches", "num_threads", "device", "baseline_metrics"}


def run_trial(config: Mapping[str, Any] | TrialConfig | None = None,
              report: Report | None = None) -> dict:
    """Train and evaluate one configuration; returns the flat result dict of docs/ARCHITECTURE.md.

    ``report(metrics)`` is called at every evaluation with the flat metric keys and ``step``; the
    last call (the whole test set, after the last step) also has ``final: 1.0``. Bad configs raise
    a one-line ``ValueError``; a NaN/inf loss raises ``FloatingPointError`` naming the step and task.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    with _execution(cfg) as device:
        return _Trial(cfg, device, report).run()


def resolve_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable device is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {name!r} requested but MPS is not available")
    return device


@contextmanager
def _execution(cfg: TrialConfig) -> Iterator[torch.device]:
    """Threads, determinism and seeds for the trial; the process settings are restored afterwards."""
    device = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        yield device
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _to_device(batch, device):
    inputs, targets = batch
    return (inputs.to(device, non_blocking=True),
            {t: y.to(device, non_blocking=True) for t, y in targets.items()})


def _cycle(loader, start_epoch: int = 0, skip: int = 0) -> Iterator:
    """Endless batches: epoch after epoch of a SeededLoader, starting ``skip`` batches into
    ``start_epoch`` (what resuming at a step needs)."""
    loader.set_epoch(start_epoch)
    while True:
        got = False
        for batch in loader:
            got = True
            if skip:
                skip -= 1
                continue
            yield batch
        if not got:
            raise ValueError("the training set yields no batch (batch_size larger than the data set?)")


class _Trial:
    """The state of one run; :meth:`run` reads top to bottom."""

    def __init__(self, cfg: TrialConfig, device: torch.device, report: Report | None):
        from .data import build_workload
        from .models import build_model, fully_shared_prunable

        self.cfg, self.device, self.report = cfg, device, report
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        kwargs = {k: getattr(cfg, k) for k in ("data_root", "image_size", "train_size", "test_size",
                                                "tasks") if getattr(cfg, k) is not None}
        self.workload = build_workload(cfg.workload, seed=cfg.seed, **kwargs)
        self.tasks = self.workload.tasks
        self.loss_weights = check_loss_weights(self.tasks, cfg.loss_weights)
        arch_kwargs = {"task_kinds": self.workload.task_kinds,
                       "in_channels": self.workload.in_channels}
        if cfg.width is not None:
            arch_kwargs["width"] = cfg.width
        self.model = build_model(cfg.arch, self.workload.task_channels, cutoff=cfg.cutoff,
                                 seed=cfg.seed, **arch_kwargs).to(device)
        self.reference_prunable = fully_shared_prunable(cfg.arch, self.workload.task_channels,
                                                        **arch_kwargs)
        self.losses = build_losses(self.workload)
        self.optimizer = self._make_optimizer()     # before any mask: fixes the parameter order
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_gamma)
                          if cfg.lr_step else None)
        self.train_loader = self.workload.train_loader(cfg.batch_size, seed=2 * cfg.seed)
        self.score_loader = self.workload.train_loader(cfg.batch_size, seed=2 * cfg.seed + 1)
        self.test_loader = self.workload.test_loader(cfg.batch_size)
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                         else nullcontext())
        self.dynamic = None
        self.pruner = None
        self.mask_iou: dict[str, float] | None = None
        self.start_step = 0

    # ---------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        cfg = self.cfg
        self._setup_method()
        if cfg.resume:
            self._maybe_resume()
        batches = _cycle(self.train_loader, *divmod(self.start_step, len(self.train_loader)))
        every = cfg.resolved_eval_every
        for step in range(self.start_step, cfg.steps):
            self._prune_events(step)
            self._train_step(step, next(batches))
            done = step + 1
            if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                self._save_checkpoint(done)
            if done % every == 0 and done < cfg.steps:
                self._report(self._summary(done, cfg.eval_batches))
        final = self._summary(cfg.steps, None)
        self._report({**final, "final": 1.0})
        if cfg.export_path:
            from .checkpoint import export_sparse_model
            export_sparse_model(self.model, cfg.export_path,
                                extra={"config": cfg.to_dict(), "metrics": final})
        ious = self._mask_iou()
        if ious is not None:
            final["mask_iou"] = ious
        return final

    # ---------------------------------------------------------------------------------- methods
    def _setup_method(self) -> None:
        cfg = self.cfg
        if cfg.method in DYNAMIC:
            from .dynamic import DynamicSparsifier
            d = cfg.dynamic
            sample = _to_device(next(iter(self._score_batches(1))), self.device)
            self.dynamic = DynamicSparsifier(
                self.model, self.optimizer, self.losses, sparsity=cfg.sparsity, t_end=cfg.t_end,
                sample_batch=sample, alpha0=d.alpha0, delta_t=d.delta_t, decay=d.decay, grow=d.grow,
                erk_power=d.erk_power, dense_first=d.dense_first, loss_weights=self.loss_weights,
                collapse=cfg.method == "rigl", seed=cfg.seed)
        elif cfg.method in PRETRAINED and cfg.gradual is not None:
            from .sparsify import GradualPruner
            g = cfg.gradual
            self.pruner = GradualPruner(
                self.model, self.losses, final_sparsity=cfg.sparsity, prune_steps=g.prune_steps,
                interval=g.interval, initial_sparsity=g.initial_sparsity,
                start=cfg.resolved_pretrain_steps, method=cfg.method, criterion=cfg.resolved_criterion,
                loss_weights=self.loss_weights, score_batches=cfg.score_batches)

    def _prune_events(self, step: int) -> None:
        cfg = self.cfg
        if cfg.method in ONE_SHOT_AT_INIT and step == 0:
            self._sparsify_once()
        elif cfg.method in PRETRAINED:
            pre = cfg.resolved_pretrain_steps
            if step == pre:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.resolved_finetune_lr
            if self.pruner is not None:
                if step in self.pruner.prune_steps():
                    result = self.pruner.maybe_prune(step, self._score_batches(cfg.score_batches))
                    if result is not None:
                        self._after_prune(result)
            elif step == pre:
                self._sparsify_once()

    def _sparsify_once(self) -> None:
        from .sparsify import sparsify
        cfg = self.cfg
        options = {"score_batches": cfg.score_batches}
        if cfg.method == "random":
            options["distribution"] = cfg.distribution
            if cfg.distribution == "erk":
                options["erk_power"] = cfg.dynamic.erk_power
        result = sparsify(self.model, self._score_batches(cfg.score_batches), self.losses,
                          sparsity=cfg.sparsity, method=cfg.method, criterion=cfg.resolved_criterion,
                          loss_weights=self.loss_weights, seed=cfg.seed, **options)
        self._after_prune(result)

    def _after_prune(self, result) -> None:
        self.optimizer.state.clear()     # masked weights stay exactly zero; a finetune starts fresh
        if self.cfg.method.startswith("disparse_"):
            self.mask_iou = result.mask_iou()

    def _mask_iou(self) -> dict[str, float] | None:
        """Per shared layer IoU of the tasks' keep-sets: from the last prune (static, pretrained) or
        the last mask update (dynamic; high by construction, see DynamicSparsifier)."""
        if self.dynamic is not None and self.cfg.method == "disparse_dynamic" and self.dynamic.task_keep:
            from .iou import mask_iou
            return mask_iou(self.dynamic.task_keep, self.dynamic.ownership)
        return dict(self.mask_iou) if self.mask_iou is not None else None

    def _score_batches(self, n: int) -> list:
        """The first ``n`` batches of the scoring stream (seeded apart from the training order)."""
        out = []
        for batch in _cycle(self.score_loader):
            out.append(batch)
            if len(out) == n:
                return out
        return out

    # --------------------------------------------------------------------------------- training
    def _train_step(self, step: int, batch) -> None:
        inputs, targets = _to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        recording = self.dynamic.recording(step) if self.dynamic is not None else nullcontext()
        with recording:
            with self.autocast:
                outputs = self.model(inputs)
            task_losses = {t: self.losses[t](outputs[t].float(), targets[t]) for t in self.tasks}
        self._check_finite(step, task_losses)
        if self.dynamic is not None:
            self.dynamic.backward(step, task_losses)
        else:
            weighted_total(task_losses, self.loss_weights).backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    @staticmethod
    def _check_finite(step: int, task_losses: Mapping[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float() for v in task_losses.values()])
        if bool(torch.isfinite(values).all()):
            return
        for (task, _), value in zip(task_losses.items(), values.tolist()):
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss at step {step}: task {task!r} loss = {value}")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------------------- evaluation
    def _summary(self, step: int, max_batches: int | None) -> dict:
        metrics = evaluate(self.model, self.test_loader, self.workload, self.device,
                           max_batches=max_batches,
                           autocast_dtype=torch.bfloat16 if self.cfg.bf16 else None)
        sizes = sparsity_report(self.model)
        prunable_ids = {id(p) for p in _prunable(self.model)}
        others = sum(p.numel() for p in self.model.parameters() if id(p) not in prunable_ids)
        out = dict(metrics)
        out["sparsity"] = float(sizes["sparsity"])
        out["compression"] = 1.0 - sizes["nonzero"] / self.reference_prunable
        out["nonzero_params"] = float(sizes["nonzero"] + others)
        out["wall_time_s"] = self.elapsed_before + time.perf_counter() - self.started
        out["step"] = float(step)
        if self.cfg.baseline_metrics:
            with warnings.catch_warnings():        # a zero baseline metric is documented, not news
                warnings.simplefilter("ignore", RuntimeWarning)
                out["delta_m"] = _safe_delta_m(metrics, self.cfg.baseline_metrics,
                                               self._delta_m_groups())
        return out

    def _report(self, metrics: dict) -> None:
        if self.report is not None:
            self.report(dict(metrics))

    def _delta_m_groups(self) -> dict[str, list[str]]:
        base = self.cfg.baseline_metrics or {}
        groups = {t: [m for m in info.metrics if f"{t}.{m}" in base] for t, info in self.tasks.items()}
        return {t: ms for t, ms in groups.items() if ms}

    # ------------------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path:
        return Path(self.cfg.checkpoint_dir) / ckpt.CHECKPOINT_NAME

    def _save_checkpoint(self, done: int) -> None:
        masked = _is_masked(self.model)
        state = {
            "version": 1,
            "config": self.cfg.to_dict(),
            "step": done,
            "elapsed": self.elapsed_before + time.perf_counter() - self.started,
            "masks": {n: m.cpu() for n, m in get_masks(self.model).items()} if masked else None,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "dynamic": self.dynamic.state_dict() if self.dynamic is not None else None,
            "mask_iou": dict(self.mask_iou) if self.mask_iou is not None else None,
            "rng": ckpt.rng_state(),
        }
        ckpt.save_checkpoint(self._checkpoint_path(), state)

    def _maybe_resume(self) -> None:
        from .masks import attach_masks
        path = self._checkpoint_path()
        if not path.exists():
            return
        state = ckpt.load_checkpoint(path)
        self._check_resumable(state["config"], path)
        if self.dynamic is not None and state["dynamic"] is not None:
            self.dynamic.load_state_dict(state["dynamic"])
        elif state["masks"] is not None:
            attach_masks(self.model, state["masks"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.mask_iou = state["mask_iou"]
        ckpt.set_rng_state(state["rng"])
        self.start_step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])
        self.started = time.perf_counter()

    def _check_resumable(self, saved: Mapping, path: Path) -> None:
        current = self.cfg.to_dict()
        for key, value in current.items():
            if key in _RESUMABLE:
                continue
            if saved.get(key) != value:
                raise ValueError(f"resume: checkpoint {path} was written with {key}={saved.get(key)!r}, "
                                 f"this config has {key}={value!r}")


def _safe_delta_m(metrics, baseline, groups) -> float:
    """Δm, or NaN when every baseline metric is 0 (a training run should not fail at its end)."""
    try:
        return delta_m(metrics, baseline, groups)
    except ValueError:
        return float("nan")


def _is_masked(model: nn.Module) -> bool:
    from torch.nn.utils import parametrize
    from .masks import prunable_modules
    return any(parametrize.is_parametrized(m, "weight") for m in prunable_modules(model).values())


def _prunable(model: nn.Module):
    from .masks import prunable_weights
    return prunable_weights(model).values()
