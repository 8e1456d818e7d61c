"""Running a sweep: from command-line options to a validated plan, then the run itself.

The steps, one module each: ``plan`` (options → :class:`Plan`, every input check, the ``--dry-run``
text), ``checks`` (folders, free space, CPUs), ``files`` (the results folder: names, reading
``sweep.json``, the lock), ``state`` (writing ``sweep.json``), ``settings`` (resources, early stopping and
hypervolume from the space), ``baseline`` (the dense baseline), ``study`` (the Optuna study and the driver
that asks and tells it), ``runner`` (:func:`run_sweep`: MLflow sweep run → Ray → baseline → Tuner →
front), ``progress`` (the live progress line), ``output`` (front table, the MLflow UI command and pages) and
``signals`` (SIGTERM handled like Ctrl+C). This ``__init__`` is their public face.

Importing this package loads no Ray, Optuna, MLflow or torch; :func:`run_sweep` imports them.
"""

from . import signals
from .baseline import SharedDense, baseline_config, baseline_note, run_baseline, shared_dense
from .checks import check_creatable, check_free_space
from .files import LEGACY_STUDY_FILE, STATE_FILE, STUDY_FILE
from .output import browse_lines, format_front, mlflow_ui_command
from .plan import Plan, RunOptions, describe_plan, make_plan, resume_dir
from .progress import SweepProgress
from .runner import SweepSummary, run_sweep
from .settings import early_stopping, final_hypervolume, watched_metrics
from .state import write_state
from .study import TAG_SKIPPED, load_sweep_study, make_driver, open_study, record_skipped, state_counts, study_storage

__all__ = [
    "RunOptions", "Plan", "make_plan", "describe_plan", "resume_dir",
    "SweepSummary", "run_sweep",
    "check_creatable", "check_free_space",
    "STATE_FILE", "STUDY_FILE", "LEGACY_STUDY_FILE", "write_state",
    "early_stopping", "watched_metrics", "final_hypervolume",
    "baseline_config", "baseline_note", "run_baseline", "shared_dense", "SharedDense",
    "open_study", "load_sweep_study", "study_storage", "make_driver", "state_counts",
    "record_skipped", "TAG_SKIPPED",
    "SweepProgress", "format_front", "mlflow_ui_command", "browse_lines",
    "signals",
]
