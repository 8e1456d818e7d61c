"""From command-line options to a :class:`Plan`: every input check, nothing written.

:func:`make_plan` validates the space, overrides, flags, paths, Ray address and tracking URI and raises
:class:`~sweeps.errors.UserInputError` (one line) on the first problem; :func:`describe_plan` is the
``--dry-run`` text. Part of :mod:`sweeps.run`, which re-exports the public names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserInputError, text_value_problem
from .baseline import baseline_note, shared_dense
from .checks import check_creatable, check_free_space, check_local_cpus, nearest_existing
from .files import (DEFAULT_RESULTS_ROOT, SPACE_COPY, STATE_FILE, STUDY_FILE, free_results_dir, latest_results_dir,
                    read_state, study_file)
from .study import load_sweep_study

__all__ = ["RunOptions", "Plan", "make_plan", "describe_plan", "resume_dir"]


@dataclass
class RunOptions:
    space: str | None = None
    overrides: Sequence[str] = ()
    trials: int | None = None
    concurrency: int | None = None
    seed: int | None = None
    ray_address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    results_dir: str | None = None
    resume: bool = False
    dry_run: bool = False
    verbose: bool = False


@dataclass
class Plan:
    spec: Any
    sweep_id: str
    results_dir: Path
    tracking_uri: str
    experiment: str
    ray_address: str | None
    resume: bool
    overrides: list[str]
    space_file: Path | None
    verbose: bool = False

    @property
    def study_path(self) -> Path:
        """The study file: ``optuna.journal``, or the sqlite ``optuna.db`` of a sweep started before the
        journal (resumed as it is)."""
        return study_file(self.results_dir).resolve()


def make_plan(opts: RunOptions) -> Plan:
    """Validate the options into a plan. Writes nothing; raises UserInputError (one line)."""
    _check_flags(opts)
    _check_address(opts.ray_address)
    overrides = _overrides(opts)
    if opts.resume:
        return _resume_plan(opts, overrides, Path.cwd())
    return _new_plan(opts, overrides, Path.cwd())


# ------------------------------------------------------------------------------------ the options
def _check_flags(opts: RunOptions) -> None:
    if opts.resume and opts.dry_run:
        raise UserInputError("--resume and --dry-run: cannot be combined; expected one of them")
    for flag, value in (("--trials", opts.trials), ("--concurrency", opts.concurrency)):
        if value is not None and value < 1:
            raise UserInputError(f"{flag}: {value} is not allowed; expected an integer >= 1")
    if opts.seed is not None and opts.seed < 0:
        raise UserInputError(f"--seed: {opts.seed} is not allowed; expected an integer >= 0")
    for flag, value in (("--space", opts.space), ("--tracking-uri", opts.tracking_uri),
                        ("--experiment", opts.experiment), ("--results-dir", opts.results_dir),
                        ("--ray-address", opts.ray_address)):
        if value is not None:
            check_text_flag(flag, value)


def check_text_flag(flag: str, value: str) -> str:
    """A flag's text value, checked as the CLI checks it (:func:`sweeps.errors.text_value_problem`)."""
    problem = text_value_problem(str(value))
    if problem:
        raise UserInputError(f"{flag}: {problem}")
    return str(value)


def _overrides(opts: RunOptions) -> list[str]:
    """``--set`` overrides plus the ones ``--trials``, ``--concurrency`` and ``--seed`` stand for."""
    out = [str(o) for o in opts.overrides]
    if opts.trials is not None:
        out.append(f"trials={opts.trials}")
    if opts.concurrency is not None:
        out.append(f"concurrency={opts.concurrency}")
    if opts.seed is not None:
        out.append(f"sampler.seed={opts.seed}")
    return out


def _check_address(address: str | None) -> None:
    if address is None:
        return
    text = address.strip()
    if text == "auto":
        return
    if "://" in text:
        raise UserInputError(f"--ray-address: {address!r} is not supported (Ray Client addresses such as "
                             f"ray://HOST:PORT need ray[client] and are not used by disparse-tune); "
                             f"expected 'auto' or HOST:PORT of a Ray cluster's GCS (e.g. 127.0.0.1:6379)")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserInputError(f"--ray-address: {address!r} is not valid; expected 'auto' or HOST:PORT "
                             f"(e.g. 127.0.0.1:6379)")
    import socket

    try:  # the user named this address: one TCP connect tells a typo from a cluster, in seconds
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise UserInputError(f"--ray-address: nothing answers at {address!r} ({err.strerror or err}); "
                             f"expected the address of a running Ray head (ray start --head)") from None


