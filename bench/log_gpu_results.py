"""Log the JSON files of a bench/gpu_check.sh run to MLflow (the GPU machine has no MLflow).

    python bench/log_gpu_results.py DIR [--tracking-uri sqlite:////abs/mlflow.db] [--experiment NAME]

* one run ``gpu-check-<date>`` (tag ``disparse.role = bench``) holding every benchmark's numeric
  figures as metrics (``step_bench.steps.bf16.masked_step_ratio.wall``, ...), the machine as params
  and every JSON and log as artifacts;
* each packing level of ``packing_bench_*.json`` as a sweep, through the project's own
  ``sweeps.tracking.SweepTracker`` (a sweep run with nested trial runs and its Pareto front), so the
  GPU mini sweep reads back with ``python tune.py report --sweep gpu-pack-<k>-<date>``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path

from _common import ROOT  # noqa: E402  (puts the repository on sys.path)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SKIP = {"machine", "config", "anchors", "goals", "trials", "reports", "overrides", "in_trial_wall_s"}


def flatten_numbers(obj, prefix="") -> dict[str, float]:
    """Numeric leaves as ``a.b.c`` keys (lists and the keys in SKIP are left out)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in SKIP:
                continue
            out.update(flatten_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        out[prefix[:-1]] = float(obj)
    return out


def log_bench_run(client, experiment_id: str, results: dict[str, dict], folder: Path, stamp: str) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, run_name=f"gpu-check-{stamp}",
                            tags={"disparse.role": "bench", "disparse.bench": "gpu_check"})
    rid = run.info.run_id
    now = int(_dt.datetime.now().timestamp() * 1000)
    metrics = [Metric(f"{name}.{k}"[:250], v, now, 0) for name, res in results.items()
               for k, v in flatten_numbers(res).items()]
    machine = next((r["machine"] for r in results.values() if "machine" in r), {})
    params = [Param(f"machine.{k}", str(v)[:500]) for k, v in machine.items() if v is not None]
    for i in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(rid, metrics=metrics[i:i + 900], params=params if i == 0 else [])
    for f in sorted(folder.iterdir()):
        if f.suffix in (".json", ".log", ".tsv", ".txt"):
            client.log_artifact(rid, str(f), artifact_path="gpu_check")
    client.set_terminated(rid)
    return rid


def log_packing_sweeps(uri: str, experiment: str, packing: dict, stamp: str) -> list[str]:
    from sweeps.space import directions, load_space
    from sweeps.tracking import SweepTracker

    ids = []
    for k, level in packing.get("levels", {}).items():
        spec = load_space("dynamic", level["overrides"])
        sweep_id = f"gpu-pack-{k}-{stamp}"
        tracker = SweepTracker(uri, experiment)
        with tracker:
            tracker.start_sweep(spec, sweep_id=sweep_id, config={
                "trials": spec.trials, "concurrency": int(k), "resources": level["resources"],
                "fit_s": level["fit_s"], "trials_per_hour": level["trials_per_hour"]})
            for t in level["trials"]:
                tracker.trial_started(t["key"], t["params"])
                if t["state"] == "COMPLETE":
                    tracker.trial_completed(t["key"], {**t["metrics"], "final": 1.0})
                else:
                    tracker.trial_failed(t["key"], t.get("fail_reason") or t["state"])
            tracker.finish_sweep(objectives=spec.metric_names, directions=directions(spec))
        ids.append(sweep_id)
    return ids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="the results folder of a gpu_check.sh run")
    p.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    p.add_argument("--experiment", default="disparse-tune-bench")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    results = {}
    for f in sorted(folder.glob("*.json")):
        try:
            results[f.stem] = json.loads(f.read_text())
        except ValueError as err:
            print(f"skipped {f}: {err}", file=sys.stderr)
    if not results:
        print(f"error: no JSON results in {folder}", file=sys.stderr)
        return 2
    from sweeps.tracking import SweepTracker

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tracker = SweepTracker(args.tracking_uri, args.experiment)  # validates the URI, makes the experiment
    rid = log_bench_run(tracker.client, tracker.experiment_id, results, folder, stamp)
    sweeps = []
    for name, res in results.items():
        if name.startswith("packing_bench"):
            sweeps += log_packing_sweeps(tracker.tracking_uri, args.experiment, res, stamp)
    print(f"logged {len(results)} result files to run {rid} in {args.tracking_uri} "
          f"(experiment {args.experiment!r}); packing sweeps: {', '.join(sweeps) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
