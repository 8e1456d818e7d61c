"""A pretrained trial started from a dense run's snapshot gives what it gives when it pretrains itself
(disparse_core.trial.run_trial: ``snapshots`` / ``start_from``). Real run_trial on the generated scenes."""

from __future__ import annotations

import math

import pytest

from disparse_core.trial import TrialConfig, dense_phase_end, run_trial

BASE = {"workload": "scenes", "tasks": ["seg", "normal"], "arch": "small", "width": 8, "image_size": 32,
        "train_size": 48, "test_size": 16, "batch_size": 8, "steps": 10, "eval_every": 4, "seed": 3,
        "lr": 2e-3, "num_threads": 1}
NOT_COMPARED = {"wall_time_s", "dense_steps_reused"}


def _same(a: dict, b: dict) -> None:
    keys = (set(a) | set(b)) - NOT_COMPARED
    for k in sorted(keys):
        x, y = a.get(k), b.get(k)
        if isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), k
        else:
            assert x == y, (k, x, y)


@pytest.fixture(scope="module")
def dense_snapshots(tmp_path_factory):
    """The sweep's dense baseline (method dense, 12 steps: longer than the trials) saving steps 3 and 5."""
    folder = tmp_path_factory.mktemp("dense")
    dense = {**BASE, "method": "dense", "steps": 12}
    run_trial(dense, snapshots={3: folder / "step3.pt", 5: folder / "step5.pt"})
    return folder


@pytest.mark.parametrize("extra", [
    {"method": "disparse_pretrained", "sparsity": 0.8, "pretrain_steps": 5, "finetune_lr": 1e-3},
    {"method": "magnitude", "sparsity": 0.7, "pretrain_steps": 3},
    {"method": "disparse_pretrained", "sparsity": 0.8, "pretrain_steps": 5, "criterion": "taylor",
     "gradual": {"prune_steps": 2, "interval": 2}},            # first (empty) event at 3: starts there
])
def test_a_trial_started_from_the_dense_snapshot_matches_one_that_pretrains_itself(dense_snapshots, extra):
    config = {**BASE, **extra}
    end = dense_phase_end(TrialConfig.from_dict(config))
    shared = run_trial(config, start_from=str(dense_snapshots))
    own = run_trial(config)
    assert shared["dense_steps_reused"] == end and end in (3, 5)
    _same(shared, own)


def test_a_snapshot_of_another_training_setting_or_step_is_not_used(dense_snapshots):
    other_lr = {**BASE, "lr": 1e-3, "method": "magnitude", "sparsity": 0.7, "pretrain_steps": 3}
    assert run_trial(other_lr, start_from=str(dense_snapshots))["dense_steps_reused"] == 0
    no_file = {**BASE, "method": "magnitude", "sparsity": 0.7, "pretrain_steps": 4}
    assert run_trial(no_file, start_from=str(dense_snapshots))["dense_steps_reused"] == 0
    static = {**BASE, "method": "snip", "sparsity": 0.7}
    assert dense_phase_end(TrialConfig.from_dict(static)) is None
    assert run_trial(static, start_from=str(dense_snapshots))["dense_steps_reused"] == 0


def test_trials_of_one_process_score_on_the_same_batches_read_once():
    """Static scoring: the second trial with the same data, seed and batch size takes the scoring batches
    the first one read (SCORE_CACHE), and its result is the one it gets when it reads them itself."""
    from disparse_core import _train_loop

    config = {**BASE, "method": "disparse_static", "sparsity": 0.8, "score_batches": 3}
    _train_loop.SCORE_CACHE.clear()
    fresh = run_trial(config)
    (key, cached), = _train_loop.SCORE_CACHE.items()
    assert len(cached) == 3 and key[-2:] == (BASE["seed"], BASE["batch_size"])
    again = run_trial({**config, "sparsity": 0.8})
    assert _train_loop.SCORE_CACHE[key] is cached           # read once: the same tensors were used
    _same(fresh, again)
    other_seed = run_trial({**config, "seed": 4})
    assert list(_train_loop.SCORE_CACHE) != [key] and other_seed["compression"] == fresh["compression"]