# ----------------------------------------------------------------------------------- a new sweep
def _new_plan(opts: RunOptions, overrides: list[str], cwd: Path) -> Plan:
    from ..space import DEFAULT_SPACE, load_space
    from ..tracking import DEFAULT_EXPERIMENT, default_tracking_uri, probe_http_store

    # cheap checks before the space (whose validation loads the core, i.e. torch)
    tracking_uri = _check_tracking_uri(opts.tracking_uri or default_tracking_uri(cwd))
    results_dir = _check_new_results_dir(opts.results_dir) if opts.results_dir else None
    spec = load_space(opts.space or DEFAULT_SPACE, overrides)
    flag = "--results-dir"
    if results_dir is None:
        results_dir = free_results_dir(cwd / DEFAULT_RESULTS_ROOT, spec.name)
        flag = "results folder (the default; choose one with --results-dir)"
        check_creatable(flag, results_dir)
    check_free_space(flag, results_dir)
    _check_machine(opts, spec)
    probe_http_store(tracking_uri)
    experiment = opts.experiment or DEFAULT_EXPERIMENT
    sweep_id = _free_sweep_id(results_dir.name, tracking_uri, experiment)
    return Plan(spec=spec, sweep_id=sweep_id, results_dir=results_dir,
                tracking_uri=tracking_uri, experiment=experiment,
                ray_address=opts.ray_address, resume=False, overrides=overrides,
                space_file=Path(spec.path) if spec.path else None, verbose=opts.verbose)


def _check_machine(opts: RunOptions, spec) -> None:
    """A local Ray: one trial must fit this machine (a cluster is checked once joined, before anything
    is written)."""
    if not opts.ray_address:
        check_local_cpus(spec)


def _check_new_results_dir(given: str) -> Path:
    results_dir = Path(given).expanduser().resolve()
    check_creatable("--results-dir", results_dir)
    if (results_dir / STATE_FILE).exists():
        raise UserInputError(f"--results-dir: {str(results_dir)!r} already holds a sweep; expected "
                             f"--resume to continue it or another folder")
    return results_dir


def _check_tracking_uri(uri: str) -> str:
    """Validate a store a sweep will write, without creating anything (no folder, no file)."""
    from ..tracking import validate_tracking_uri

    text = str(uri)
    if text.startswith("sqlite:///"):
        path = Path(text[len("sqlite:///"):].split("?", 1)[0]).expanduser().resolve()
        if not path.parent.exists():
            ancestor = nearest_existing(path.parent)
            if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
                raise UserInputError(f"--tracking-uri: {text!r}: folder {str(path.parent)!r} cannot be "
                                     f"created ({str(ancestor)!r} is not writable); expected a "
                                     f"writable location")
            check_free_space("--tracking-uri", path)
            return "sqlite:///" + str(path)
        uri = validate_tracking_uri(text, create=True)
        check_free_space("--tracking-uri", path)
        return uri
    return validate_tracking_uri(text, create=True)


def _free_sweep_id(name: str, tracking_uri: str, experiment: str) -> str:
    """``name``, or ``name-2``, ``name-3``... when the MLflow experiment already has that sweep."""
    path = Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") else None
    if path is not None and not path.is_file():
        return name  # a new store: every id is free (and nothing is created to find out)
    from ..tracking import load_sweep

    candidate, n = name, 1
    while True:
        try:
            load_sweep(tracking_uri, experiment, candidate)
        except UserInputError:
            return candidate
        n += 1
        candidate = f"{name}-{n}"


# -------------------------------------------------------------------------------------- --resume
def _resume_plan(opts: RunOptions, overrides: list[str], cwd: Path) -> Plan:
    from ..space import load_space
    from ..tracking import DEFAULT_EXPERIMENT, probe_http_store, validate_tracking_uri

    results_dir = resume_dir(opts, cwd / DEFAULT_RESULTS_ROOT)
    state = read_state(results_dir)
    space_file = results_dir / SPACE_COPY
    if not space_file.is_file():
        raise UserInputError(f"--resume: {str(space_file)!r} is missing; expected the space copy "
                             f"written when the sweep started")
    if opts.space:
        _check_same_space(opts.space, space_file)
    all_overrides = list(state.get("overrides", [])) + overrides
    spec = load_space(str(space_file), all_overrides)
    spec.name = state.get("space_name", spec.name)
    sweep_id = state["sweep_id"]
    started = load_space(str(space_file), list(state.get("overrides", []))) if overrides else spec
    _check_same_objectives(spec, started, results_dir, sweep_id)
    address = state.get("ray_address")
    if not opts.ray_address and address:
        _check_saved_address(address, results_dir)
    tracking_uri = validate_tracking_uri(opts.tracking_uri or state["tracking_uri"], create=False)
    _check_machine(opts if opts.ray_address else RunOptions(ray_address=state.get("ray_address")), spec)
    probe_http_store(tracking_uri)
    check_free_space("--results-dir", results_dir)
    return Plan(spec=spec, sweep_id=sweep_id, results_dir=results_dir,
                tracking_uri=tracking_uri,
                experiment=opts.experiment or state.get("experiment", DEFAULT_EXPERIMENT),
                ray_address=opts.ray_address or state.get("ray_address"), resume=True,
                overrides=all_overrides, space_file=space_file, verbose=opts.verbose)


def _objectives_text(objectives) -> str:
    return "[" + ", ".join(f"{name} ({direction})" for name, direction in objectives) + "]"


