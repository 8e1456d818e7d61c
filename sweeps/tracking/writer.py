"""The low-level writes of :class:`sweeps.tracking.SweepTracker`: metrics at a step (never below the
last one logged), params and tags in MLflow's batch sizes, text files as artifacts. Private.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from .values import (MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE, NOT_METRICS, finite_numbers,
                     logged_name, truncate)


class RunWriter:
    """Needs ``self.client`` (an ``MlflowClient``) and ``self._last_step`` (run id -> highest step logged)."""

    client: Any
    _last_step: dict[str, int]

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None) -> None:
        from mlflow.entities import Metric
        if step is None:                   # final values: never at a step below the last one logged
            raw = metrics.get("step")
            step = int(raw) if isinstance(raw, (int, float)) and math.isfinite(raw) else 0
            step = max(step, self._last_step.get(run_id, 0))
        self._last_step[run_id] = max(int(step), self._last_step.get(run_id, 0))
        now = int(time.time() * 1000)
        values = {logged_name(k): v for k, v in finite_numbers(metrics).items() if k not in NOT_METRICS}
        self._log_metric_objects(run_id, [Metric(k, v, now, int(step)) for k, v in values.items()])

    def _log_metric_objects(self, run_id: str, items: list) -> None:
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + MAX_METRICS_PER_BATCH])

    def _log_batch(self, run_id: str, params: Mapping[str, str] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Param, RunTag
        ps = [Param(k, v) for k, v in (params or {}).items()]
        ts = [RunTag(k, truncate(str(v), MAX_TAG_VALUE)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ps), len(ts)), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=ps[i:i + MAX_PARAMS_PER_BATCH],
                                  tags=ts[i:i + MAX_PARAMS_PER_BATCH])

    def _log_texts(self, run_id: str, files: Mapping[str, str]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in files.items():
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            for entry in sorted(Path(tmp).iterdir()):
                if entry.is_dir():
                    self.client.log_artifacts(run_id, str(entry), artifact_path=entry.name)
                else:
                    self.client.log_artifact(run_id, str(entry))
