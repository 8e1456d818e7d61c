#!/usr/bin/env python
"""Screenshots of the MLflow UI over a sweep's store as a first visit shows it (for docs/images/).

    python scripts/mlflow_ui_screenshots.py --tracking-uri sqlite:////abs/path/mlflow.db [--sweep ID]

What it does, in order:

1. looks up the experiment and the sweep's run in the store (the latest sweep unless ``--sweep``);
2. starts ``mlflow ui --backend-store-uri URI --host 127.0.0.1 --port <free port> --workers 1`` (telemetry
   off) in its own process group and waits until ``/health`` answers;
3. opens, in a headless Chromium with a fresh profile (``scripts/headless_chromium.py``, the driver the
   browser tests use), the links the sweep prints (``sweeps.tracking.experiment_url`` and ``run_url``)
   and saves one PNG each to ``--out`` (default docs/images/):

   - ``mlflow_experiment.png``: the runs link, as it lands;
   - ``mlflow_nested_trials.png``: after one click on the ``+`` of the sweep's row;
   - ``mlflow_parent_run.png``: the sweep link (the sweep run's page, its description on top);
   - ``mlflow_sweep_front.png``: after one click on the description's *Show more*, scrolled to the front;
   - ``mlflow_trial_run.png``: the page of a trial on the front (its name links there from the sweep run),
     scrolled to its metrics;
   - ``mlflow_pareto_artifact.png``: the sweep run's ``pareto_front.html`` in its *Artifacts* tab;

   nothing on the page is closed or moved by the script: MLflow's Assistant panel stays open where a
   first visit opens it (the script says whether it was there);
4. stops the browser and the server by their process ids.

Needs ``chromium`` (Debian: ``apt-get install -y chromium``). See docs/mlflow-ui.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
for _folder in (HERE, REPO_ROOT):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from headless_chromium import EXPAND, Browser, BrowserUnavailable, MlflowUI, free_port  # noqa: E402

ASSISTANT_OPEN = "[...document.querySelectorAll('div, aside, section')].some(e => " \
                 "(e.innerText || '').startsWith('MLflow Assistant'))"
SHOW_MORE = """(() => {
  const button = [...document.querySelectorAll('button, a, span')].find(b => b.textContent.trim() === 'Show more');
  if (!button) return false;
  button.click();
  return true; })()"""
FRONT_IN_VIEW = """(() => {
  const table = [...document.querySelectorAll('table')].find(t => t.rows.length
    && t.rows[0].cells.length && t.rows[0].cells[0].textContent.trim() === 'trial');
  if (!table) return false;
  table.scrollIntoView({block: 'center'});
  return true; })()"""

METRICS_IN_VIEW = """(() => {
  const head = [...document.querySelectorAll('h1, h2, h3, h4, span, div')].find(e => e.children.length === 0
    && /^Metrics \\(\\d+\\)$/.test(e.textContent.trim()));
  if (!head) return false;
  head.scrollIntoView({block: 'start'});
  return true; })()"""


def sweep_runs(tracking_uri: str, experiment: str, sweep: str | None):
    """The experiment, the sweep's run and its trial runs; a ValueError names what is missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment {experiment!r} not found in {tracking_uri}; expected a sweep's store")
    where = "tags.`disparse.role` = 'sweep'" + (f" and tags.`disparse.sweep_id` = '{sweep}'" if sweep else "")
    parents = client.search_runs([exp.experiment_id], where, order_by=["attributes.start_time DESC"])
    if not parents:
        raise ValueError(f"--sweep {sweep!r} is not a sweep of experiment {experiment!r}" if sweep else
                         f"no sweep in experiment {experiment!r}; expected a finished sweep")
    parent = parents[0]
    sweep_id = parent.data.tags["disparse.sweep_id"]
    trials = client.search_runs([exp.experiment_id], "tags.`disparse.role` = 'trial' and "
                                f"tags.`disparse.sweep_id` = '{sweep_id}'", max_results=1000)
    return exp, parent, trials


def take(browser: Browser, out: Path, name: str, ok: bool, shots: list, settle: float = 2.0) -> None:
    time.sleep(settle)                       # let charts and fonts finish drawing
    browser.screenshot(out / name)
    shots.append((name, ok))


def main(argv=None) -> int:
    from sweeps.tracking import artifact_route, experiment_url, run_url, ui_base

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    ap.add_argument("--experiment", default="disparse-tune")
    ap.add_argument("--sweep", help="sweep id (default: the latest)")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "images"))
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--chromium", help="browser binary (default: chromium on PATH)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    args = ap.parse_args(argv)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        exp, parent, trials = sweep_runs(args.tracking_uri, args.experiment, args.sweep)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exp_id, run_id = exp.experiment_id, parent.info.run_id
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlflow-shots-"))
    port = args.port or free_port()
    ui = MlflowUI(args.tracking_uri, port, work / "mlflow-ui.log")
    browser = None
    shots: list[tuple[str, bool]] = []
    try:
        print(f"mlflow ui (pid {ui.proc.pid}) answered after {ui.wait():.1f}s at {ui.url}")
        try:
            browser = Browser(work / "chromium-profile", args.width, args.height, chromium=args.chromium)
        except BrowserUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ok = browser.open(experiment_url(exp_id, port=port), wait_for=parent.info.run_name, timeout=90)
        print("MLflow Assistant panel: " + ("open, as on a first visit" if browser.evaluate(ASSISTANT_OPEN)
                                            else "not shown"))
        take(browser, out, "mlflow_experiment.png", ok, shots)

        names = [t.info.run_name for t in trials]
        ok = bool(browser.evaluate(EXPAND % json.dumps(run_id))) and bool(browser.wait(
            f"{json.dumps(names)}.every(n => document.body.innerText.includes(n))", timeout=30))
        take(browser, out, "mlflow_nested_trials.png", ok, shots)

        ok = browser.open(run_url(exp_id, run_id, port=port), wait_for="Child runs", timeout=60)
        take(browser, out, "mlflow_parent_run.png", ok, shots)

        ok = bool(browser.evaluate(SHOW_MORE)) and bool(browser.wait(FRONT_IN_VIEW, timeout=20))
        take(browser, out, "mlflow_sweep_front.png", ok, shots, settle=1.0)

        front = sorted((t for t in trials if t.data.tags.get("disparse.pareto") == "true"),
                       key=lambda t: t.info.run_name)
        if front:
            ok = browser.open(run_url(exp_id, front[0].info.run_id, port=port), wait_for="Metrics (",
                              timeout=60) and bool(browser.evaluate(METRICS_IN_VIEW))
            take(browser, out, "mlflow_trial_run.png", ok, shots)

        artifact = f"{ui_base(port=port)}/{artifact_route(exp_id, run_id, 'pareto_front.html')}"
        ok = browser.open(artifact, wait_for="pareto_front.html", timeout=60)
        take(browser, out, "mlflow_pareto_artifact.png", ok, shots, settle=4.0)
    finally:
        if browser is not None:
            browser.close()
        ui.stop()
        print(f"mlflow ui stopped (pid {ui.proc.pid}, exit {ui.proc.returncode})")
    for name, ok in shots:
        print(f"{'saved' if ok else 'saved (page not confirmed)'}: {out / name}")
    print(f"sweep {parent.data.tags.get('disparse.sweep_id')}, experiment {exp.name} ({exp_id}), "
          f"sweep run {run_id}, {len(trials)} trials, window {args.width}x{args.height}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if len(shots) == 6 and all(ok for _, ok in shots) else 1


if __name__ == "__main__":
    sys.exit(main())
