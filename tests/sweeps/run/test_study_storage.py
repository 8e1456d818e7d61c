"""The sweep's Optuna study file: a journal for new sweeps, sqlite for sweeps started before it.

Real Optuna storages in tmp_path; what a user relies on: every tell is on disk when it returns (another
process reads it), a kill in mid-append does not make the study unreadable, an old sweep still resumes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sweeps.errors import UserInputError
from sweeps.run import LEGACY_STUDY_FILE, STUDY_FILE, Plan, load_sweep_study, study_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO_ROOT = Path(__file__).resolve().parents[3]


def _plan(results_dir) -> Plan:
    return Plan(spec=None, sweep_id="s", results_dir=results_dir, tracking_uri="sqlite:///x.db",
                experiment="e", ray_address=None, resume=False, overrides=[], space_file=None)


def _study(path, n: int, name: str = "s"):
    study = optuna.create_study(storage=study_storage(path), study_name=name,
                                directions=["maximize", "minimize"], load_if_exists=True)
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("trial_key", f"t{i:04d}")
        study.tell(trial, [float(i), -float(i)])
    return study


def test_new_sweeps_use_the_journal_and_old_ones_keep_sqlite(tmp_path):
    assert _plan(tmp_path / "new").study_path == (tmp_path / "new" / STUDY_FILE).resolve()
    old = tmp_path / "old"
    old.mkdir()
    _study(old / LEGACY_STUDY_FILE, 2)
    assert _plan(old).study_path.name == LEGACY_STUDY_FILE
    assert isinstance(study_storage(_plan(old).study_path), optuna.storages.RDBStorage)
    study = load_sweep_study(old)
    assert [t.user_attrs["trial_key"] for t in study.trials] == ["t0000", "t0001"]
    assert isinstance(study_storage(tmp_path / "new.journal"), optuna.storages.JournalStorage)


def test_a_tell_is_readable_by_another_process_at_once(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    _study(folder / STUDY_FILE, 3)
    code = ("import sys; sys.path.insert(0, %r); from sweeps.run import load_sweep_study; "
            "s = load_sweep_study(%r, 's'); print(len(s.trials), s.trials[-1].values)")
    out = subprocess.run([sys.executable, "-c", code % (str(REPO_ROOT), str(folder))],
                         capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == "3 [2.0, -2.0]"


def test_a_torn_last_line_is_cut_and_the_study_goes_on(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    journal = folder / STUDY_FILE
    _study(journal, 2)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "user_at')  # killed mid-write
    study = _study(journal, 1)  # reopening cuts the torn line; one more trial is appended after it
    assert journal.read_bytes().startswith(whole)
    again = load_sweep_study(folder)
    assert [t.state.name for t in again.trials] == ["COMPLETE"] * 3
    assert len(study.trials) == 3


def test_load_sweep_study_names_what_is_missing(tmp_path):
    with pytest.raises(UserInputError, match="holds no optuna.journal"):
        load_sweep_study(tmp_path)
    folder = tmp_path / "two"
    folder.mkdir()
    _study(folder / STUDY_FILE, 1, name="a")
    _study(folder / STUDY_FILE, 1, name="b")
    with pytest.raises(UserInputError, match="holds 2 studies"):
        load_sweep_study(folder)
    assert load_sweep_study(folder, "b").study_name == "b"
