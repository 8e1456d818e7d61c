"""The MLflow UI over a real sweep's store, in headless Chromium: the pages the sweep links to show its
trials, and the sweep run's description its front, each trial a link to its run. The UI is ``mlflow ui``
on 127.0.0.1 on a free port (the ``mlflow_ui`` fixture)."""

from __future__ import annotations

import json

import pytest

from headless_chromium import EXPAND  # scripts/, on the path by conftest.py
from sweeps.tracking import experiment_url, run_url

pytestmark = pytest.mark.slow

ROW_IDS = "[...new Set([...document.querySelectorAll('[role=row][row-id]')].map(r => r.getAttribute('row-id')))]"


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


FRONT_TABLE = """(() => {
  const table = [...document.querySelectorAll('table')].find(t => t.rows.length && t.rows[0].cells.length
    && t.rows[0].cells[0].textContent.trim() === 'trial' && t.rows[0].textContent.includes(%s));
  if (!table) return null;
  return [...table.rows].map(r => [...r.cells].map(c => {
    const a = c.querySelector('a'); return [c.textContent.trim(), a ? a.href : null, a ? a.target : null]; })); })()"""


def test_the_sweep_runs_description_shows_the_front_as_a_table_whose_trials_open_in_one_click(browser, sweep,
                                                                                              mlflow_ui):
    parent = sweep.parent
    assert parent.data.tags.get("mlflow.note.content"), "the sweep run has no description"
    front = {r.info.run_name: r for r in sweep.trials if r.data.tags.get("disparse.pareto") == "true"}
    assert front
    assert browser.open(run_url(sweep.experiment_id, parent.info.run_id, port=mlflow_ui.port),
                        wait_for="Pareto front", timeout=90), browser.text()[:2000]
    rows = browser.wait(FRONT_TABLE % json.dumps("compression"), timeout=30)
    assert rows, f"no rendered front table in the description: {browser.text()[:3000]}"
    head, body = [cell[0] for cell in rows[0]], rows[1:]
    assert head[1:3] == ["compression ↑", "delta_m ↑"], head
    assert sorted(row[0][0] for row in body) == sorted(front)
    for row in body:
        run = front[row[0][0]]
        assert f"/runs/{run.info.run_id}" in row[0][1], row[0]          # the name links to the trial's page
        for (text, *_), key in zip(row[1:3], ("compression", "delta_m")):
            assert float(text) == pytest.approx(run.data.metrics[key], rel=1e-3)
    # a trial's name opens its run page (MLflow's markdown opens links in a new tab: follow the address)
    name, href, opens_in = body[0][0]
    target = front[name]
    assert opens_in == "_blank"
    assert href.startswith(mlflow_ui.url + "/#/experiments/") and href.endswith("workflowType=machine_learning")
    assert browser.open(href, wait_for=target.info.run_id, timeout=60), browser.text()[:2000]
    assert browser.wait("document.body.innerText.includes('on the Pareto front')", timeout=30), \
        browser.text()[:2000]


def test_the_descriptions_filter_links_show_the_front_and_the_trials_within_budgets_as_rows(browser, sweep,
                                                                                           mlflow_ui):
    parent = sweep.parent
    expected = {"the front": {r.info.run_id for r in sweep.trials if r.data.tags.get("disparse.pareto") == "true"},
                "the trials within the budgets": {r.info.run_id for r in sweep.trials
                                                  if r.data.tags.get("disparse.within_budgets") == "true"}}
    assert expected["the front"]
    assert browser.open(run_url(sweep.experiment_id, parent.info.run_id, port=mlflow_ui.port),
                        wait_for="Pareto front", timeout=90), browser.text()[:2000]
    links = browser.wait(f"""(() => {{ const found = [...document.querySelectorAll('a')]
      .filter(a => {json.dumps(sorted(expected))}.includes(a.textContent.trim()))
      .map(a => [a.textContent.trim(), a.href]); return found.length === 2 && found; }})()""", timeout=30)
    assert links, "the description links neither the front nor the trials within the budgets"
    for text, href in links:
        assert browser.open(href, timeout=60)
        # the matching trials are rows of their own (not hidden under the collapsed sweep), and only they
        want = sorted(expected[text])
        want_js = json.dumps(json.dumps(want, separators=(",", ":")))         # as JSON.stringify writes it
        count = f"/(^|\\D){len(want)} matching runs?/.test(document.body.innerText)"
        tag = "pareto" if text == "the front" else "within_budgets"        # the filter reached the search box
        count += f" && [...document.querySelectorAll('input')].some(i => i.value.includes('disparse.{tag}'))"
        rows = browser.wait(f"(() => {{ const ids = {ROW_IDS}.sort(); "
                            f"return {count} && JSON.stringify(ids) === {want_js}; }})()", timeout=60)
        assert rows, (text, browser.evaluate(ROW_IDS), want)
        assert all(r.info.run_name in browser.text() for r in sweep.trials if r.info.run_id in expected[text])
