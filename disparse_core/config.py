"""The trial schema, the one home of what a trial config accepts: :class:`TrialConfig`
(``TrialConfig.from_dict`` validates a plain dict; every problem is a one-line ``ValueError`` naming the
key, the value and what was expected), its option sections, :data:`FIELDS` (what each key accepts, read
by the sweep's search-space checks too), the value tuples (:data:`METHODS`, :data:`WORKLOADS`,
:data:`ARCHS`, the method groups, :data:`CRITERIA`, :data:`ALLOTMENTS`, :data:`SCORE_ON`, ...) and
:data:`PRESETS`.

Importing this module loads no torch: the checks that need a workload's task table import the data
package inside the method that needs it. The value checks are in the private ``_config_values``.
:mod:`disparse_core.trial` re-exports the main names.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ._config_values import DEVICE_PATTERN, Field, merge_sections, nest_dotted, unknown_key_message
from .factories import is_factory

__all__ = ["TrialConfig", "DynamicOptions", "GradualOptions", "Field", "FIELDS", "SECTION_FIELDS", "METHODS",
           "PRESETS", "ONE_SHOT_AT_INIT", "PRETRAINED", "DYNAMIC", "SPARSIFY_METHODS", "WORKLOADS", "REAL_DATA",
           "GENERATED", "ARCHS", "NUM_BLOCKS", "num_blocks", "CRITERIA", "DISTRIBUTIONS", "SCORE_ON", "SCORE_ON_DEFAULT", "ALLOTMENTS",
           "OPTIMIZERS", "DECAYS", "GROW_MODES", "DEVICE_PATTERN", "resolved_config", "gradual_start"]

# method -> (default criterion, allowed criteria); None: the method uses no scores
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
#: the methods :func:`disparse_core.sparsify.sparsify` decides (one-shot; ``dense`` keeps the masks)
SPARSIFY_METHODS = ("disparse_static", "disparse_pretrained", "snip", "magnitude", "random", "dense")
WORKLOADS = ("scenes", "digits", "cues", "nyuv2", "cityscapes", "taskonomy")
REAL_DATA = ("nyuv2", "cityscapes", "taskonomy")           # read from data_root
GENERATED = ("scenes", "digits", "cues")                   # built in, sized by image/train/test_size
ARCHS = ("small", "deeplab_resnet34")
#: backbone blocks ``B`` of each architecture (valid cutoffs are ``0..B``)
NUM_BLOCKS = {"small": 8, "deeplab_resnet34": 17}
CRITERIA = ("snip", "magnitude", "taylor", "gradient")
DISTRIBUTIONS = ("uniform", "erk")                          # the random baseline's layer densities
#: which weights the scores are computed on: the model's own, or a seeded Xavier-normal re-draw
SCORE_ON = ("weights", "reinit")
#: ``score_on`` when the config leaves it None, by variant: at init the weights are one random draw
#: among many, and scoring a fresh draw ranked best (docs/fidelity.md); a trained net's weights are
#: what the pretrained methods score
SCORE_ON_DEFAULT = {m: "reinit" if m in ONE_SHOT_AT_INIT else "weights" for m in METHODS}
ALLOTMENTS = ("global", "layer", "iterative", "erk", "uniform")
OPTIMIZERS = ("adam", "sgd")
DECAYS = ("cosine", "linear", "constant")
GROW_MODES = ("exact", "union")


def num_blocks(arch: str) -> int:
    """Number of backbone blocks ``B`` of an architecture (valid cutoffs are ``0..B``)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return NUM_BLOCKS[arch]


