"""The MLflow UI over a real sweep's store, in headless Chromium: the pages the sweep links to show its
trials. The UI is ``mlflow ui`` on 127.0.0.1 on a free port (the ``mlflow_ui`` fixture)."""

from __future__ import annotations

import json

import pytest

from sweeps.tracking import experiment_url, run_url

pytestmark = pytest.mark.slow

ROW_IDS = "[...new Set([...document.querySelectorAll('[role=row][row-id]')].map(r => r.getAttribute('row-id')))]"
EXPAND = """(() => {
  const row = document.querySelector('[role=row][row-id=%s]');
  const button = row && row.querySelector('button[data-component-id*="runnamecellrenderer"]');
  if (!button) return false;
  button.click();
  return true; })()"""


def assert_printed(sweep, url: str) -> None:
    """The sweep printed ``url`` (built for the ``mlflow ui`` command it prints, on port 5000)."""
    assert url in sweep.printed.split(), f"the sweep did not print {url}:\n{sweep.printed}"


def test_the_runs_link_opens_the_sweeps_runs_table_and_its_row_unfolds_into_the_trials(browser, sweep,
                                                                                        mlflow_ui):
    parent = sweep.parent
    assert_printed(sweep, experiment_url(sweep.experiment_id))
    link = experiment_url(sweep.experiment_id, port=mlflow_ui.port)        # the same page, our server
    assert browser.open(link, wait_for=parent.info.run_name, timeout=90), browser.text()[:2000]
    assert parent.info.run_id in browser.evaluate(ROW_IDS)          # a row of the runs table, not traces
    # one click on the sweep's row unfolds its trials, each by its run id and its name
    assert browser.evaluate(EXPAND % json.dumps(parent.info.run_id)), "no expander on the sweep's row"
    trials = {r.info.run_id: r.info.run_name for r in sweep.trials}
    listed = browser.wait(f"(() => {{ const ids = {ROW_IDS}; "
                          f"return {json.dumps(sorted(trials))}.every(id => ids.includes(id)) && ids; }})()",
                          timeout=30)
    assert listed, f"trials not listed: {browser.evaluate(ROW_IDS)}"
    text = browser.text()
    assert all(name in text for name in trials.values()), text[:2000]


def test_the_sweep_link_opens_the_parent_run_with_its_trials_as_child_runs(browser, sweep, mlflow_ui):
    parent = sweep.parent
    assert_printed(sweep, run_url(sweep.experiment_id, parent.info.run_id))
    link = run_url(sweep.experiment_id, parent.info.run_id, port=mlflow_ui.port)
    assert browser.open(link, wait_for="Child runs", timeout=90), browser.text()[:2000]
    names = sorted(r.info.run_name for r in sweep.trials)
    listed = browser.wait(f"""(() => {{ const t = document.body.innerText.split('Child runs')[1] || '';
      return {json.dumps(names)}.every(n => t.includes(n)); }})()""", timeout=30)
    assert listed, browser.text().split("Child runs", 1)[-1][:1000]
