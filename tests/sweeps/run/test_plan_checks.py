"""Plan-time checks that need no Ray: resume lookup by the space's name, free space, the MLflow server
probe, the one-line translation of store failures and of a failing dense baseline, SIGTERM as Ctrl+C."""

from __future__ import annotations

import errno
import json
import signal
import socket
import sqlite3
import time
from types import SimpleNamespace

import pytest

from sweeps import cli
from sweeps.errors import RunError, UserInputError
from sweeps.run import RunOptions, check_creatable, check_free_space, resume_dir, run_baseline
from sweeps.space import DEFAULT_SPACE, load_space
from sweeps.tracking import probe_http_store


def test_resume_finds_the_default_space_by_its_name(tmp_path):
    name = load_space(DEFAULT_SPACE).name
    assert name != DEFAULT_SPACE  # the demo's folder is named after `name:`, not the file
    folder = tmp_path / name
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"sweep_id": name}))
    assert resume_dir(RunOptions(resume=True), tmp_path) == folder


def test_results_dir_below_a_file_or_read_only_parent_is_rejected(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserInputError, match="is a file"):
        check_creatable("--results-dir", tmp_path / "f" / "a" / "b")
    check_creatable("--results-dir", tmp_path / "new" / "deeper")   # creatable: fine, nothing made
    assert not (tmp_path / "new").exists()


def test_too_little_free_space_is_one_line(tmp_path):
    with pytest.raises(UserInputError, match=r"--results-dir: .* MiB free; expected at least"):
        check_free_space("--results-dir", tmp_path / "x", min_mib=2**40)
    check_free_space("--results-dir", tmp_path / "x", min_mib=0)


def test_unreachable_mlflow_server_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserInputError, match=f"127.0.0.1:{port}"):
        probe_http_store(f"http://127.0.0.1:{port}")


def test_a_broken_mlflow_server_is_asked_once_not_retried():
    """MLflow's client retries a failed request for minutes by default; the probe asks once."""
    import threading

    accepted = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():                   # every connection is closed at once, before any answer
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserInputError, match=f"127.0.0.1:{server.getsockname()[1]}"):
            probe_http_store(f"http://127.0.0.1:{server.getsockname()[1]}")
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert len(accepted) == 1, f"{len(accepted)} connections: the probe retried"


def test_disk_full_and_read_only_store_errors_become_one_line():
    full = sqlite3.OperationalError("database or disk is full")
    assert "disk is full" in cli._known_failure(full)[0]
    wrapped = RuntimeError("failed")
    wrapped.__cause__ = sqlite3.OperationalError("attempt to write a readonly database")
    assert "read-only" in cli._known_failure(wrapped)[0]
    assert cli._known_failure(OSError(errno.ENOSPC, "No space left on device", "/x/sweep.json"))[1] == 2
    assert cli._known_failure(KeyError("bug")) is None


class _Backend:
    def __init__(self, exc):
        self.exc = exc

    baseline_task = None

    def run_remote(self, fn, config, cpu=1, gpu=0):
        raise self.exc


class _Tracker:
    def find_baseline_run(self, key):
        return None


def _plan():
    spec = load_space(DEFAULT_SPACE)
    return SimpleNamespace(spec=spec)


@pytest.mark.parametrize("exc,kind", [(ValueError("image_size for scenes must be one of (32,)"), UserInputError),
                                      (MemoryError("worker died"), RunError)])
def test_a_failing_baseline_is_one_line(exc, kind, capsys):
    with pytest.raises(kind, match="dense baseline") as info:
        run_baseline(_plan(), _Tracker(), _Backend(exc), out=SimpleNamespace(write=lambda s: None,
                                                                               flush=lambda: None))
    assert "\n" not in str(info.value)


def test_sigterm_is_handled_like_ctrl_c(monkeypatch):
    def fake_run(args, out):
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)  # the handler turns SIGTERM into SIGINT: KeyboardInterrupt arrives first
        return 0

    monkeypatch.setattr(cli, "_run", fake_run)
    # as in a fresh `python tune.py` (an earlier in-process Ray Tune run may have left its own handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGTERM)
        assert cli.main(["--dry-run"], out=SimpleNamespace(write=lambda s: None), err=_Sink()) == 143
        assert signal.getsignal(signal.SIGTERM) == before
    finally:
        signal.signal(signal.SIGINT, previous_int)


def test_unknown_command_and_flag_name_what_is_expected():
    err = _Sink()
    assert cli.main(["bestt"], out=_Sink(), err=err) == 2
    assert "'bestt'" in err.text and "run, best, pareto, report" in err.text and "--help" in err.text
    err = _Sink()
    assert cli.main(["--trails", "3"], out=_Sink(), err=err) == 2
    assert "--trails" in err.text and "--trials" in err.text and "--help" in err.text


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


