"""A sweep joins an existing two-node Ray cluster (both nodes on 127.0.0.1) with ``--ray-address``
and its trials run on both nodes."""

from __future__ import annotations

import json

import pytest

from sweep_helpers import run_cli, sqlite_uri, trial_runs, write_space

pytestmark = pytest.mark.slow


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_sweep_on_two_node_cluster_uses_both_nodes(tmp_path, two_node_cluster):
    assert two_node_cluster.address.startswith("127.0.0.1:")
    node_ids = {node.node_id for node in two_node_cluster.list_all_nodes()}
    assert len(node_ids) == 2
    space = write_space(tmp_path, name="cluster", baseline=False, budgets={},
                        objectives=[{"name": "compression", "direction": "maximize"},
                                    {"name": "seg.miou", "direction": "maximize"}],
                        trials=4, concurrency=2)
    results_dir = tmp_path / "results"
    uri = sqlite_uri(tmp_path / "mlflow.db")

    done = run_cli(["--space", space, "--results-dir", results_dir, "--tracking-uri", uri,
                    "--ray-address", two_node_cluster.address], cwd=tmp_path, timeout=180)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 nodes" in done.stdout
    used = set()
    for result_file in (results_dir / "ray").glob("run-1/*/result.json"):
        for line in result_file.read_text().splitlines():
            used.add(json.loads(line)["node_id"])
    assert used == node_ids
    runs = trial_runs(uri, "results")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)


def test_trial_bigger_than_the_cluster_is_rejected_before_anything_is_written(tmp_path, two_node_cluster):
    space = write_space(tmp_path / "in", name="big", baseline=False, budgets={},
                        objectives=[{"name": "compression", "direction": "maximize"},
                                    {"name": "seg.miou", "direction": "maximize"}],
                        resources={"cpu": 2})          # each node has 1 CPU: no trial could ever start
    before = sorted(p.name for p in tmp_path.iterdir())

    done = run_cli(["--space", space, "--results-dir", tmp_path / "results",
                    "--tracking-uri", sqlite_uri(tmp_path / "mlflow.db"),
                    "--ray-address", two_node_cluster.address], cwd=tmp_path, timeout=180)

    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resources.cpu: 2 per trial"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # no mlflow.db, no results folder


def test_own_model_files_in_the_working_dir_are_shipped_to_the_cluster_s_workers(tmp_path, two_node_cluster):
    """A workload and an arch named by import path, from module files in the sweep's folder that are not
    installed: the sweep ships them as the Ray job's working_dir, so the workers of both nodes import the
    shipped copies (their ``__file__`` lies outside the sweep's folder), and the trials finish."""
    from byo_modules import DATA, NET, byo_space, write_user_files

    user = tmp_path / "user"
    calls = tmp_path / "calls.txt"                 # where every build of the data says which file it ran
    record = (f"\nimport os as _os\n_CALLS = {str(calls)!r}\n"
              "_build = build\n\n\ndef build(**kw):\n"
              "    with open(_CALLS, 'a') as f:\n"
              "        f.write(_os.path.realpath(__file__) + '\\n')\n"
              "    return _build(**kw)\n")
    write_user_files(user, data=DATA + record, net=NET)
    space = byo_space(user, name="own-cluster", baseline=False, trials=4, concurrency=2,
                      objectives=[{"name": "compression", "direction": "maximize"},
                                  {"name": "a.acc", "direction": "maximize"}])
    uri = sqlite_uri(tmp_path / "mlflow.db")

    done = run_cli(["--space", space.name, "--results-dir", tmp_path / "results", "--tracking-uri", uri,
                    "--ray-address", two_node_cluster.address], cwd=user, timeout=240)

    assert done.returncode == 0, done.stdout + done.stderr
    runs = trial_runs(uri, "results")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert all("a.acc" in r.data.metrics and "b.abs_err" in r.data.metrics for r in runs)
    files = set(calls.read_text().split())
    driver = str((user / "mydata.py").resolve())
    shipped = files - {driver}
    assert driver in files and shipped, files          # the driver's check, then the workers' copies
    assert all(f.endswith("/mydata.py") and not f.startswith(str(tmp_path.resolve())) for f in shipped), files
    used = set()
    for result_file in (tmp_path / "results" / "ray").glob("run-1/*/result.json"):
        for line in result_file.read_text().splitlines():
            used.add(json.loads(line)["node_id"])
    assert used == {node.node_id for node in two_node_cluster.list_all_nodes()}
