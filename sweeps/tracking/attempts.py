"""Attempts of a trial that did not count: :class:`AttemptWriter`, the part of
:class:`~sweeps.tracking.SweepTracker` that keeps a retried or resumed trial's records apart.

A trial runs again when Ray retries it (its worker died: ``max_retries``) or when ``--resume`` reruns a
trial an interrupted sweep left unfinished. Logged to one run, the attempts would read as one series
whose steps go back (``[66, 132, 66, 132, 198, 200]``), and the run would keep the Optuna number of the
attempt that failed. Instead, an attempt that ends without finishing is *retired*: its run is closed as
FAILED with the reason, renamed ``<trial>-attempt<N>``, tagged ``disparse.role=attempt`` (so readers,
fronts and counts skip it) and nested under the trial's next run. The next attempt logs to a fresh trial
run, so the trial's run holds one clean series, the Optuna number of the attempt that counts, and
``disparse.retries`` (how many attempts did not count) and ``disparse.attempt_<N>`` (each one's reason).
Private to :mod:`sweeps.tracking`.
"""

from __future__ import annotations

from typing import Any

from .describe import NOTE_TAG
from .store import (ATTEMPT_REASON, TAG_ATTEMPT, TAG_FAILURE, TAG_PARENT, TAG_RETRIES, TAG_ROLE, TAG_SWEEP_ID,
                    TAG_TRIAL_KEY, quote_value, search_all_runs)
from .values import one_line

_LEFT_UNFINISHED = "The sweep stopped before this attempt ended (it was run again on --resume)."


class AttemptWriter:
    """Needs ``client``, ``experiment_id``, ``sweep_id``, ``_trials``, ``_status`` and ``_attempts``
    (trial key -> ``[(number, reason, run id), ...]``)."""

    client: Any
    experiment_id: str
    sweep_id: str | None
    _trials: dict
    _status: dict
    _attempts: dict

    def trial_retried(self, trial_key: str, reason: Any) -> None:
        """Ray runs the trial again after ``reason`` (its worker died): the attempt's run is retired and
        the next :meth:`trial_started` opens a fresh run."""
        key = str(trial_key)
        run_id = self._trials.get(key)
        if run_id is None or self._status.get(key) == "FINISHED":
            return
        self._retire(key, run_id, reason)

    def _retire(self, key: str, run_id: str, reason: Any) -> None:
        """Close ``run_id`` as attempt N of trial ``key`` (FAILED, renamed, role ``attempt``)."""
        number = len(self._attempts.setdefault(key, [])) + 1
        text = one_line(reason)
        run = self.client.get_run(run_id)
        self.client.set_tag(run_id, TAG_ROLE, "attempt")
        self.client.set_tag(run_id, TAG_ATTEMPT, str(number))
        self.client.set_tag(run_id, TAG_FAILURE, text)
        self.client.set_tag(run_id, NOTE_TAG, f"Attempt {number} of trial {key}, did not count: {text}")
        if run.data.tags.get("disparse.pareto"):
            self.client.delete_tag(run_id, "disparse.pareto")
        self.client.update_run(run_id, name=f"{key}-attempt{number}")
        if run.info.status == "RUNNING":
            self.client.set_terminated(run_id, "FAILED")
        self._attempts[key].append((number, text, run_id))
        del self._trials[key]
        self._status.pop(key, None)

    def _retire_unfinished(self, key: str, run_id: str) -> None:
        """A trial run that a resume finds unfinished (FAILED, KILLED or RUNNING) becomes an attempt."""
        run = self.client.get_run(run_id)
        self._retire(key, run_id, run.data.tags.get(TAG_FAILURE) or _LEFT_UNFINISHED)

    def _attempt_tags(self, key: str) -> dict[str, str]:
        """The tags a trial's new run carries about the attempts before it."""
        attempts = self._attempts.get(key) or []
        if not attempts:
            return {}
        tags = {TAG_RETRIES: str(len(attempts))}
        tags.update({f"{ATTEMPT_REASON}{n}": reason for n, reason, _ in attempts})
        return tags

    def _adopt_attempts(self, key: str, run_id: str) -> None:
        """Nest the trial's retired attempts under its run that counts (they sat under the sweep)."""
        for _, _, attempt_run in self._attempts.get(key) or []:
            self.client.set_tag(attempt_run, TAG_PARENT, run_id)

    def _load_attempts(self) -> None:
        """The attempts an earlier run of this sweep retired (a resume numbers on from them)."""
        runs = search_all_runs(self.client, self.experiment_id,
                               f"tags.`{TAG_ROLE}` = 'attempt' and tags.`{TAG_SWEEP_ID}` = "
                               f"{quote_value(str(self.sweep_id))}", order_by=["attributes.start_time ASC"])
        for run in runs:
            key, number = run.data.tags.get(TAG_TRIAL_KEY), run.data.tags.get(TAG_ATTEMPT, "0")
            if key is None:
                continue
            self._attempts.setdefault(key, []).append(
                (int(number) if number.isdigit() else 0, run.data.tags.get(TAG_FAILURE, ""), run.info.run_id))
        for items in self._attempts.values():
            items.sort()