#: Named settings; ``{"preset": name, ...}`` starts from these and the other keys override them.
PRESETS: dict[str, dict[str, Any]] = {
    # DISPARSE.md §3: the reference NYUv2 training (DeepLab-ResNet34, 20000 steps of batch 16).
    "nyuv2_reference": {
        "workload": "nyuv2", "arch": "deeplab_resnet34", "sparsity": 0.9,
        "steps": 20000, "batch_size": 16, "optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4,
        "lr_step": 4000, "lr_gamma": 0.5, "loss_weights": {"seg": 1.0, "normal": 20.0},
        "score_batches": 50, "pretrain_steps": 19000, "finetune_lr": 1e-5,
        "eval_every": 1000,
        # the reference's static scoring: one ranking over all layers, on a Xavier re-draw, no floor
        "score_on": "reinit", "allotment": "global", "layer_floor": 0.0,
        "dynamic": {"alpha0": 0.5, "delta_t": 50, "t_end_frac": 0.75, "decay": "cosine",
                    "grow": "exact", "erk_power": 0.9, "dense_first": True},
    },
}


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
      (``erk`` uses ``dynamic.erk_power``); ``allotment: erk`` or ``uniform`` overrides it.
    - ``score_on``, ``allotment``, ``layer_floor``, ``score_rounds``: how the one-shot methods
      (``disparse_static``, ``disparse_pretrained``, ``snip``, ``magnitude``, ``random``) score and
      split the budget across layers, the same for every one of them (:mod:`disparse_core.allotment`;
      ``score_on: reinit`` scores a seeded Xavier-normal re-draw, as the DiSparse reference does;
      ``score_rounds`` is the number of rounds of ``allotment: iterative``). The dynamic methods keep
      their ERK start and prune/grow updates and ignore them. Defaults, chosen by the fidelity
      benchmark (docs/fidelity.md): ``allotment: erk`` with the layer floor, and ``score_on`` by
      variant (:data:`SCORE_ON_DEFAULT`): a re-draw for the methods that prune at init, the trained
      weights for the pretrained ones (a re-draw would throw their training away).
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
    score_on: str | None = None
    allotment: str = "erk"
    layer_floor: float = 0.1
    score_rounds: int = 5
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
        d = nest_dotted(dict(d or {}))
        preset = d.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
            d = merge_sections(copy.deepcopy(PRESETS[preset]), d)
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ValueError(unknown_key_message(key, known))
        values = {}
        for f in fields(cls):
            if f.name in ("dynamic", "gradual"):
                continue
            if f.name in d:
                values[f.name] = FIELDS[f.name].check(f.name, d[f.name])
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
    def resolved_score_on(self) -> str:
        return self.score_on if self.score_on is not None else SCORE_ON_DEFAULT[self.method]

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
        if self.workload in REAL_DATA and not self.data_root:
            raise ValueError(f"data_root: workload {self.workload!r} needs data_root (a folder)")
        if self.method in PRETRAINED:
            pre = self.resolved_pretrain_steps
            if pre >= self.steps:
                raise ValueError(f"pretrain_steps: must be < steps={self.steps}, got {pre}")
            if self.gradual is not None:
                g = self.gradual
                last = gradual_start(pre, g) + g.prune_steps * g.interval
                if last >= self.steps:
                    extra = "prune_steps" if g.initial_sparsity > 0 else "(prune_steps - 1)"
                    raise ValueError(f"gradual: last prune step pretrain_steps + {extra}*interval = "
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
        from .data import workload_tasks     # the task tables load torch: only when a config is checked
        from .tasks import check_loss_weights
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
                    raise ValueError(unknown_key_message(key, known).replace("config key", "baseline_metrics key"))
            if not named:
                raise ValueError(f"baseline_metrics: names no task metric (expected keys such as "
                                 f"{known[0]!r})")


def _int_field(low, **kw) -> Field:
    return Field("int", low=low, **kw)


def _choice_field(choices, what, **kw) -> Field:
    return Field("choice", choices=tuple(choices), what=what, **kw)


_FRACTION = Field("float", 0.0, 1.0, high_open=True)

#: what each top-level key of :class:`TrialConfig` accepts (docs/ARCHITECTURE.md, "Trial config")
FIELDS: dict[str, Field] = {
    "workload": Field("factory", choices=WORKLOADS, what="workload"),
    "data_root": Field("path", nullable=True),
    "image_size": _int_field(8, nullable=True),
    "train_size": _int_field(1, nullable=True),
    "test_size": _int_field(1, nullable=True),
    "tasks": Field("tasks", nullable=True),
    "arch": Field("factory", choices=ARCHS, what="arch"),
    "width": _int_field(1, nullable=True),
    "cutoff": _int_field(0, nullable=True),
    "loss_weights": Field("float_map", nullable=True),
    "method": _choice_field(METHODS, "method"),
    "criterion": _choice_field(CRITERIA, "criterion", nullable=True),
    "sparsity": _FRACTION,
    "distribution": _choice_field(DISTRIBUTIONS, "mask distribution"),
    "score_on": _choice_field(SCORE_ON, "scoring weights", nullable=True),
    "allotment": _choice_field(ALLOTMENTS, "layer allotment"),
    "layer_floor": Field("float", 0.0, 1.0),
    "score_rounds": _int_field(1),
    "steps": _int_field(1),
    "batch_size": _int_field(1),
    "lr": Field("float", 0.0, low_open=True),
    "weight_decay": Field("float", 0.0),
    "optimizer": _choice_field(OPTIMIZERS, "optimizer"),
    "lr_step": _int_field(1, nullable=True),
    "lr_gamma": Field("float", 0.0, 1.0, low_open=True),
    "eval_every": _int_field(1, nullable=True),
    "eval_batches": _int_field(1, nullable=True),
    "score_batches": _int_field(1),
    "pretrain_steps": _int_field(0, nullable=True),
    "finetune_lr": Field("float", 0.0, low_open=True, nullable=True),
    "gradual": Field("section", nullable=True),
    "dynamic": Field("section", nullable=True),
    "seed": _int_field(0),
    "device": Field("device"),
    "bf16": Field("bool"),
    "num_threads": _int_field(1, nullable=True),
    "checkpoint_dir": Field("path", nullable=True),
    "checkpoint_every": _int_field(1, nullable=True),
    "resume": Field("bool"),
    "export_path": Field("path", nullable=True),
    "baseline_metrics": Field("float_map", nullable=True),
    "preset": Field("str", nullable=True),         # a name in PRESETS (from_dict checks it first)
}

#: the keys of each section (``dynamic.alpha0``, ``gradual.interval``, ...)
SECTION_FIELDS: dict[str, dict[str, Field]] = {
    "gradual": {"prune_steps": _int_field(1), "interval": _int_field(1), "initial_sparsity": _FRACTION},
    "dynamic": {"alpha0": Field("float", 0.0, 1.0), "delta_t": _int_field(1),
                "t_end_frac": Field("float", 0.0, 1.0, low_open=True),
                "decay": _choice_field(DECAYS, "decay"), "grow": _choice_field(GROW_MODES, "grow mode"),
                "erk_power": Field("float", 0.0), "dense_first": Field("bool")},
}


def resolved_config(config: Mapping[str, Any] | TrialConfig | None = None) -> dict:
    """Every key of the trial config with the value this code version gives it, as a plain JSON-able dict.

    ``run_trial`` on the result trains the same trial as on ``config``, and keeps doing so if a later
    version changes a default. Resolved: the defaults of the dataclasses (the ``dynamic`` section
    included), the preset's values (``preset`` becomes None: they are all explicit), ``criterion`` and
    ``score_on`` by method, ``pretrain_steps`` (``steps // 2``), ``finetune_lr`` (``lr / 10``), ``eval_every``
    (``steps // 3``), ``tasks`` (the workload's default list), ``loss_weights`` (the workload's reference weight,
    else 1, for each task not named), ``width`` of ``small``, and the sizes of the generated workloads (scenes, digits). Left as
    given: values whose None is a setting of its own (``cutoff`` None = fully shared, ``gradual`` None =
    one-shot, ``eval_batches`` None = all, ...), a real data set's sizes (None: its builder's crop, all
    items), and ``device``/``num_threads`` (the machine that runs the trial decides). Cheap: no data or model is
    built. A bad config raises the ``ValueError`` of :meth:`TrialConfig.from_dict`.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    out = cfg.to_dict()
    out.update(preset=None, criterion=cfg.resolved_criterion, score_on=cfg.resolved_score_on,
               pretrain_steps=cfg.resolved_pretrain_steps,
               finetune_lr=cfg.resolved_finetune_lr, eval_every=cfg.resolved_eval_every)
    from .data import workload_loss_weights, workload_tasks     # torch, only when a config is resolved
    from .tasks import check_loss_weights
    infos = workload_tasks(cfg.workload, cfg.tasks)
    out["tasks"] = list(infos)
    out["loss_weights"] = check_loss_weights(infos, {**workload_loss_weights(cfg.workload, cfg.tasks),
                                                     **(cfg.loss_weights or {})})
    if cfg.arch == "small" and cfg.width is None:      # build_model's default is the width it builds
        from .models import build_model
        out["width"] = inspect.signature(build_model).parameters["width"].default
    if cfg.workload in GENERATED:   # the generators' own size table
        defaults = importlib.import_module(f".data.{cfg.workload}", __package__).DEFAULTS
        for key in ("image_size", "train_size", "test_size"):
            if out[key] is None:
                out[key] = int(defaults[key])
    return out


def gradual_start(pretrain_steps: int, gradual) -> int:
    """The cubic schedule's ``t0`` such that the first pruning event is at ``pretrain_steps``: the event at
    ``t0`` prunes to ``initial_sparsity``, so with none (0) ``t0`` is one interval earlier and its
    (empty) event falls inside the dense pretraining; ``prune_steps`` events then prune, the last at
    ``pretrain_steps + (prune_steps - 1) * interval`` (``+ prune_steps * interval`` with an initial one)."""
    return pretrain_steps if gradual.initial_sparsity > 0 else pretrain_steps - gradual.interval


def _section(cls, name, d):
    if isinstance(d, cls):
        d = asdict(d)
    if not isinstance(d, Mapping):
        raise ValueError(f"{name}: expected a mapping of options, got {d!r}")
    known = [f.name for f in fields(cls)]
    values = {}
    for key, value in d.items():
        if key not in known:
            raise ValueError(unknown_key_message(f"{name}.{key}", [f"{name}.{k}" for k in known]))
        values[key] = SECTION_FIELDS[name][key].check(f"{name}.{key}", value)
    return cls(**values)


def _check_cutoff(arch, cutoff) -> None:
    if cutoff is None:
        return
    if is_factory(arch):
        raise ValueError(f"cutoff: {cutoff} applies to the built-in archs ({', '.join(ARCHS)}); expected null "
                         f"with a factory arch (its own branching point goes in arch.args)")
    blocks = num_blocks(arch)
    if cutoff > blocks:
        raise ValueError(f"cutoff: must be in 0..{blocks} (arch {arch!r} has {blocks} backbone "
                         f"blocks), got {cutoff}")
