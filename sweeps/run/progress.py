"""Live sweep progress for a terminal or a log file: one line per change, never a flood.

A line looks like::

    [   42.1s] trials 5/12 done (1 early-stopped, 1 failed), 2 running | pareto 3 | hv 0.4187

It is printed only when a count, the front or the hypervolume changes (plus notes such as retries),
so it works the same in a TTY, under ``nohup`` or in CI logs. No Ray import: the Ray callback in
:mod:`sweeps.ray` forwards trial events here.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Mapping, Sequence, TextIO

__all__ = ["SweepProgress"]


class SweepProgress:
    """Counts trials and tracks the Pareto front of fully trained trials.

    Args:
        total: trials in the sweep (over every resume).
        objectives: objective metric names; directions: ``"maximize"``/``"minimize"`` per objective.
        front: ``front(points, directions) -> indices`` (default :func:`sweeps.pareto.pareto_front`).
        hypervolume: ``hypervolume(points, directions) -> float`` or None (then not shown).
        done_before: trials finished by an earlier run of the same sweep (``--resume``).
    """

    def __init__(self, total: int, objectives: Sequence[str], directions: Sequence[str], *,
                 front: Callable | None = None, hypervolume: Callable | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 done_before: int = 0, points_before: Sequence[Sequence[float]] = ()):
        self.total = int(total)
        self.objectives = list(objectives)
        self.directions = list(directions)
        self._front = front
        self._hypervolume = hypervolume
        self._stream = stream if stream is not None else sys.stdout
        self._clock = clock
        self._t0 = clock()
        self.running: set[str] = set()
        self.done = int(done_before)
        self.early_stopped = 0
        self.failed = 0
        self.points: list[tuple[float, ...]] = [tuple(p) for p in points_before]
        self.front_size = 0
        self.hv: float | None = None
        self.hv_history: list[tuple[int, float]] = []  # (trials done, hypervolume) at each change
        self._last_line: str | None = None
        self._update_front()

    # -- events ------------------------------------------------------------------------------------
    def trial_started(self, key: str) -> None:
        self.running.add(key)
        self.render()

    def trial_finished(self, key: str, metrics: Mapping[str, float], full: bool = True) -> None:
        self.running.discard(key)
        self.done += 1
        if not full:
            self.early_stopped += 1
        else:
            point = tuple(float(metrics.get(name, math.nan)) for name in self.objectives)
            if all(math.isfinite(v) for v in point):
                self.points.append(point)
                self._update_front()
        self.render()

    def trial_failed(self, key: str, reason: str) -> None:
        self.running.discard(key)
        self.done += 1
        self.failed += 1
        self.note(f"trial {key} failed: {reason}")
        self.render()

    def note(self, message: str) -> None:
        self._write(f"[{self.elapsed():8.1f}s] {message}")

    # -- display -----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self._clock() - self._t0

    def line(self) -> str:
        extra = []
        if self.early_stopped:
            extra.append(f"{self.early_stopped} early-stopped")
        if self.failed:
            extra.append(f"{self.failed} failed")
        parts = [f"trials {self.done}/{self.total} done"
                 + (f" ({', '.join(extra)})" if extra else "")
                 + f", {len(self.running)} running",
                 f"pareto {self.front_size}"]
        if self.hv is not None:
            parts.append(f"hv {self.hv:.4g}")
        return " | ".join(parts)

    def render(self) -> None:
        """Print the status line if it differs from the last one printed."""
        body = self.line()
        if body != self._last_line:
            self._last_line = body
            self._write(f"[{self.elapsed():8.1f}s] {body}")

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def _update_front(self) -> None:
        if not self.points:
            self.front_size, self.hv = 0, None
            return
        if self._front is None:
            from ..pareto import pareto_front

            self._front = pareto_front
        self.front_size = len(self._front(self.points, self.directions))
        if self._hypervolume is not None:
            try:
                hv = float(self._hypervolume(self.points, self.directions))
            except (ValueError, ZeroDivisionError):
                return
            if hv != self.hv:
                self.hv = hv
                self.hv_history.append((self.done, hv))
