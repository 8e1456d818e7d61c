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
