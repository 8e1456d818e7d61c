"""A ``--tracking-uri`` (or ./mlflow.db) that is not an MLflow store: one ``error:`` line, exit 2, and the
file is left byte for byte as it was (MLflow's tables are never created inside someone else's file)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from sweep_helpers import run_cli, sqlite_uri, write_space
from sweeps import tracking
from sweeps.errors import UserInputError

QUERIES = {
    "best": ["best", "--budget", "seg.miou=-2%"],
    "pareto": ["pareto"],
    "report": ["report"],
}
DRY_RUN = ["run", "--space", "tiny.yaml", "--dry-run", "--results-dir", "results"]


def _junk(path: Path) -> None:
    path.write_text("junk\n")


def _other_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("create table t(a)")
    con.execute("insert into t values (1)")
    con.commit()
    con.close()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


MAKERS = {"junk": _junk, "other-sqlite": _other_sqlite, "empty": _empty}
EXPECTED = {"junk": "is not an sqlite database",
            "other-sqlite": "is an sqlite database but not an MLflow store",
            "empty": "is an empty file, not an MLflow store"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cwd(tmp_path):
    write_space(tmp_path)
    return tmp_path


def _assert_one_error_line(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("query", sorted(QUERIES))
@pytest.mark.parametrize("via", ["flag", "cwd"])
def test_queries_on_a_file_that_is_not_an_mlflow_store(cwd, kind, query, via):
    db = cwd / ("mlflow.db" if via == "cwd" else "store.db")
    MAKERS[kind](db)
    before = _sha(db)
    args = QUERIES[query] + (["--tracking-uri", sqlite_uri(db)] if via == "flag" else [])
    done = run_cli(args, cwd)
    _assert_one_error_line(done, str(db.resolve()), EXPECTED[kind])
    assert _sha(db) == before
    assert sorted(p.name for p in cwd.iterdir()) == sorted(["tiny.yaml", db.name])


@pytest.mark.parametrize("kind", ["junk", "other-sqlite"])
@pytest.mark.parametrize("dry", [True, False])
def test_run_refuses_a_file_that_is_not_an_mlflow_store(cwd, kind, dry):
    db = cwd / "store.db"
    MAKERS[kind](db)
    before = _sha(db)
    args = DRY_RUN + ["--tracking-uri", sqlite_uri(db)]
    if not dry:
        args.remove("--dry-run")
    done = run_cli(args, cwd)
    _assert_one_error_line(done, str(db.resolve()), EXPECTED[kind],
                           "expected an MLflow database or a new file path")
    assert _sha(db) == before
    assert not (cwd / "results").exists()


def test_dry_run_with_an_empty_file_leaves_it_empty(cwd):
    db = cwd / "mlflow.db"
    db.write_bytes(b"")
    done = run_cli(DRY_RUN, cwd)
    assert done.returncode == 0, done.stderr
    assert "nothing written" in done.stdout
    assert db.read_bytes() == b""
    assert not (cwd / "results").exists()


def test_dry_run_with_a_new_path_creates_nothing(cwd):
    db = cwd / "sub" / "new.db"
    done = run_cli(DRY_RUN + ["--tracking-uri", sqlite_uri(db)], cwd)
    assert done.returncode == 0, done.stderr
    assert "nothing written" in done.stdout
    assert sqlite_uri(db) in done.stdout
    assert not db.exists() and not db.parent.exists()
    assert not (cwd / "results").exists()


def test_queries_on_an_mlflow_store_read_it_without_writing(cwd, template_db):
    db = cwd / "mlflow.db"
    shutil.copy(template_db, db)
    before = _sha(db)
    done = run_cli(QUERIES["pareto"], cwd)
    _assert_one_error_line(done, "experiment 'disparse-tune' not found")
    assert _sha(db) == before


def test_validate_tracking_uri_on_existing_files(tmp_path, template_db):
    store = tmp_path / "ok.db"
    shutil.copy(template_db, store)
    for create in (True, False):
        assert tracking.validate_tracking_uri(sqlite_uri(store), create=create) == sqlite_uri(store)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert tracking.validate_tracking_uri(sqlite_uri(empty), create=True) == sqlite_uri(empty)  # as new
    with pytest.raises(UserInputError, match="is an empty file, not an MLflow store"):
        tracking.validate_tracking_uri(sqlite_uri(empty), create=False)
    assert empty.read_bytes() == b""
    other = tmp_path / "other.db"
    _other_sqlite(other)
    before = _sha(other)
    for create in (True, False):
        with pytest.raises(UserInputError, match="not an MLflow store") as err:
            tracking.validate_tracking_uri(sqlite_uri(other), create=create)
        assert "\n" not in str(err.value) and str(other) in str(err.value)
    assert _sha(other) == before
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(UserInputError, match="is a folder"):
        tracking.validate_tracking_uri(sqlite_uri(folder), create=True)
