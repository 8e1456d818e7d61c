"""SIGTERM handled like Ctrl+C (``kill PID``, ``docker stop``, a batch scheduler's preemption).

The handler re-raises the signal as SIGINT, so whatever handles Ctrl+C at that moment does the work: Ray
Tune's handler inside ``Tuner.fit`` (stop the trials, close their MLflow runs), Python's
``KeyboardInterrupt`` elsewhere (the CLI prints the resume hint). ``ray.init`` installs its own SIGTERM
handler (``sys.exit``), so :func:`reinstall` is called again once Ray is up. Part of :mod:`sweeps.run`
(the command line installs the handler around a run).
"""

from __future__ import annotations

import signal
import threading

__all__ = ["install", "reinstall", "restore", "terminated"]

_state: dict = {"active": False, "previous": None, "received": 0}


def _on_sigterm(signum, frame) -> None:
    _state["received"] += 1
    signal.raise_signal(signal.SIGINT)


def install() -> None:
    """From the CLI's ``main`` (main thread only; elsewhere signals are left alone)."""
    _state["received"] = 0
    if threading.current_thread() is not threading.main_thread():
        return
    _state["previous"] = signal.signal(signal.SIGTERM, _on_sigterm)
    _state["active"] = True


def reinstall() -> None:
    """After ``ray.init`` replaced the handler; a no-op unless :func:`install` ran."""
    if _state["active"] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def restore() -> None:
    if _state["active"]:
        signal.signal(signal.SIGTERM, _state["previous"])
        _state.update(active=False, previous=None)


def terminated() -> bool:
    """Whether a SIGTERM arrived since :func:`install`."""
    return _state["received"] > 0
