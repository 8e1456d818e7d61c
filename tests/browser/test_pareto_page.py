"""pareto_front.html rendered in headless Chromium: it fits a 1280-px window, its points and front rows
are the sweep's trials as MLflow holds them, and its axis pickers redraw the plot."""

from __future__ import annotations

import json

import pytest

from sweeps import front_page

WIDTH = 1280                       # the browser fixture's window

POINTS = """[...document.querySelectorAll('#plot circle')].map(c => ({run: c.dataset.run,
  front: c.classList.contains('front'), cx: +c.getAttribute('cx'), cy: +c.getAttribute('cy')}))"""
ROWS = """[...document.querySelectorAll('table tbody tr')].map(r => [...r.cells].map(c => [c.textContent,
  c.title]))"""
AXIS_LABELS = """[...document.querySelectorAll('#plot text.lab')].map(t => t.textContent)"""
FITS = """(() => { const box = document.querySelector('.scroll').getBoundingClientRect();
  return {page: document.documentElement.scrollWidth, right: box.right,
          inner: document.querySelector('.scroll').scrollWidth, shown: document.querySelector('.scroll').clientWidth,
          plot: document.getElementById('plot').getBoundingClientRect().right}; })()"""


def varying_axis(browser, metrics: dict, besides) -> str:
    """An axis the pickers offer, other than ``besides``, whose value differs between the trials."""
    offered = browser.evaluate("[...document.getElementById('xsel').options].map(o => o.value)")
    for key in offered:
        if key not in besides and len({m.get(key) for m in metrics.values()}) > 1:
            return key
    raise AssertionError(f"no other varying axis among {offered}")


def pick(browser, select: str, value: str) -> None:
    """Choose ``value`` in the picker ``select`` as a user would (the page listens to ``change``)."""
    done = browser.evaluate(f"""(() => {{ const s = document.getElementById({json.dumps(select)});
      if (![...s.options].some(o => o.value === {json.dumps(value)})) return false;
      s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); return true; }})()""")
    assert done, f"{value!r} is not offered by the {select} picker"


def assert_plotted(points, metrics: dict, key: str, coord: str) -> None:
    """The ``coord`` of every point is one increasing (x) or decreasing (y) linear map of ``key``."""
    values = {p["run"]: metrics[p["run"]][key] for p in points}
    lo, hi = min(points, key=lambda p: values[p["run"]]), max(points, key=lambda p: values[p["run"]])
    assert values[hi["run"]] > values[lo["run"]], f"{key} is the same for every trial: cannot check the map"
    scale = (hi[coord] - lo[coord]) / (values[hi["run"]] - values[lo["run"]])
    assert scale > 0 if coord == "cx" else scale < 0, (key, coord, scale)
    for p in points:
        assert p[coord] == pytest.approx(lo[coord] + scale * (values[p["run"]] - values[lo["run"]]), abs=0.5), \
            (key, p, values[p["run"]])


def test_a_front_page_with_many_params_fits_1280_px_and_its_table_scrolls_in_its_own_box(browser, tmp_path):
    records = [{"run_id": f"{i:032x}", "trial_key": f"t{i:04d}",
                "params": {f"model.some_long_parameter_name_{j}": repr(0.123456789 * (i + j + 1))
                           for j in range(16)},
                "metrics": {"compression": 0.5 + i / 10, "delta_m": -0.33333333 * i}} for i in range(5)]
    page = front_page.pareto_html(records, {r["run_id"] for r in records}, ["compression", "delta_m"],
                                  ["maximize", "maximize"], tmp_path / "wide.html")
    assert browser.open(page.as_uri(), wait_for="Pareto front (5 trials)")
    fit = browser.evaluate(FITS)
    assert fit["page"] <= WIDTH and fit["right"] <= WIDTH and fit["plot"] <= WIDTH, fit
    assert fit["inner"] > fit["shown"], f"the table should be wider than its box here: {fit}"
    first = browser.evaluate(ROWS)[0]
    assert [text for text, _ in first[2:5]] == ["0.5", "0", "0.1235"]          # 4 significant digits


@pytest.mark.slow
def test_the_sweeps_front_page_plots_its_trials_lists_its_front_and_redraws_on_each_pick(browser, sweep,
                                                                                         tmp_path):
    html = sweep.client.download_artifacts(sweep.parent.info.run_id, "pareto_front.html", str(tmp_path))
    trained = {r.info.run_id: r for r in sweep.trials if r.info.status == "FINISHED"
               and r.data.tags.get("disparse.early_stopped") != "true"}
    front = {run_id for run_id, r in trained.items() if r.data.tags.get("disparse.pareto") == "true"}
    metrics = {run_id: r.data.metrics for run_id, r in trained.items()}
    assert len(trained) == 4 and front

    assert browser.open(f"file://{html}", wait_for=f"Pareto front ({len(front)} trials)")
    fit = browser.evaluate(FITS)
    assert fit["page"] <= WIDTH and fit["right"] <= WIDTH, fit
    points = browser.evaluate(POINTS)
    assert sorted(p["run"] for p in points) == sorted(trained)
    assert {p["run"] for p in points if p["front"]} == front
    x0, y0 = browser.evaluate("['xsel', 'ysel'].map(id => document.getElementById(id).value)")
    assert (x0, y0) == ("compression", "delta_m")
    assert_plotted(points, metrics, "compression", "cx")
    assert_plotted(points, metrics, "delta_m", "cy")

    rows = browser.evaluate(ROWS)                 # trial, run id, compression, delta_m, params...
    assert sorted(row[1][0] for row in rows) == sorted(front)
    for row in rows:
        run = trained[row[1][0]]
        assert row[0][0] == run.data.tags["disparse.trial_key"]
        for (text, title), key in zip(row[2:4], ("compression", "delta_m")):
            value = run.data.metrics[key]
            assert float(text) == pytest.approx(value, rel=5e-4, abs=1e-12)      # shown rounded
            assert float(title or text) == value                                  # exact on hover

    y1 = varying_axis(browser, metrics, ("compression", "delta_m"))
    pick(browser, "ysel", y1)
    after = browser.evaluate(POINTS)
    assert browser.evaluate(AXIS_LABELS)[1].startswith(y1)                       # the y label follows
    assert [p["cx"] for p in after] == [p["cx"] for p in points]                  # x unchanged
    assert_plotted(after, metrics, y1, "cy")
    x1 = varying_axis(browser, metrics, ("compression", y1))
    pick(browser, "xsel", x1)
    assert browser.evaluate(AXIS_LABELS)[0].startswith(x1)
    assert_plotted(browser.evaluate(POINTS), metrics, x1, "cx")
    browser.evaluate("document.getElementById('frontonly').click()")
    assert sorted(p["run"] for p in browser.evaluate(POINTS)) == sorted(front)
