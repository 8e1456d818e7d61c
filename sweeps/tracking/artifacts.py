"""Trial pictures drawn off the driver's thread: :class:`PlotQueue`, used by the sweep tracker.

Why: drawing and logging a trial's mask-IoU bar chart took ~0.6 s, and :meth:`SweepTracker.trial_completed`
runs inside Ray Tune's driver event loop, so no trial could start while a PNG was being drawn. The tracker
logs what the sweep's answers depend on (metrics, tags, ``mask_iou.json``, the run status) itself and hands
the picture to one background worker, which draws the charts in the order they were queued and logs each
to its (by then usually FINISHED) run; MLflow accepts artifacts and tags on a finished run.

- Nothing is lost: :meth:`PlotQueue.flush` waits until every queued chart is logged (the tracker calls it
  before it closes the sweep, on abort, and from its own ``flush``/``close``). On abort a second Ctrl+C
  stops that wait (:meth:`PlotQueue.close_on_abort`).
- A chart that cannot be drawn or logged never raises in the driver: it becomes the run's
  ``disparse.plot_error`` tag (and when even that cannot be written, one warning line on stderr).
- The worker has its own ``MlflowClient`` (made in its thread; mlflow shares one thread-safe store per
  tracking URI between clients, as its own tracking server does) and draws on a Figure of its own through
  ``sweeps.plots.mask_iou_png`` (no pyplot state).
- The thread is a daemon, started on the first chart and stopped by :meth:`PlotQueue.close` (a later chart
  starts a new one): an interpreter that is killed or exits never waits for it.

Private to :mod:`sweeps.tracking`.
"""

from __future__ import annotations

import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from .. import plots
from .store import open_client
from .values import one_line

TAG_PLOT_ERROR = "disparse.plot_error"

_STOP = object()          # a worker's last job


class PlotQueue:
    """One FIFO queue of mask-IoU charts and the daemon thread that draws and logs them.

    ``submit`` and ``flush``/``close`` are called from the tracker's thread; the worker shares with it
    only the job queue and the counters below, under one condition variable.
    """

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.lost = 0                         # charts neither logged nor tagged (see stderr)
        self._cond = threading.Condition()
        self._pending = 0                     # submitted, not yet done
        self._jobs: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None

    # Ray Tune pickles its callbacks (and so the tracker) into the experiment folder for Tuner.restore:
    # a copy is a fresh, idle queue for the same store; the jobs stay with the live one.
    def __getstate__(self) -> dict:
        return {"tracking_uri": self.tracking_uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["tracking_uri"])

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    def submit(self, run_id: str, mask_iou: Mapping[str, Any], title: str,
               watershed: Mapping[str, Any] | None = None) -> None:
        """Queue the chart of ``mask_iou`` for ``run_id`` (``mask_iou.png``; ``watershed``: the trial's
        ``{layer, cutoff, starved}`` to mark); returns at once."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                # each worker has its own queue, so a stopping worker can never take a new worker's job
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._work, args=(self._jobs,), daemon=True,
                                                name="disparse-mask-iou-plots")
                self._thread.start()
            self._pending += 1
            self._jobs.put((run_id, mask_iou, title, watershed))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every chart queued so far is logged (or tagged as failed); False when ``timeout``
        (seconds) ran out first or the worker is gone with charts left (never expected; see stderr)."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._pending:
                if self._thread is None or not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # in slices, so that a worker that died is noticed instead of waited for forever
                self._cond.wait(0.5 if left is None else min(0.5, left))
            return True

    def close(self, timeout: float | None = None) -> bool:
        """:meth:`flush`, then stop the worker (when everything was done). Returns what flush returned."""
        done = self.flush(timeout)
        if done:
            with self._cond:
                thread, jobs, self._thread, self._jobs = self._thread, self._jobs, None, None
            if thread is not None:
                jobs.put(_STOP)
                thread.join(timeout)
        return done

    def close_on_abort(self) -> bool:
        """:meth:`close` for the abort path: a second Ctrl+C (or SIGTERM, which the CLI turns into one)
        stops this wait, not the shutdown around it; the charts left are reported on stderr (the daemon
        worker goes on logging them while the process lives)."""
        try:
            return self.close()
        except KeyboardInterrupt:
            print(f"warning: stopped waiting for {self.pending} mask-IoU chart(s); they are logged only if "
                  "the process lives long enough", file=sys.stderr, flush=True)
            return False

    # -- the worker thread -------------------------------------------------------------------------------

    def _work(self, jobs: queue.SimpleQueue) -> None:
        client = None
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            lost = False
            try:
                if client is None:
                    client = open_client(self.tracking_uri)
                _draw_and_log(client, *job)
            except Exception as exc:  # the tag could not be written either: say so, keep going
                lost = True
                print(f"warning: the mask-IoU chart of MLflow run {job[0]} is lost: {_describe(exc, 300)}",
                      file=sys.stderr, flush=True)
            finally:
                with self._cond:
                    self.lost += lost
                    self._pending -= 1
                    self._cond.notify_all()


def _draw_and_log(client, run_id: str, mask_iou: Mapping[str, Any], title: str,
                  watershed: Mapping[str, Any] | None = None) -> None:
    """``mask_iou.png`` on ``run_id``, or ``disparse.plot_error`` when it cannot be drawn or logged.
    ``plots.mask_iou_png`` is looked up here, when the job runs (tests replace its drawer)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = plots.mask_iou_png(mask_iou, Path(tmp) / "mask_iou.png", title=title, watershed=watershed)
            if png is not None:
                client.log_artifact(run_id, str(png))
    except Exception as exc:  # a plot must never fail a trial that trained fine
        client.set_tag(run_id, TAG_PLOT_ERROR, _describe(exc, 500))


def _describe(exc: BaseException, limit: int) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, limit)