def _check_same_objectives(spec, started, results_dir: Path, sweep_id: str) -> None:
    """A resume continues the sweep's study: its objectives (names, directions, order) are fixed. A
    change found only once Ray runs would already have rewritten sweep.json, the study and MLflow."""
    given = [(o.name, o.direction.lower()) for o in spec.objectives]
    before = [(o.name, o.direction.lower()) for o in started.objectives]
    if given != before:
        raise UserInputError(f"objectives: {_objectives_text(given)} differs from the objectives this "
                             f"sweep started with; expected {_objectives_text(before)} (a resumed sweep "
                             f"keeps its objectives: start a new sweep to change them)")
    study = _saved_study(results_dir, sweep_id)
    if study is None:
        return
    saved = [d.name.lower() for d in study.directions]
    if [d for _, d in given] != saved:
        raise UserInputError(f"objectives: {_objectives_text(given)} do not match the study in "
                             f"{str(study_file(results_dir))!r}; expected {len(saved)} objective(s) with "
                             f"directions {saved}")


def _saved_study(results_dir: Path, sweep_id: str):
    """The sweep's study if it was created already (a sweep stopped during its baseline has none)."""
    if not study_file(results_dir).exists():
        return None
    try:
        return load_sweep_study(results_dir, sweep_id)
    except KeyError:  # optuna: no study of that name yet
        return None
    except UserInputError:
        raise
    except Exception as err:  # noqa: BLE001 - an unreadable study file is the user's folder
        raise UserInputError(f"--resume: {str(study_file(results_dir))!r} cannot be read "
                             f"({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}); "
                             f"expected the study file the sweep wrote") from None


def _check_saved_address(address, results_dir: Path) -> None:
    if not isinstance(address, str) or "://" in address or not address.strip():
        raise UserInputError(f"{str(results_dir / STATE_FILE)!r}: ray_address {address!r} is not "
                             f"supported; expected 'auto' or HOST:PORT of a Ray cluster's GCS (give "
                             f"--ray-address to override it)")


def resume_dir(opts: RunOptions, root: Path) -> Path:
    """``--results-dir``, else the latest sweep folder named after the space."""
    from ..space import DEFAULT_SPACE, load_space

    if opts.results_dir:
        return Path(opts.results_dir).expanduser().resolve()
    name = load_space(opts.space or DEFAULT_SPACE).name  # the folder is named after the space's name:
    found = latest_results_dir(root, name)
    if found is None:
        raise UserInputError(f"--resume: no sweep named {name!r} under {str(root)!r}; expected "
                             f"--results-dir DIR of the sweep to continue")
    return found


def _check_same_space(given_space: str, space_file: Path) -> None:
    from ..space import load_space

    given = load_space(given_space)  # validates; a different file cannot continue this sweep
    if given.raw_text != space_file.read_text(encoding="utf-8"):
        raise UserInputError(f"--space: {given_space!r} differs from the space this sweep started "
                             f"with ({str(space_file)!r}); expected the same file or no --space")


# ------------------------------------------------------------------------------------- --dry-run
def describe_plan(plan: Plan) -> str:
    """The --dry-run text: what would run, with which settings, and where things would be written."""
    spec = plan.spec
    lines = [f"sweep {plan.sweep_id!r} ({'resume' if plan.resume else 'new'})"
             f" from space {spec.name!r}" + (f" ({spec.path})" if spec.path else "")]
    if spec.description:
        lines.append(f"  {spec.description.strip().splitlines()[0]}")
    base = spec.workload
    lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in base.items() if v is not None))
    lines.append("parameters:")
    for p in spec.parameters:
        lines.append(f"  {p.name}: {json.dumps(p.to_dict(), default=str)}")
    lines.append("objectives: " + ", ".join(
        f"{o.name} ({o.direction}" + (f", hypervolume reference {o.reference:g})" if o.reference is not None
                                      else ")") for o in spec.objectives))
    lines.append("budgets: " + (", ".join(b.text for b in spec.budgets) or "none"))
    lines.append(f"sampler: {json.dumps(spec.sampler, default=str)}")
    lines.append(f"trials: {spec.trials}, concurrency: {spec.concurrency}, "
                 f"resources per trial: {json.dumps(spec.resources)}, max retries: {spec.max_retries}")
    es = spec.early_stopping or {}
    lines.append("early stopping: " + ("none" if es.get("type", "none") in (None, "none")
                                       else json.dumps(es, default=str)))
    lines.append(f"dense baseline: {'reused from MLflow or run first' if spec.baseline else 'off'}")
    note = baseline_note(spec)
    if note:
        lines.append(f"  {note}")
    lines.append(f"shared: {shared_dense(spec, plan.results_dir.parent).reason}")
    lines.append("ray: " + (f"cluster at {plan.ray_address}" if plan.ray_address
                            else f"local on 127.0.0.1, {os.cpu_count()} CPUs"))
    if getattr(spec, "user_code", ()):      # a workload or arch of the user's own (docs/extending.md)
        lines.append("user code: " + ", ".join(Path(p).name for p in spec.user_code)
                     + " (copied to every Ray worker as the job's working_dir)")
    lines.append(f"mlflow: {plan.tracking_uri}, experiment {plan.experiment!r}")
    lines.append(f"results: {plan.results_dir} (sweep.json, space.yaml, {STUDY_FILE}, ray/)")
    return "\n".join(lines)
