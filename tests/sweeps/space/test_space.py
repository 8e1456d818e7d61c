"""Search spaces: loading, validation (a table of malformed spaces), shipped spaces, overrides, defaults.
Sampling, the samplers and the budgets as constraints are in test_space_sampling.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeps.errors import BudgetError, SpaceError, UserInputError
from sweeps.space import (DEFAULT_SPACE, TRIAL_FIELDS, apply_overrides, directions, list_spaces, load_space,
                          space_from_dict)

from test_space_sampling import sample_configs  # pytest puts this folder on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BAD = HERE / "bad_spaces"
BASE = str(BAD / "base.yaml")
SHIPPED = ["static", "dynamic", "pretrained", "baselines", "nyuv2"]
CASES = yaml.safe_load((BAD / "cases.yaml").read_text())
ERRORS = {"SpaceError": SpaceError, "BudgetError": BudgetError}


def _nyuv2_index(root: Path, items: int = 32) -> Path:
    """The smallest folder the load-time layout check accepts: ``nyu_v2_3task.json`` (files not needed)."""
    group = ["img.png", "seg.png", "normal.png", "depth.npy"]
    (root / "nyu_v2_3task.json").write_text(json.dumps({"train": [group] * items, "test": [group]}))
    return root


def _load(name, overrides=(), tmp_path=None):
    if name == "nyuv2":
        overrides = [f"workload.data_root={_nyuv2_index(tmp_path)}", *overrides]
    return load_space(name, overrides)


# --- malformed spaces ---------------------------------------------------------------------------

def test_corpus_is_large_and_ids_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)


def test_corpus_base_is_valid():
    spec = load_space(BASE)
    assert spec.name == "base" and spec.metric_names == ["compression", "delta_m"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_malformed_space_is_one_line_naming_key_value_and_expectation(case, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPARSE_TUNE_TEST_UNSET", raising=False)
    if "text" in case:
        path = tmp_path / "space.yaml"
        path.write_text(case["text"])
        call = lambda: load_space(str(path), case.get("set", []))  # noqa: E731
    else:
        call = lambda: load_space(BASE, case["set"])  # noqa: E731
    with pytest.raises(ERRORS[case.get("error", "SpaceError")]) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert "expected" in message
    for part in case["expect"]:
        assert part in message, f"{part!r} not in {message!r}"


def test_errors_are_value_errors_for_the_cli():
    assert issubclass(SpaceError, UserInputError) and issubclass(BudgetError, UserInputError)
    assert issubclass(UserInputError, ValueError)
    assert str(SpaceError("a\nb   c")) == "a b c"


def test_unknown_space_name_suggests_a_shipped_one():
    with pytest.raises(SpaceError, match=r"space: 'dynamc' not found \(did you mean 'dynamic'\?\); expected"):
        load_space("dynamc")


def test_apply_overrides_validates_like_the_file():
    spec = load_space(BASE)
    with pytest.raises(SpaceError, match=r"parameters\.sparsity\.low: 1\.2 is out of range"):
        apply_overrides(spec, ["parameters.sparsity.low=1.2"])


# --- shipped spaces -----------------------------------------------------------------------------

def test_every_shipped_space_is_found():
    assert set(SHIPPED) <= set(list_spaces())
    assert DEFAULT_SPACE == "dynamic"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_round_trips(name, tmp_path):
    spec = _load(name, tmp_path=tmp_path)
    assert spec.path == str(REPO / "search_spaces" / f"{name}.yaml")
    assert spec.raw_text == Path(spec.path).read_text()
    assert spec.trials >= 1 and spec.parameters and spec.objectives
    again = space_from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again.to_dict() == spec.to_dict()


_ABSENT = object()


def _dotted(config, name):
    node = config
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _when_holds(param, config) -> bool:
    """Every ``when:`` condition of ``param`` holds for the values in ``config`` (type-exact: 1 is not true)."""
    for ref, allowed in param.when.items():
        value = _dotted(config, ref)
        if value is _ABSENT or not any(value == a and type(value) is type(a) for a in allowed):
            return False
    return True


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_samples_valid_configs(name, tmp_path):
    from disparse_core.trial import TrialConfig

    spec = _load(name, tmp_path=tmp_path)
    configs = sample_configs(spec, 12)
    for config in configs:
        assert set(config) <= set(TRIAL_FIELDS)
        assert config["workload"] == spec.workload["workload"]
        for p in spec.parameters:
            if not _when_holds(p, config):
                continue                           # its condition is false for this config
            value = _dotted(config, p.name)
            assert value is not _ABSENT, f"{p.name} is active (when: {p.when}) but missing from {config}"
            if p.possible_values() is not None:
                assert value in p.possible_values()
            else:
                assert p.low <= value <= p.high
        TrialConfig.from_dict(config)


def test_dynamic_demo_fits_the_two_core_budget():
    spec = load_space("dynamic")
    assert spec.workload["workload"] == "scenes" and spec.workload["arch"] == "small"
    assert spec.trials >= 8 and spec.concurrency <= 2
    assert spec.resources == {"cpu": 1, "gpu": 0}
    assert 32 <= spec.workload["image_size"] <= 48 and spec.workload["steps"] <= 300
    assert spec.budgets and spec.baseline


def test_nyuv2_takes_its_data_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NYUV2_ROOT", str(_nyuv2_index(tmp_path)))
    spec = load_space("nyuv2")
    assert spec.workload["data_root"] == str(tmp_path.resolve())
    assert spec.resources["gpu"] == 0.25 and spec.workload["arch"] == "deeplab_resnet34"
    monkeypatch.delenv("NYUV2_ROOT")
    with pytest.raises(SpaceError, match=r"workload\.data_root: '\$\{NYUV2_ROOT\}' uses \$\{NYUV2_ROOT\}"):
        load_space("nyuv2")


def test_nyuv2_data_root_needs_its_index_and_enough_items(tmp_path):
    with pytest.raises(SpaceError, match=r"workload\.data_root: .* not a nyuv2 data folder .*nyu_v2_3task\.json"):
        load_space("nyuv2", [f"workload.data_root={tmp_path}"])
    _nyuv2_index(tmp_path, items=4)
    with pytest.raises(SpaceError, match=r"workload\.batch_size: 16 is larger than the training set"):
        load_space("nyuv2", [f"workload.data_root={tmp_path}"])


# --- resolution and overrides -----------------------------------------------------------------------

def test_bare_names_and_paths_resolve(tmp_path, monkeypatch):
    by_name = load_space("dynamic")
    assert load_space("dynamic.yaml").path == by_name.path
    assert load_space(by_name.path).path == by_name.path
    local = tmp_path / "search_spaces"
    local.mkdir()
    (local / "dynamic.yaml").write_text(Path(BASE).read_text().replace("name: base", "name: mine"))
    monkeypatch.chdir(tmp_path)
    assert load_space("dynamic").name == "mine"          # ./search_spaces wins over the project's


def test_overrides_set_fix_and_remove():
    spec = load_space(BASE, ["trials=7", "workload.steps=50", "parameters.sparsity=0.9",
                             "parameters.method=[rigl]", "parameters.lr.low=2e-4", "sampler.seed=3",
                             "budgets.seg.miou=null", "budgets.normal.mean=+5%"])
    assert spec.trials == 7 and spec.workload["steps"] == 50
    assert spec.param["sparsity"].distribution == "fixed" and spec.param["sparsity"].value == 0.9
    assert spec.param["method"].values == ("rigl",)
    assert spec.param["lr"].low == 2e-4
    assert spec.sampler["seed"] == 3
    assert [b.text for b in spec.budgets] == ["normal.mean=+5%"]
    again = apply_overrides(spec, ["trials=2"])
    assert again.trials == 2 and again.workload["steps"] == 50      # earlier overrides kept
    assert again.overrides[-1] == "trials=2" and again.raw == spec.raw
    assert spec.raw["trials"] == 4                                   # the source is not modified


def test_null_removes_a_fixed_key_so_it_can_be_swept():
    spec = load_space("baselines", ["workload.lr=null", "parameters.lr={distribution: log_uniform, low: 1e-4, high: 1e-2}"])
    assert "lr" not in spec.workload and spec.param["lr"].distribution == "log_uniform"


def test_names_mirror_the_core():
    """The space's field tables are derived from the core's schema (disparse_core.config): every key and
    section key, the same choices and bounds, tighter only where the sweep says so (seed, width, pretrain_steps)."""
    from dataclasses import fields

    from disparse_core import config
    from sweeps.space import SEED_MAX, SUB_FIELDS
    assert set(TRIAL_FIELDS) == {f.name for f in fields(config.TrialConfig)}
    assert TRIAL_FIELDS["method"].choices == tuple(config.METHODS)
    assert TRIAL_FIELDS["workload"].choices == config.WORKLOADS and TRIAL_FIELDS["arch"].choices == config.ARCHS
    assert set(SUB_FIELDS["dynamic"]) == {f.name for f in fields(config.DynamicOptions)}
    assert set(SUB_FIELDS["gradual"]) == {f.name for f in fields(config.GradualOptions)}
    for name, core in config.FIELDS.items():
        mine = TRIAL_FIELDS[name]
        assert (mine.low, mine.low_open, mine.high_open, mine.choices, mine.what) == (
            core.low, core.low_open, core.high_open, core.choices, core.what), name
        assert mine.high == (SEED_MAX if name == "seed" else core.high), name
        assert mine.nullable == (core.nullable and name not in ("width", "pretrain_steps")), name
    assert SUB_FIELDS["dynamic"]["decay"].choices == config.DECAYS
    assert SUB_FIELDS["gradual"]["initial_sparsity"].high == config.SECTION_FIELDS["gradual"]["initial_sparsity"].high


def test_env_default_and_numbers_written_like_1e_4(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPARSE_TUNE_TEST_UNSET", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text("workload: {checkpoint_dir: '${DISPARSE_TUNE_TEST_UNSET:-ckpt}'}\n"
                    "parameters:\n  lr: {distribution: log_uniform, low: 1e-4, high: 1e-2}\n"
                    "objectives: [compression, seg.miou]\n")
    monkeypatch.chdir(tmp_path)
    spec = load_space(str(path))
    assert spec.param["lr"].low == pytest.approx(1e-4)
    assert spec.workload["checkpoint_dir"] == str(tmp_path.resolve() / "ckpt")   # absolute: Ray changes cwd


def test_defaults_are_filled_in(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("parameters:\n  sparsity: {distribution: uniform, low: 0.5, high: 0.9}\n")
    spec = load_space(str(path))
    assert spec.name == "s" and spec.workload["workload"] == "scenes"
    assert spec.metric_names == ["compression", "delta_m"] and spec.baseline
    assert spec.sampler == {"type": "gp", "seed": 0, "n_startup_trials": 3}
    assert (spec.trials, spec.concurrency, spec.max_retries) == (10, 1, 1)
    assert spec.early_stopping == {"type": "none"}
    no_base = load_space(str(path), ["baseline=false"])
    assert no_base.metric_names == ["compression", "seg.miou", "depth.abs_err", "normal.mean"]


def test_objective_directions_follow_the_metrics_unless_overridden():
    spec = load_space(BASE, ["objectives=[compression, seg.miou, normal.mean, {name: sparsity, direction: minimize}]"])
    assert directions(spec) == ["maximize", "maximize", "minimize", "minimize"]


def test_objectives_take_a_hypervolume_reference_value():
    spec = load_space(BASE, ["objectives=[{name: compression, reference: 0}, {name: delta_m, reference: -100}]"])
    assert [(o.name, o.reference) for o in spec.objectives] == [("compression", 0.0), ("delta_m", -100.0)]
    again = spec.to_dict()["objectives"]
    assert again == [{"name": "compression", "direction": "maximize", "reference": 0.0},
                     {"name": "delta_m", "direction": "maximize", "reference": -100.0}]
    assert [o.reference for o in load_space(BASE).objectives] == [None] * len(load_space(BASE).objectives)
    from sweeps.run import RunOptions, describe_plan, make_plan
    plan = make_plan(RunOptions(space=BASE, overrides=["objectives=[{name: compression, reference: 0}, delta_m]"],
                                dry_run=True))
    assert "objectives: compression (maximize, hypervolume reference 0), delta_m (maximize)" in describe_plan(plan)


def test_asha_defaults():
    # two objectives: ranked on both (multi-objective ASHA, tests/sweeps/space/test_space_early_stopping.py)
    spec = load_space(BASE, ["early_stopping={type: asha}"])
    assert spec.early_stopping == {"type": "asha", "metric": "objectives", "grace_steps": 50,
                                   "reduction_factor": 3, "keep_non_dominated": True, "max_steps": 200}
    spec = load_space(BASE, ["early_stopping={type: asha, metric: delta_m}"])
    assert spec.early_stopping == {"type": "asha", "metric": "delta_m", "mode": "max", "grace_steps": 50,
                                   "reduction_factor": 3, "max_steps": 200}
    spec = load_space(BASE, ["early_stopping={type: asha, metric: normal.mean, grace_steps: 20}"])
    assert spec.early_stopping["mode"] == "min" and spec.early_stopping["grace_steps"] == 20


# --- boundaries -----------------------------------------------------------------------------------

def _imported_by(code: str, modules: tuple[str, ...]) -> str:
    """Which of ``modules`` a fresh interpreter has imported after running ``code`` (printed as a list)."""
    probe = f"import sys; {code}; print([m for m in {modules!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_sweeps_imports_stay_light():
    assert _imported_by("import sweeps, sweeps.space, sweeps.budgets, sweeps.pareto, sweeps.errors",
                        ("torch", "optuna", "ray", "mlflow")) == "[]"


def test_loading_and_sampling_never_import_ray_or_mlflow():
    code = ("import optuna, sweeps.space as s; spec = s.load_space('dynamic');"
            "s.suggest(spec, optuna.create_study(directions=s.directions(spec)).ask())")
    assert _imported_by(code, ("ray", "mlflow")) == "[]"
