"""SweepTracker's mask-IoU charts: drawn and logged by its worker thread, off the caller's thread (real
MLflow sqlite store, read back through MlflowClient; no Ray)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from mlflow.tracking import MlflowClient  # noqa: E402

from sweeps import tracking  # noqa: E402
from tracking_helpers import DIRECTIONS, OBJECTIVES, config, runs, start  # noqa: E402

# -- mask-IoU charts: drawn and logged by the tracker's worker thread ------------------------------------------

IOU = {"backbone.0.weight": 0.9, "backbone.1.weight": 0.8, "backbone.2.weight": 0.3}


def artifacts(store, run_id):
    return set(tracking.list_artifacts(store, run_id))


def png_of(run):
    return (Path(run.info.artifact_uri.replace("file://", "")) / "mask_iou.png").read_bytes()


@pytest.fixture
def gated_plots(monkeypatch):
    """``plots.mask_iou_png`` held until ``gate`` is set (10 s at most, so that a tracker that drew the
    chart on the caller's thread fails instead of hanging); records where and what it drew, and in
    ``released`` each drawing that got past the hold (by the gate or the 10 s running out)."""
    import threading

    from sweeps import plots
    from sweeps.tracking import artifacts as chart_worker   # patched: the worker's MLflow client

    real_plot, real_client = plots.mask_iou_png, chart_worker.open_client
    gate, calls, clients, released = threading.Event(), [], [], []

    def held(mask_iou, path, title=None, watershed=None):
        calls.append((threading.current_thread(), title, list(mask_iou)))
        released.append(gate.wait(10))
        return real_plot(mask_iou, path, title=title, watershed=watershed)

    def client(uri):
        clients.append((threading.current_thread(), real_client(uri)))
        return clients[-1][1]

    monkeypatch.setattr(plots, "mask_iou_png", held)
    monkeypatch.setattr(chart_worker, "open_client", client)
    return SimpleNamespace(gate=gate, calls=calls, clients=clients, released=released)


def test_trial_completed_does_not_wait_for_the_chart(store, gated_plots):
    import threading

    tracker = start(store)
    run_id = tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5}, mask_iou=IOU)
    assert gated_plots.released == [], "trial_completed waited for the chart"     # returned while held
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["compression"] == 0.5
    assert "mask_iou.json" in artifacts(store, run_id) and "mask_iou.png" not in artifacts(store, run_id)
    assert tracker.flush(timeout=0.05) is False             # still held

    gated_plots.gate.set()
    assert tracker.flush(timeout=30) is True
    assert gated_plots.released == [True]                   # drawn once the gate opened
    png = png_of(MlflowClient(store).get_run(run_id))       # logged to the FINISHED run
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ((thread, title, layers),) = gated_plots.calls
    assert thread is not threading.main_thread() and thread.daemon
    assert title == "t0" and layers == list(IOU)            # layer (model) order kept
    ((client_thread, client),) = gated_plots.clients
    assert client_thread is thread and client is not tracker.client
    assert tracker.close() is True and not thread.is_alive()


def test_finish_sweep_logs_every_queued_chart_first(store, gated_plots):
    tracker = start(store)
    ids = {}
    for i in range(3):
        ids[f"t{i}"] = tracker.trial_started(f"t{i}", config())
        tracker.trial_completed(f"t{i}", {"compression": 0.1 * i, "seg.miou": 0.5, "normal.mean": 30.0},
                                mask_iou={k: v - 0.1 * i for k, v in IOU.items()})
    gated_plots.gate.set()
    tracker.finish_sweep(objectives=OBJECTIVES, directions=DIRECTIONS)
    for key, run_id in ids.items():
        assert {"mask_iou.json", "mask_iou.png"} <= artifacts(store, run_id), key
    assert [title for _, title, _ in gated_plots.calls] == ["t0", "t1", "t2"]     # FIFO
    assert MlflowClient(store).get_run(tracker.parent_run_id).info.status == "FINISHED"
    assert tracker._plots.pending == 0


def test_abort_logs_the_queued_charts(store, gated_plots):
    with pytest.raises(KeyboardInterrupt):
        with start(store) as tracker:
            tracker.trial_started("t0", config())
            done = tracker.trial_started("t1", config())
            tracker.trial_completed("t1", {"compression": 0.1}, mask_iou=IOU)
            gated_plots.gate.set()
            raise KeyboardInterrupt
    statuses = {r.data.tags.get("disparse.trial_key", "sweep"): r.info.status for r in runs(store)}
    assert statuses == {"sweep": "KILLED", "t0": "FAILED", "t1": "FINISHED"}
    assert {"mask_iou.json", "mask_iou.png"} <= artifacts(store, done)
    assert tracker._plots.pending == 0


def test_a_chart_that_cannot_be_drawn_is_tagged_and_never_raises(store, monkeypatch):
    from sweeps import plots

    def broken(mask_iou, path, title=None, watershed=None):
        raise RuntimeError("no fonts\nsecond line")

    monkeypatch.setattr(plots, "mask_iou_png", broken)
    tracker = start(store)
    run_id = tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5}, mask_iou=IOU)
    assert tracker.flush(timeout=30)
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["disparse.plot_error"] == "RuntimeError: no fonts"
    assert artifacts(store, run_id) >= {"mask_iou.json"} and "mask_iou.png" not in artifacts(store, run_id)


def test_a_chart_that_cannot_even_be_tagged_is_reported_and_the_worker_goes_on(store, capsys):
    tracker = start(store)
    tracker._plots.submit("0" * 32, IOU, "ghost")          # no such run: neither artifact nor tag
    run_id = tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5}, mask_iou=IOU)
    assert tracker.close(timeout=60)
    assert tracker._plots.lost == 1
    assert f"mask-IoU chart of MLflow run {'0' * 32} is lost" in capsys.readouterr().err
    assert "mask_iou.png" in artifacts(store, run_id)


def test_no_mask_iou_no_chart_and_no_thread(store):
    tracker = start(store)                                # as reconcile() completes a trial: numbers only
    run_id = tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5, "seg.miou": 0.4})
    assert tracker._plots._thread is None and tracker.flush(timeout=0) is True
    assert not artifacts(store, run_id) & {"mask_iou.json", "mask_iou.png"}
    assert "disparse.plot_error" not in MlflowClient(store).get_run(run_id).data.tags


def test_the_tracker_pickles_with_charts_queued(store, gated_plots):
    import pickle

    tracker = start(store)                                # Ray Tune pickles its callbacks, tracker included
    tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5}, mask_iou=IOU)
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy._plots.pending == 0 and copy._plots.tracking_uri == tracker.tracking_uri
    gated_plots.gate.set()
    assert tracker.close(timeout=30) and "mask_iou.png" in artifacts(store, tracker._trials["t0"])


def test_a_second_ctrl_c_stops_only_abort_s_wait_for_the_charts(store, gated_plots, capsys):
    import _thread
    import signal
    import threading
    import time

    tracker = start(store)
    tracker.trial_started("t0", config())
    done = tracker.trial_started("t1", config())
    tracker.trial_completed("t1", {"compression": 0.1}, mask_iou=IOU)      # held for up to 10 s
    waiting, began = threading.Event(), []
    real_close = tracker._plots.close

    def close(timeout=None):                      # abort has closed the runs and starts waiting now
        began.append(time.perf_counter())
        waiting.set()
        return real_close(timeout)

    tracker._plots.close = close

    def second_ctrl_c():                          # Ctrl+C during the wait (not while runs are closed)
        if waiting.wait(30):
            time.sleep(0.2)
            _thread.interrupt_main()

    threading.Thread(target=second_ctrl_c, daemon=True).start()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)     # Python's own Ctrl+C
    try:
        tracker.abort("interrupted")                                        # does not raise
    finally:
        signal.signal(signal.SIGINT, previous)
    assert began and gated_plots.released == [], "abort waited for the chart despite the second Ctrl+C"
    assert "mask_iou.png" not in artifacts(store, done)
    assert "stopped waiting for 1 mask-IoU chart" in capsys.readouterr().err
    statuses = {r.data.tags.get("disparse.trial_key", "sweep"): r.info.status for r in runs(store)}
    assert statuses == {"sweep": "KILLED", "t0": "FAILED", "t1": "FINISHED"}
    gated_plots.gate.set()                                                  # the worker carries on
    assert tracker.flush(timeout=30) and "mask_iou.png" in artifacts(store, done)


# -- the sweep run's front files: every sampled param, even for a front of one ---------------------------------

def test_front_csv_and_html_list_every_sampled_param_then_the_usual_constants(store):
    import csv
    import io

    tracker = start(store)
    for i in range(4):                                    # t3 beats every other trial: a front of one
        tracker.trial_started(f"t{i}", config(loss_weights={"normal": 1.5 + i}, score_batches=2 + i % 2,
                                              checkpoint_dir=f"/tmp/ck{i}", baseline_metrics={"seg.miou": 0.5},
                                              dynamic={"alpha0": 0.3, "delta_t": 10, "decay": "cosine",
                                                       "grow": "exact", "t_end_frac": 0.75}))
        tracker.trial_completed(f"t{i}", {"compression": 0.6 + i / 10, "seg.miou": 0.45 + i / 100,
                                          "normal.mean": 22.0 - i})
    (member,) = tracker.finish_sweep(objectives=OBJECTIVES, directions=DIRECTIONS)
    assert member["trial_key"] == "t3"
    art = Path(MlflowClient(store).get_run(tracker.parent_run_id).info.artifact_uri.replace("file://", ""))
    params = ["loss_weights.normal", "score_batches", "method", "sparsity", "criterion", "dynamic.alpha0",
              "dynamic.delta_t", "dynamic.t_end_frac", "dynamic.decay", "dynamic.grow", "lr", "steps"]
    (row,) = csv.DictReader(io.StringIO((art / "pareto_front.csv").read_text()))
    assert list(row) == ["run_id", "trial_key", *OBJECTIVES, *params]              # no seed, paths, baseline
    assert (row["loss_weights.normal"], row["score_batches"], row["dynamic.t_end_frac"]) == ("4.5", "3", "0.75")
    page = (art / "pareto_front.html").read_text()
    head = page.split("<thead>")[1].split("</thead>")[0]
    assert head.endswith("".join(f"<th>{k}</th>" for k in params) + "</tr>")


def test_the_trials_watershed_is_logged_and_drawn_as_the_trial_found_it(store, monkeypatch):
    """The chart marks the watershed run_trial found (with layer sizes), not one recomputed from the
    IoU values alone; mask_iou.json and a tag carry it."""
    import json

    from sweeps import plots

    drawn = []
    real_plot = plots.mask_iou_png

    def spy(mask_iou, path, title=None, watershed=None):
        drawn.append(watershed)
        return real_plot(mask_iou, path, title=title, watershed=watershed)

    monkeypatch.setattr(plots, "mask_iou_png", spy)
    shed = {"layer": "backbone.1.weight", "cutoff": 1, "starved": ["backbone.2.weight"]}
    tracker = start(store)
    run_id = tracker.trial_started("t0", config())
    tracker.trial_completed("t0", {"compression": 0.5, "suggested_cutoff": 1.0}, mask_iou=IOU, watershed=shed)
    assert tracker.flush(timeout=30)
    run = MlflowClient(store).get_run(run_id)
    assert run.data.tags["disparse.watershed"] == "backbone.1.weight"
    assert run.data.metrics["suggested_cutoff"] == 1.0
    local = Path(run.info.artifact_uri.replace("file://", ""))
    logged = json.loads((local / "mask_iou.json").read_text())
    assert logged["watershed"] == shed and logged["backbone.0.weight"] == 0.9
    assert drawn == [shed] and png_of(run)[:4] == b"\x89PNG"
