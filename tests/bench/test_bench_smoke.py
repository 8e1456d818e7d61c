"""Each issue-5 benchmark script runs in its tiny ``--quick`` mode and writes its JSON (no timing checks).

The scripts run in this process (``main([...])``) so that torch is imported once. Those that start Ray
(one local Ray for the module) or MLflow are marked ``slow`` like the project's other end-to-end tests;
the rest take about 10 s of CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["machine"]["cpu"] and data["machine"]["torch"], "the machine must be named"
    assert "gpu" in data["machine"]
    return data


def test_step_bench_quick(tmp_path):
    import step_bench

    out = tmp_path / "step.json"
    assert step_bench.main(["--quick", "--threads", "1", "--rounds", "1", "--warmup", "0",
                            "--score-rounds", "1", "--out", str(out)]) == 0
    data = _load(out)
    for dtype in ("fp32", "bf16"):
        assert data["steps"][dtype]["masked_step_ratio"]["wall"] > 0
        assert data["steps"][dtype]["updates_done"] >= 1
        assert "skipped" in data["memory"][dtype]  # CPU: memory is skipped with a note
    assert data["scoring"]["scoring_ratio"]["cpu"] > 0


def test_gpu_trial_quick(tmp_path):
    import gpu_trial

    out = tmp_path / "trial.json"
    assert gpu_trial.main(["--quick", "--out", str(out)]) == 0
    data = _load(out)
    assert data["ok"] and data["reports"][-1]["final"] == 1.0


def test_strip_wheel_keeps_record_valid(tmp_path):
    import strip_wheel

    src = tmp_path / "ray-0.0.0-py3-none-any.whl"
    files = {"ray/__init__.py": b"x = 1\n", "ray/jars/big.jar": b"J" * 100,
             "ray/dashboard/client/build/index.html": b"<html>", "ray/thirdparty_files/a-1.dist-info/RECORD": b""}
    with zipfile.ZipFile(src, "w") as z:
        rows = []
        for name, data in files.items():
            z.writestr(name, data)
            rows.append(f"{name},{strip_wheel._digest(data)},{len(data)}")
        z.writestr("ray-0.0.0.dist-info/RECORD", "\n".join(rows + ["ray-0.0.0.dist-info/RECORD,,"]) + "\n")
    assert strip_wheel.check(str(src)) == []
    dst = tmp_path / "out" / src.name
    dst.parent.mkdir()
    assert strip_wheel.strip(str(src), str(dst)) == (2, 106)
    assert strip_wheel.check(str(dst)) == []
    with zipfile.ZipFile(dst) as z:
        assert not any(n.startswith(strip_wheel.DROP_PREFIXES) for n in z.namelist())
        assert "ray/jars/" not in z.read("ray-0.0.0.dist-info/RECORD").decode()


def test_gpu_check_script_is_valid_bash():
    for script in ("gpu_check.sh", "fetch_gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(BENCH / script)], check=True)


@pytest.mark.slow  # creates an MLflow store (its schema migrations take seconds)
def test_log_gpu_results(tmp_path):
    import log_gpu_results

    folder = tmp_path / "gpu"
    folder.mkdir()
    (folder / "step_bench_cuda.json").write_text(json.dumps(
        {"machine": {"cpu": "x", "gpu": "H100"}, "steps": {"fp32": {"masked_step_ratio": {"wall": 1.01}}}}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert log_gpu_results.main([str(folder), "--tracking-uri", uri, "--experiment", "b"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("b").experiment_id])
    assert runs[0].data.metrics["step_bench_cuda.steps.fp32.masked_step_ratio.wall"] == 1.01


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_orchestration_bench_quick(tmp_path, local_ray):
    import orchestration_bench

    out = tmp_path / "orch.json"
    assert orchestration_bench.main(["--quick", "--out", str(out)]) == 0
    data = _load(out)
    assert data["sweeps"]["short"]["states"].get("COMPLETE") == 1
    assert data["parts"]["mlflow_per_trial_s"]["median"] > 0


@pytest.mark.slow
def test_packing_bench_quick(tmp_path, local_ray):
    import packing_bench

    out = tmp_path / "pack.json"
    assert packing_bench.main(["--quick", "--out", str(out)]) == 0
    data = _load(out)
    assert {k: v["completed"] for k, v in data["levels"].items()} == {"1": 2, "2": 2}


@pytest.mark.slow
def test_search_bench_quick(tmp_path, local_ray):
    import search_bench

    out = tmp_path / "search.json"
    assert search_bench.main(["--quick", "--trials", "2", "--asha-trials", "2", "--out", str(out)]) == 0
    data = _load(out)
    assert set(data["sweeps"]) == {"random", "tpe", "asha", "mo_asha"}
    assert data["sweeps"]["random"]["total_trial_steps"] > 0
    # one more early-stopping sweep compared with the random sweep of that run (not run again)
    more = tmp_path / "more.json"
    assert search_bench.main(["--quick", "--trials", "2", "--asha-trials", "2", "--sweeps", "mo_asha_tpe",
                              "--random-from", str(out), "--out", str(more)]) == 0
    extra = _load(more)
    assert extra["sweeps"]["random"] == data["sweeps"]["random"] and extra["random_from"] == str(out)
    assert extra["mo_asha_tpe"]["random_total_steps"] == data["sweeps"]["random"]["total_trial_steps"]
    with pytest.raises(SystemExit, match="no random sweep run with these settings"):
        search_bench.main(["--quick", "--asha-trials", "1", "--seed", "7", "--sweeps", "mo_asha_tpe",
                           "--random-from", str(out), "--out", str(tmp_path / "bad.json")])


def _curves(points_by_trial, steps=45, every=5):
    """Trials whose (compression, delta_m) is the same at every evaluation (ranking at a rung = final)."""
    return [{"key": f"t{i:04d}", "values": list(p), "state": "COMPLETE", "params": {},
             "curve": {str(s): list(p) for s in range(every, steps + 1, every)}}
            for i, p in enumerate(points_by_trial)]


def test_asha_replay_charges_each_trial_the_steps_it_ran():
    import asha_replay

    # trial 2 is dominated by trial 0 at the first rung; with one worker everything runs in order
    trials = _curves([(0.9, -10.0), (0.5, -1.0), (0.4, -20.0), (0.95, -30.0)])
    done = asha_replay.replay(trials, 45, asha_replay.make_rule("mo_asha", 5, 3, 45, trials), concurrency=1)
    assert [(d["i"], d["steps"], d["complete"]) for d in done] == [
        (0, 45, True), (1, 45, True), (2, 5, False), (3, 45, True)]
    # the target is the hypervolume of the first two trials: reached after the second, 90 of 90 steps
    from sweeps.pareto import hypervolume
    target = hypervolume([(0.9, -10.0), (0.5, -1.0)], asha_replay.DIRECTIONS, asha_replay.REFERENCE)
    assert asha_replay.fraction_to_reach(done, target, 90)[0] == pytest.approx(1.0)
    # the oracle keeps only the front (0, 1, 3) and stops 2 at its first rung; two workers overlap
    oracle = asha_replay.replay(trials, 45, asha_replay.make_rule("oracle", 5, 3, 45, trials), concurrency=2)
    assert sorted((d["i"], d["steps"]) for d in oracle) == [(0, 45), (1, 45), (2, 5), (3, 45)]
    assert [d["i"] for d in oracle] == [0, 1, 2, 3]   # 0 and 1 at once; 2 ends at step 50, 3 at step 90
    # single-metric ASHA on delta_m stops the sparse trial 3 (worst delta_m) that the front needs
    one = asha_replay.replay(trials, 45, asha_replay.make_rule("delta_m", 5, 3, 45, trials), concurrency=1)
    assert {d["i"]: d["steps"] for d in one}[3] == 5


@pytest.mark.slow
def test_asha_replay_collect_quick(tmp_path, local_ray):
    import asha_replay

    out = tmp_path / "curves.json"
    assert asha_replay.main(["collect", "--trials", "3", "--random", "2", "--steps", "4", "--every", "2",
                             "--train-size", "32", "--test-size", "16", "--out", str(out)]) == 0
    data = _load(out)
    assert [t["state"] for t in data["trials"]] == ["COMPLETE"] * 3
    for t in data["trials"]:
        assert sorted(t["curve"], key=int) == ["2", "4"] and t["curve"]["4"] == t["values"]
    rep = tmp_path / "replay.json"
    assert asha_replay.main(["replay", str(out), "--out", str(rep)]) == 0
    assert json.loads(rep.read_text())["rows"][0]["random_steps"] == 8


def test_fidelity_quick(tmp_path):
    """Every part of the fidelity benchmark runs and reports what the issue asks for, paired by seed."""
    import fidelity

    out = tmp_path / "fidelity.json"
    assert fidelity.main(["--quick", "--jobs", "1", "--out", str(out), "--plot", str(tmp_path / "f.png")]) == 0
    data = _load(out)
    methods = {r["method"] for r in data["records"] if r["part"] == "methods"}
    assert methods == set(fidelity.METHODS)
    for r in data["records"]:
        assert r["metrics"] and "achieved_sparsity" in r and "min_layer_density" in r
        assert isinstance(r["cut_off"], list)
        if r["method"] == "dense":
            assert r["delta_m"] == 0.0
    options = {r["option"] for r in data["records"] if r["part"] == "options"}
    assert len(options) == 2 and data["trained"] < len(data["records"])   # shared trials run once
    labels = {(c["comparison"], c["option"]) for c in data["comparisons"]}
    assert ("disparse_static − snip", "default") in labels and ("disparse_dynamic − rigl", "default") in labels
    assert all(c["n"] == 2 for c in data["comparisons"])
    weights = data["loss_weights"]
    assert {w["method"] for w in weights} == set(fidelity.STATIC)
    assert all(0.0 <= w["mask_iou_reference_vs_equal"] <= 1.0 for w in weights)
    md = out.with_suffix(".md").read_text()
    assert "Paired differences" in md and data["machine"]["cpu"] in md
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    # the journal keeps every trial: the tables come back from it without training anything
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == data["trained"]
    assert fidelity.main(["--quick", "--jobs", "1", "--out", str(out), "--plot", "", "--analyse-only"]) == 0
    again = json.loads(out.read_text())
    assert again["comparisons"] == data["comparisons"] and again["records"] == data["records"]


def test_paired_interval_is_a_t_interval():
    import fidelity

    got = fidelity.paired({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0, 9: 0.0})
    # differences 2, 3, 1: mean 2, sd 1, half-width t(2) * 1 / sqrt(3)
    assert got["n"] == 3 and got["mean"] == 2.0 and got["wins"] == 3
    assert got["high"] - 2.0 == 2.0 - got["low"] == pytest.approx(4.303 / 3 ** 0.5)
