"""SweepTracker against a real MLflow sqlite store, read back through MlflowClient (no Ray)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from mlflow.tracking import MlflowClient  # noqa: E402

from sweeps import tracking  # noqa: E402
from sweeps.errors import UserInputError  # noqa: E402
from sweeps.tracking import SweepTracker, baseline_key  # noqa: E402
from tracking_helpers import DIRECTIONS, EXP, OBJECTIVES, config, runs, start  # noqa: E402

def test_parent_and_nested_runs_structure(store, tmp_path):
    tracker = start(store, tmp_path=tmp_path)
    run_a = tracker.trial_started("t0000", config(), optuna_number=0)
    tracker.trial_result("t0000", {"seg.miou": 0.3, "loss": 1.5, "mask_iou": {"a": 1.0}, "bad": float("nan"),
                                   "weird/name%": 2.0}, step=10)
    tracker.trial_result("t0000", {"seg.miou": 0.4}, step=20)
    tracker.trial_completed("t0000", {"seg.miou": 0.5, "normal.mean": 30.0, "compression": 0.8, "step": 30},
                            mask_iou={"backbone.0.weight": 0.9, "backbone.1.weight": 0.4})
    assert tracker.flush(timeout=60)                         # the chart is logged by a worker thread
    client = MlflowClient(store)

    (parent,) = runs(store, "sweep")
    assert parent.data.tags["disparse.sweep_id"] == "s1"
    p = parent.data.params
    assert (p["sampler"], p["seed"], p["trials"], p["concurrency"]) == ("tpe", "7", "4", "2")
    assert p["objectives"] == "compression:maximize,seg.miou:maximize,normal.mean:minimize"
    assert p["budgets"] == "seg.miou=-2%"
    assert parent.data.tags["disparse.code"] == "abc123-dirty"
    arts = set(tracking.list_artifacts(store, parent.info.run_id))
    assert {"space/unit.yaml", "config/sweep_config.json", "config/sweep_config.yaml",
            "config/code_version.json"} <= arts
    local = Path(parent.info.artifact_uri.replace("file://", ""))
    assert (local / "space/unit.yaml").read_text() == "name: unit\ntrials: 4\n"
    assert str(local).startswith(str(Path(store[len("sqlite:///"):]).parent))   # next to the db

    (trial,) = runs(store, "trial")
    assert trial.info.run_id == run_a and trial.info.status == "FINISHED"
    tags = trial.data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert (tags["disparse.sweep_id"], tags["disparse.trial_key"]) == ("s1", "t0000")
    assert tags["disparse.early_stopped"] == "false" and tags["disparse.optuna_number"] == "0"
    assert trial.data.params["dynamic.alpha0"] == "0.3" and trial.data.params["tasks"] == '["seg", "normal"]'
    assert [(m.step, m.value) for m in client.get_metric_history(run_a, "seg.miou")] == \
        [(10, 0.3), (20, 0.4), (30, 0.5)]
    assert "bad" not in trial.data.metrics and "mask_iou" not in trial.data.metrics
    assert trial.data.metrics["weird_name_"] == 2.0
    assert {"mask_iou.json", "mask_iou.png", "trial_config.json"} <= set(tracking.list_artifacts(store, run_a))

    rec, = tracking.load_trials(store, EXP)
    assert rec["config"]["dynamic"] == {"alpha0": 0.3, "delta_t": 10, "decay": "cosine"}
    assert rec["config"]["tasks"] == ["seg", "normal"] and rec["config"]["gradual"] is None


def test_params_are_truncated_and_keys_sanitised(store):
    tracker = start(store)
    run_id = tracker.trial_started("t1", {"note": "x" * 7000, "odd key!": 1,
                                          "baseline_metrics": {"seg.miou": 0.5}})
    params = MlflowClient(store).get_run(run_id).data.params
    assert len(params["note"]) <= 6000 and params["note"].endswith("...")
    assert params["odd key_"] == "1"
    assert json.loads(params["baseline_metrics"]) == {"seg.miou": 0.5}


def test_trial_started_is_idempotent_and_resume_never_duplicates(store):
    tracker = start(store)
    first = tracker.trial_started("t0", config(), optuna_number=0)
    assert tracker.trial_started("t0", config(), optuna_number=0) == first
    tracker.trial_completed("t0", {"compression": 0.5, "seg.miou": 0.4, "normal.mean": 30.0})
    tracker.trial_started("t1", config(sparsity=0.9), optuna_number=1)        # left RUNNING (driver "dies")
    tracker.trial_started("t2", config(sparsity=0.7), optuna_number=2)
    tracker.trial_failed("t2", "boom")

    again = start(store, resume=True)
    assert len(runs(store, "sweep")) == 1
    assert again.parent_run_id == tracker.parent_run_id
    assert MlflowClient(store).get_run(again.parent_run_id).info.status == "RUNNING"
    assert again.trial_started("t0", config(), optuna_number=0) == first
    again.trial_result("t0", {"seg.miou": 0.99}, step=5)                      # finished: untouched
    again.trial_completed("t0", {"seg.miou": 0.99})
    # rerun after the resume (new Optuna numbers): a fresh run each, the unfinished one kept as an attempt
    t1 = again.trial_started("t1", config(sparsity=0.9), optuna_number=3)
    t2 = again.trial_started("t2", config(sparsity=0.7), optuna_number=4)
    assert again.trial_started("t1", config(sparsity=0.9), optuna_number=3) == t1      # the same attempt
    assert {t1, t2}.isdisjoint({tracker._trials["t1"], tracker._trials["t2"]})
    trials = {r.data.tags["disparse.trial_key"]: r for r in runs(store, "trial")}
    assert sorted(trials) == ["t0", "t1", "t2"]                  # still one trial run per trial key
    assert trials["t0"].info.status == "FINISHED" and trials["t0"].data.metrics["seg.miou"] == 0.4
    assert trials["t2"].info.status == "RUNNING" and "disparse.failure" not in trials["t2"].data.tags
    assert trials["t2"].data.tags["disparse.optuna_number"] == "4"             # the attempt that counts
    assert trials["t2"].data.tags["disparse.retries"] == "1"
    assert trials["t2"].data.tags["disparse.attempt_1"] == "boom"
    assert trials["t2"].data.params["sparsity"] == "0.7"
    attempts = {r.data.tags["disparse.trial_key"]: r for r in runs(store, "attempt")}
    assert sorted(attempts) == ["t1", "t2"]
    assert attempts["t1"].info.run_id == tracker._trials["t1"] and attempts["t1"].info.status == "FAILED"
    assert attempts["t1"].info.run_name == "t1-attempt1"
    assert attempts["t1"].data.tags["mlflow.parentRunId"] == t1
    assert "sweep stopped before this attempt ended" in trials["t1"].data.tags["disparse.attempt_1"]
    # a second resume numbers the attempts on
    third = start(store, resume=True)
    t2_again = third.trial_started("t2", config(sparsity=0.7), optuna_number=5)
    rerun = MlflowClient(store).get_run(t2_again)
    assert rerun.data.tags["disparse.retries"] == "2" and rerun.data.tags["disparse.attempt_1"] == "boom"
    assert "disparse.attempt_2" in rerun.data.tags
    assert len([r for r in runs(store, "attempt") if r.data.tags["disparse.trial_key"] == "t2"]) == 2


def test_final_metrics_are_the_latest_even_without_a_step(store):
    tracker = start(store)
    run_id = tracker.trial_started("t0", config())
    tracker.trial_result("t0", {"seg.miou": 0.2, "final": 0.0}, step=40)
    tracker.trial_completed("t0", {"seg.miou": 0.7, "final": 1.0})
    metrics = MlflowClient(store).get_run(run_id).data.metrics
    assert metrics["seg.miou"] == 0.7 and "final" not in metrics


def test_existing_sweep_id_without_resume_is_refused(store):
    start(store)
    with pytest.raises(UserInputError, match="already exists"):
        start(store)
    assert len(runs(store, "sweep")) == 1


def test_failed_trial_is_failed_with_a_one_line_reason(store):
    tracker = start(store)
    run_id = tracker.trial_started("t0", config())
    tracker.trial_failed("t0", "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n")
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["disparse.failure"] == "RuntimeError: CUDA out of memory"


def test_an_exception_in_the_sweep_leaves_no_running_run(store):
    with pytest.raises(KeyboardInterrupt):
        with start(store) as tracker:
            tracker.trial_started("t0", config())
            tracker.trial_started("t1", config())
            tracker.trial_completed("t1", {"compression": 0.1})
            raise KeyboardInterrupt
    statuses = {r.data.tags.get("disparse.trial_key", "sweep"): r.info.status for r in runs(store)}
    assert statuses == {"sweep": "KILLED", "t0": "FAILED", "t1": "FINISHED"}


def brute_front(points, directions):
    signs = [1 if d == "maximize" else -1 for d in directions]

    def dominates(a, b):
        return all(s * x >= s * y for s, x, y in zip(signs, a, b)) and any(
            s * x > s * y for s, x, y in zip(signs, a, b))
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


def test_finish_sweep_logs_the_front_from_mlflow(store, tmp_path):
    import random
    rng = random.Random(3)
    tracker = start(store)
    metrics = {}
    for i in range(12):
        key = f"t{i:02d}"
        m = {"compression": rng.uniform(0.3, 0.95), "seg.miou": rng.uniform(0.2, 0.6),
             "normal.mean": rng.uniform(20, 40), "sparsity": 0.5, "delta_m": rng.uniform(-10, 2)}
        tracker.trial_started(key, config(sparsity=round(m["compression"], 2)), optuna_number=i)
        tracker.trial_completed(key, m)
        metrics[key] = m
    super_point = {"compression": 0.99, "seg.miou": 0.99, "normal.mean": 1.0, "delta_m": 50.0}
    tracker.trial_started("early", config())
    tracker.trial_completed("early", super_point, early_stopped=True)        # dominates all, partial
    tracker.trial_started("failed", config())
    tracker.trial_result("failed", super_point, step=1)
    tracker.trial_failed("failed", "diverged")
    tracker.trial_started("partial", config())                               # no normal.mean: ineligible
    tracker.trial_completed("partial", {"compression": 0.99, "seg.miou": 0.99})

    # a fresh tracker (as after a resume) finishes the sweep from what MLflow holds
    resumed = start(store, resume=True)
    front = resumed.finish_sweep(objectives=OBJECTIVES, directions=DIRECTIONS,
                                 reference_point=[0.0, 0.0, 50.0], hypervolume_history=[0.1, 0.2, 0.3])

    keys = sorted(metrics)
    expected = {keys[i] for i in brute_front([[metrics[k][o] for o in OBJECTIVES] for k in keys], DIRECTIONS)}
    assert {r["trial_key"] for r in front} == expected
    client = MlflowClient(store)
    parent = client.get_run(resumed.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["disparse.front_size"] == str(len(expected))
    tagged = {r.data.tags["disparse.trial_key"] for r in runs(store, "trial")
              if r.data.tags.get("disparse.pareto") == "true"}
    assert tagged == expected

    art = Path(parent.info.artifact_uri.replace("file://", ""))
    rows = list(csv.DictReader(io.StringIO((art / "pareto_front.csv").read_text())))
    assert {r["trial_key"] for r in rows} == expected
    for r in rows:
        for o in OBJECTIVES:
            assert float(r[o]) == pytest.approx(metrics[r["trial_key"]][o])
    for name in ("pareto_compression_vs_seg.miou.png", "pareto_compression_vs_normal.mean.png",
                 "pareto_compression_vs_delta_m.png"):
        assert (art / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (art / "pareto_front.html").read_text()
    assert all(r["run_id"] in page for r in front) and "<svg" in page
    assert (art / "hypervolume.csv").read_text().splitlines()[:2] == ["step,hypervolume", "0,0.1"]
    history = client.get_metric_history(resumed.parent_run_id, "sweep.hypervolume")
    assert [m.step for m in history][:3] == [0, 1, 2] and history[-1].value > 0


def test_baseline_key_ignores_sparsification_fields_only():
    key = baseline_key(config())
    assert key == baseline_key(config(method="snip", sparsity=0.5, criterion="magnitude", gradual={"x": 1},
                                      dynamic={"alpha0": 0.9}, eval_every=5, device="cpu"))
    assert key == baseline_key(config(tasks=["normal", "seg"], steps=100.0))
    assert key != baseline_key(config(lr=2e-3))
    assert key != baseline_key(config(steps=200))
    assert key != baseline_key(config(seed=1))
    assert key != baseline_key(config(loss_weights={"seg": 2.0}))


def test_baseline_is_logged_once_and_reused(store):
    tracker = start(store)
    key = baseline_key(config(method="dense"))
    assert tracker.find_baseline(key) is None
    run_id = tracker.log_baseline(key, config(method="dense"), {"seg.miou": 0.5, "normal.mean": 25.0})
    later = SweepTracker(store, EXP)                         # another sweep, another process
    assert later.find_baseline(key) == {"seg.miou": 0.5, "normal.mean": 25.0}
    assert later.find_baseline(baseline_key(config(lr=0.1))) is None
    base = MlflowClient(store).get_run(run_id)
    assert base.info.status == "FINISHED" and base.data.tags["disparse.role"] == "baseline"
    assert "mlflow.parentRunId" not in base.data.tags
    tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5})
    found = tracking.load_baseline_for(tracking.load_trials(store, EXP))
    assert found["run_id"] == run_id and found["metrics"]["seg.miou"] == 0.5


def test_load_trials_picks_the_latest_sweep_or_all(store):
    a = start(store, "old")
    a.trial_started("x", config())
    b = start(store, "new")
    b.trial_started("y", config())
    b.trial_started("z", config())
    assert [r["trial_key"] for r in tracking.load_trials(store, EXP)] == ["y", "z"]
    assert [r["trial_key"] for r in tracking.load_trials(store, EXP, "old")] == ["x"]
    assert len(tracking.load_trials(store, EXP, "all")) == 3
    with pytest.raises(UserInputError, match="no sweep 'nope'"):
        tracking.load_trials(store, EXP, "nope")
    with pytest.raises(UserInputError, match="experiment 'other' not found"):
        tracking.load_trials(store, "other")


def test_unusable_stores_are_user_errors(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    uri = f"sqlite:///{blocker}/sub/mlflow.db"
    with pytest.raises(UserInputError) as err:
        SweepTracker(uri, EXP)
    assert uri in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserInputError, match="file store is not supported"):
        SweepTracker(f"file://{tmp_path}/mlruns", EXP)
    not_db = tmp_path / "notes.db"
    not_db.write_text("hello, this is not sqlite")
    with pytest.raises(UserInputError, match="not an sqlite database"):
        SweepTracker(f"sqlite:///{not_db}", EXP)
    with pytest.raises(UserInputError, match="cannot open the MLflow store"):
        SweepTracker("http://127.0.0.1:9", EXP)                  # nothing listens on loopback port 9
    with pytest.raises(UserInputError, match="no MLflow database"):
        tracking.load_trials(f"sqlite:///{tmp_path}/missing.db", EXP)
    assert not (tmp_path / "missing.db").exists()


def test_default_uri_is_absolute_sqlite_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.validate_tracking_uri("rel.db") == f"sqlite:///{tmp_path.resolve()}/rel.db"


def test_reasons_are_cut_at_whole_sentences_never_mid_word():
    from sweeps.tracking import clip_sentences

    ray_text = ("The actor died unexpectedly before finishing this task. Worker unexpectedly exits with a "
                "connection error code 2. End of file. If the process was killed by the kernel OOM killer "
                "(verifiable by checking for OOM in dmesg of the OOMing node), consider enabling isolation.")
    assert clip_sentences(ray_text, 1000) == ray_text
    cut = clip_sentences(ray_text, 120)
    assert cut == ("The actor died unexpectedly before finishing this task. Worker unexpectedly exits with a "
                   "connection error code 2. ...")
    words = clip_sentences("one sentence with many words and no end " * 5, 60)
    assert len(words) <= 60 and words.endswith(" ...")
    assert all(w in "one sentence with many words and no end".split() for w in words[:-4].split())


def test_a_store_written_with_the_older_long_tag_keys_is_still_read(store):
    """Older sweeps named their baseline run, code and hypervolume reference with longer keys; readers
    take both."""
    from sweeps.tracking import load_baseline_for, load_trials

    client = MlflowClient(store)
    found = client.get_experiment_by_name(EXP)
    exp = found.experiment_id if found else client.create_experiment(EXP)
    base = client.create_run(exp, tags={"disparse.role": "baseline", "disparse.baseline_key": "other"}).info.run_id
    client.log_metric(base, "seg.miou", 0.9)
    client.set_terminated(base)
    sweep = client.create_run(exp, tags={"disparse.role": "sweep", "disparse.sweep_id": "old",
                                         "disparse.baseline_run_id": base}).info.run_id
    trial = client.create_run(exp, tags={"disparse.role": "trial", "disparse.sweep_id": "old",
                                         "disparse.trial_key": "t0000", "mlflow.parentRunId": sweep}).info.run_id
    client.log_metric(trial, "sparsity", 0.5)            # the metric's old name: read as sparsity still
    client.set_terminated(trial)
    records = load_trials(store, EXP, "old")
    assert records[0]["metrics"]["sparsity"] == 0.5
    assert load_baseline_for(records)["run_id"] == base
