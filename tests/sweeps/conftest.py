"""Fixtures shared by the sweep tests."""

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# The helpers (sweep_helpers, tracking_helpers) live here; the tests of tests/sweeps/{run,tracking,ray}/
# import them by name, as the tests of this folder do (pytest puts only a test's own folder on sys.path).
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def template_db(request, tmp_path_factory):
    """A migrated, empty MLflow database. Creating one runs MLflow's migrations (~6-15 s here), so it is
    made once and kept in pytest's cache (keyed by the MLflow version); tests copy it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    name = f"mlflow-template-{mlflow.__version__}.db"
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("disparse-mlflow")) if cache is not None else tmp_path_factory.getbasetemp()
    path = folder / name
    if not path.exists():
        partial = tmp_path_factory.getbasetemp() / f"partial-{name}"
        partial.unlink(missing_ok=True)
        MlflowClient(f"sqlite:///{partial}").search_experiments()
        shutil.copy(partial, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return path


@pytest.fixture
def store(tmp_path, template_db):
    """A fresh copy of the template MLflow store for one test (sqlite URI); run/test_runner.py has its own."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template_db, db)
    return f"sqlite:///{db}"
