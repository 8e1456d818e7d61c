"""When Ray cannot start after the sweep's MLflow run was opened beside it, that run is closed with the
reason, not left RUNNING for the UI and `best` to read as a live sweep."""

from __future__ import annotations

import io

import pytest
from sweep_helpers import sweep_run, write_space


def test_a_sweep_whose_ray_does_not_start_leaves_no_running_run(tmp_path, store, monkeypatch):
    import sweeps.ray as backend
    from sweeps.run import RunOptions, make_plan, run_sweep

    def no_ray(*args, **kwargs):        # Ray's start fails (a real failure seen: the raylet dies at start)
        raise RuntimeError("Failed to start the raylet: it exited with code 1")

    monkeypatch.setattr(backend, "connect", no_ray)
    space = write_space(tmp_path, trials=1)
    plan = make_plan(RunOptions(space=str(space), results_dir=str(tmp_path / "r"), tracking_uri=store))
    with pytest.raises(RuntimeError, match="raylet"):
        run_sweep(plan, out=io.StringIO())
    _, run = sweep_run(store, plan.sweep_id)           # it was opened beside Ray's start
    assert run.info.status != "RUNNING" and run.info.end_time is not None
    assert any("raylet" in v for k, v in run.data.tags.items() if k.startswith("disparse.")), run.data.tags
