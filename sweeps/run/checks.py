"""Checks of the places a sweep will write and of the machine it runs on; each writes nothing.

Used by :mod:`sweeps.run.plan` before Ray starts and before MLflow is touched, so that a folder that
cannot be created, a full disk or a trial bigger than the machine is one line ``error: ...`` (exit code
2) and leaves no trace (an unreachable MLflow server likewise: :func:`sweeps.tracking.probe_http_store`).
Part of :mod:`sweeps.run`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserInputError
from .settings import trial_resources

__all__ = ["MIN_FREE_MIB", "nearest_existing", "check_creatable", "check_free_space", "check_local_cpus"]

# free space required where a sweep writes (results folder, sqlite store): a small sweep's optuna.journal,
# Ray's experiment folders and the MLflow rows and artifacts take a few MiB; 50 MiB leaves room for them
# and for sqlite's journal, so a sweep never dies half-way on "database or disk is full"
MIN_FREE_MIB = 50


def nearest_existing(path: Path) -> Path:
    """``path`` or the closest of its parents that exists."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_creatable(flag: str, folder: Path) -> None:
    """``folder`` exists as a writable directory, or can be created (its nearest existing parent is a
    writable directory)."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise UserInputError(f"{flag}: {str(folder)!r} is a file; expected a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserInputError(f"{flag}: {str(folder)!r} is not writable; expected a writable folder")
        return
    ancestor = nearest_existing(folder.parent)
    if not ancestor.is_dir():
        raise UserInputError(f"{flag}: {str(folder)!r} cannot be created: {str(ancestor)!r} is a file; "
                             f"expected a folder path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserInputError(f"{flag}: {str(folder)!r} cannot be created: {str(ancestor)!r} is not "
                             f"writable; expected a writable location")


def check_free_space(flag: str, path: Path, min_mib: int = MIN_FREE_MIB) -> None:
    """At least ``min_mib`` MiB free on the file system that holds (or would hold) ``path``."""
    where = nearest_existing(Path(path))
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # cannot tell: the write itself will say
    if free < min_mib * 2**20:
        raise UserInputError(f"{flag}: {str(path)!r} is on a file system with {free / 2**20:.1f} MiB free; "
                             f"expected at least {min_mib} MiB free")


def check_local_cpus(spec) -> None:
    """A local Ray gets ``os.cpu_count()`` CPUs (see ``sweeps.ray.connect``): one trial must fit, or
    Tune would wait for ever."""

    cpu = trial_resources(spec)[0]
    have = os.cpu_count() or 1
    if cpu > have:
        raise UserInputError(f"resources.cpu: {cpu:g} per trial, but this machine has {have} CPUs; "
                             f"expected at most {have} (or --ray-address of a larger cluster)")
