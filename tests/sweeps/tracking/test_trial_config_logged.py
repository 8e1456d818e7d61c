"""A trial's ``trial_config.json`` in MLflow holds every setting it ran with, defaults included, so that
``run_trial`` on the downloaded file alone repeats the trial (README, "Pick a model under a budget").

A real MLflow sqlite store (the ``store`` fixture), read back with ``MlflowClient``; real tiny trials.
"""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from disparse_core import run_trial
from disparse_core.config import METHODS, TrialConfig, resolved_config

from tracking_helpers import EXP, start

# what a sweep gives a trial: the space's keys only (the rest is left to the code's defaults)
TINY = {"workload": "scenes", "image_size": 32, "train_size": 16, "test_size": 8, "tasks": ["seg", "normal"],
        "batch_size": 8, "steps": 6, "sparsity": 0.5, "seed": 0, "device": "cpu", "num_threads": 1}


def _logged(store, tmp_path, key, config) -> dict:
    """Start trial ``key`` with ``config`` as the sweep does; its trial_config.json as MLflow gives it back."""
    start(store).trial_started(key, config, optuna_number=0)
    client = MlflowClient(store)
    run, = client.search_runs([client.get_experiment_by_name(EXP).experiment_id],
                              f"tags.`disparse.trial_key` = '{key}'")
    path = client.download_artifacts(run.info.run_id, "trial_config.json", str(tmp_path / key))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _metrics(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("wall_time_s", "mask_iou")}


def test_the_logged_config_has_every_key_with_its_default(store, tmp_path):
    given = {**TINY, "method": "disparse_dynamic", "lr": 2e-3, "dynamic.alpha0": 0.3,
             "baseline_metrics": {"seg.miou": 0.5}}
    logged = _logged(store, tmp_path, "t0000", given)

    assert set(logged) == set(TrialConfig().to_dict())          # every key of the trial config
    assert logged["criterion"] == "gradient" and logged["finetune_lr"] == pytest.approx(2e-4)
    assert logged["dynamic"] == {"alpha0": 0.3, "delta_t": 25, "t_end_frac": 0.75, "decay": "cosine",
                                 "grow": "exact", "erk_power": 0.9, "dense_first": True}
    assert logged["pretrain_steps"] == 3 and logged["eval_every"] == 2 and logged["width"] == 16
    assert logged["loss_weights"] == {"seg": 1.0, "normal": 1.0} and logged["preset"] is None
    assert logged["lr"] == 2e-3 and logged["baseline_metrics"] == {"seg.miou": 0.5}
    assert TrialConfig.from_dict(logged).to_dict() == logged          # run_trial accepts it as it is
    assert resolved_config(logged) == logged

    # the params of the run stay what the space gave (queries and `best` read those)
    client = MlflowClient(store)
    run, = client.search_runs([client.get_experiment_by_name(EXP).experiment_id],
                              "tags.`disparse.trial_key` = 't0000'")
    assert "finetune_lr" not in run.data.params and run.data.params["dynamic.alpha0"] == "0.3"


def test_running_the_logged_config_repeats_the_trial_even_if_a_default_changes(store, tmp_path, monkeypatch):
    """The file alone is the trial: the same metrics as the sweep's config, and still the same after a
    later version changed a default (here: the criterion of ``disparse_pretrained``)."""
    given = {**TINY, "method": "disparse_pretrained", "lr": 1e-3}
    logged = _logged(store, tmp_path, "t0001", given)
    assert logged["criterion"] == "magnitude" and logged["finetune_lr"] == pytest.approx(1e-4)
    assert logged["image_size"] == 32 and logged["tasks"] == ["seg", "normal"]

    original = _metrics(run_trial(given))
    assert _metrics(run_trial(logged)) == original

    monkeypatch.setitem(METHODS, "disparse_pretrained", ("taylor", METHODS["disparse_pretrained"][1]))
    assert _metrics(run_trial(given)) != original                   # the default mattered
    assert _metrics(run_trial(logged)) == original                  # the logged file did not depend on it


def test_a_preset_is_written_out_and_the_generated_sizes_are_filled_in():
    resolved = resolved_config({"preset": "nyuv2_reference", "data_root": "/data/nyuv2"})
    assert resolved["preset"] is None and resolved["steps"] == 20000 and resolved["finetune_lr"] == 1e-5
    assert resolved["loss_weights"] == {"seg": 1.0, "normal": 20.0} and resolved["tasks"] == ["seg", "normal"]
    assert resolved["image_size"] is None          # a real data set's crop stays the builder's (not known here)
    digits = resolved_config({"workload": "digits", "method": "random"})
    assert (digits["image_size"], digits["train_size"], digits["test_size"]) == (16, 2000, 500)
    assert digits["criterion"] is None and digits["tasks"] == ["left", "right"]
    assert json.loads(json.dumps(resolved)) == resolved and json.loads(json.dumps(digits)) == digits


def test_a_config_that_cannot_be_resolved_is_logged_as_given(store, tmp_path):
    given = {"method": "not_a_method", "sparsity": 0.5}
    with pytest.raises(ValueError, match="method"):
        resolved_config(given)
    assert _logged(store, tmp_path, "t0002", given) == given