# ---------------------------------------------------------------- a rejected --resume damages nothing
def _started_sweep(tmp_path, monkeypatch):
    """The results folder a started sweep leaves (sweep.json, space.yaml, the study), made without Ray."""
    from sweep_helpers import write_space

    from sweeps.run import make_plan, open_study, write_state

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, name="tiny")
    results = tmp_path / "D"
    plan = make_plan(RunOptions(space=str(space), results_dir=str(results),
                                tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    write_state(plan, "interrupted")
    open_study(plan)
    # the MLflow store the sweep wrote: not made here (its schema takes seconds); the plan takes it as given
    monkeypatch.setattr("sweeps.tracking.validate_tracking_uri", lambda uri, create=False: uri)
    return results


def _snapshot(results):
    return {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}


@pytest.mark.parametrize("override", ["objectives=[compression, seg.miou, normal.mean]",
                                      "objectives=[compression]",
                                      "objectives=[{name: compression, direction: minimize}, "
                                      "{name: delta_m, direction: maximize}]"])
def test_a_resume_with_other_objectives_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                             override):
    results = _started_sweep(tmp_path, monkeypatch)
    before = _snapshot(results)
    assert {"sweep.json", "space.yaml", "optuna.journal"} <= set(before)
    err = _Sink()
    code = cli.main(["--resume", "--results-dir", str(results), "--trials", "2", "--set", override],
                    out=_Sink(), err=err)
    assert code == 2, err.text
    lines = err.text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: objectives: ") and "expected" in lines[0], err.text
    assert _snapshot(results) == before
    # and the sweep still resumes: a plain --resume plans fine
    from sweeps.run import make_plan
    plan = make_plan(RunOptions(resume=True, results_dir=str(results), trials=2))
    assert [o.name for o in plan.spec.objectives] == ["compression", "delta_m"]


def test_a_resume_whose_study_has_other_directions_is_refused(tmp_path, monkeypatch):
    """The study file is the reference: a sweep.json/space.yaml that disagree with it are refused too."""
    import optuna

    from sweeps.run import make_plan, study_storage

    results = _started_sweep(tmp_path, monkeypatch)
    (results / "optuna.journal").unlink()
    sweep_id = json.loads((results / "sweep.json").read_text())["sweep_id"]
    optuna.create_study(storage=study_storage(results / "optuna.journal"), study_name=sweep_id,
                        directions=["minimize", "maximize", "maximize"])
    before = _snapshot(results)
    with pytest.raises(UserInputError, match=r"objectives: .*expected 3 objective\(s\)"):
        make_plan(RunOptions(resume=True, results_dir=str(results)))
    assert _snapshot(results) == before


@pytest.mark.parametrize("text,named", [("[1, 2]", "JSON list"), ("{}", "sweep_id is missing"),
                                        ('{"sweep_id": "x"}', "tracking_uri is missing"),
                                        ('{"tracking_uri": "sqlite:///m.db"}', "sweep_id is missing"),
                                        ('{"sweep_id": 3, "tracking_uri": "sqlite:///m.db"}', "sweep_id"),
                                        ('"text"', "JSON str"),
                                        ('{"sweep_id": "x", "tracking_uri": "sqlite:///m.db", '
                                         '"overrides": "trials=3"}', "overrides")])
def test_a_corrupt_sweep_json_is_one_line(tmp_path, monkeypatch, text, named):
    results = _started_sweep(tmp_path, monkeypatch)
    (results / "sweep.json").write_text(text)
    before = _snapshot(results)
    err = _Sink()
    assert cli.main(["--resume", "--results-dir", str(results)], out=_Sink(), err=err) == 2
    lines = err.text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.text, err.text
    assert f"{results / 'sweep.json'}: " in lines[0] and named in lines[0], lines[0]
    assert "expected the state file a sweep wrote" in lines[0]
    assert _snapshot(results) == before


@pytest.mark.parametrize("address", ["ray://127.0.0.1:10001", "ray://head:10001", " ray://h:1"])
def test_a_ray_client_address_is_refused_at_plan_time(address):
    err = _Sink()
    assert cli.main(["--dry-run", "--ray-address", address], out=_Sink(), err=err) == 2
    line = err.text.strip()
    assert "\n" not in line and "--ray-address" in line and address.strip() in line, line
    assert "HOST:PORT" in line and "Ray Client" in line


def test_a_ray_client_address_saved_in_sweep_json_is_refused(tmp_path, monkeypatch):
    from sweeps.run import make_plan

    results = _started_sweep(tmp_path, monkeypatch)
    state = json.loads((results / "sweep.json").read_text())
    (results / "sweep.json").write_text(json.dumps({**state, "ray_address": "ray://h:10001"}))
    before = _snapshot(results)
    with pytest.raises(UserInputError, match="ray_address 'ray://h:10001'"):
        make_plan(RunOptions(resume=True, results_dir=str(results)))
    assert _snapshot(results) == before


def test_a_sweep_that_samples_training_settings_says_what_delta_m_then_measures():
    from sweeps.run import baseline_note

    demo = baseline_note(load_space(DEFAULT_SPACE))
    assert demo.startswith("note: the sweep samples lr, cutoff, loss_weights.normal; the dense baseline trains "
                           "with the workload's (lr=0.001, cutoff=none (fully shared), loss_weights.normal=1.0)")
    assert "delta_m and relative budgets include the effect" in demo
    fixed = load_space(DEFAULT_SPACE, ["parameters.lr=null", "parameters.loss_weights.normal=null",
                                       "parameters.cutoff=null"])
    assert baseline_note(fixed) is None                          # only pruning settings vary: no note
    scoring = load_space(DEFAULT_SPACE, ["parameters.lr=null", "parameters.loss_weights.normal=null",
                                         "parameters.cutoff=null", "parameters.allotment={values: [global, erk]}",
                                         "parameters.score_on={values: [weights, reinit]}"])
    assert baseline_note(scoring) is None                        # scoring/allotment never change a dense run
    seeds = load_space(DEFAULT_SPACE, ["parameters.lr=null", "parameters.cutoff=null", "workload.seed=null",
                                       "parameters.seed={values: [0, 1]}"])
    assert "samples loss_weights.normal, seed;" in baseline_note(seeds)
    assert "(loss_weights.normal=1.0, seed=0)" in baseline_note(seeds)   # run_trial's defaults
    assert baseline_note(load_space(DEFAULT_SPACE, ["baseline=false", "objectives=[compression, seg.miou]",
                                                    "budgets=null"])) is None
