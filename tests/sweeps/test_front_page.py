"""pareto_front.html's table and data, read as text (tests/browser/ renders the page in Chromium)."""

from __future__ import annotations

import json
import re

from sweeps import front_page

OBJ = ["compression", "delta_m"]
DIRS = ["maximize", "maximize"]


def trials():
    return [{"run_id": f"run{i}", "trial_key": f"t{i}",
             "params": {"method": ["snip", "disparse_static"][i % 2], "sparsity": repr(0.5 + i / 7),
                        "lr": "0.001", "steps": "200", "dynamic.alpha0": "1e-05"},
             "metrics": {"compression": 0.933648242225463 - i / 31, "delta_m": -123456.789 * (i + 1),
                         "seg.miou": 0.5}}
            for i in range(3)]


def cells(page: str) -> list[list[tuple[str | None, str]]]:
    """The front table's rows as ``(title, text)`` pairs."""
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r'<td(?: class="?\w+"?)?(?: title="([^"]*)")?>([^<]*)</td>', row)
            for row in body.strip().splitlines()]


def test_the_table_shows_4_significant_digits_everywhere_and_keeps_the_exact_value_in_a_title(tmp_path):
    recs = trials()
    page = front_page.pareto_html(recs, {"run0", "run1"}, OBJ, DIRS, tmp_path / "f.html",
                                  param_keys=["method", "sparsity", "lr", "steps", "dynamic.alpha0"]).read_text()
    rows = cells(page)
    assert [row[1][1] for row in rows] == ["run0", "run1"]
    # trial, run id, compression, delta_m, method, sparsity, lr, steps, dynamic.alpha0
    assert [text for _, text in rows[0]] == ["t0", "run0", "0.9336", "-1.235e+5", "snip", "0.5", "0.001",
                                             "200", "1e-5"]
    assert [text for _, text in rows[1]][2:6] == ["0.9014", "-2.469e+5", "disparse_static", "0.6429"]
    titles = dict(zip(["compression", "delta_m", "sparsity"], (rows[1][2][0], rows[1][3][0], rows[1][5][0])))
    assert float(titles["compression"]) == recs[1]["metrics"]["compression"]      # exact, on hover
    assert float(titles["delta_m"]) == recs[1]["metrics"]["delta_m"]
    assert titles["sparsity"] == recs[1]["params"]["sparsity"]
    assert rows[0][7] == ("", "200") and rows[0][4] == ("", "snip")              # as they are: no title
    # no number in the table has more than 4 significant digits
    for row in rows:
        for _, text in row[2:]:
            digits = re.sub(r"e[+-]\d+$", "", text).lstrip("-").replace(".", "").lstrip("0")
            assert len(digits) <= 4 or not re.fullmatch(r"[-\d.e+]+", text), text
    # the plot's data keeps every metric exact (the tooltip rounds it like the table)
    blob = re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert data["points"][0]["m"]["compression"] == recs[0]["metrics"]["compression"]
    assert data["points"][1]["p"]["sparsity"] == "0.6429"


def test_objective_headers_say_their_direction_and_the_table_scrolls_in_its_own_box(tmp_path):
    recs = [dict(r, metrics={**r["metrics"], "normal.mean": 20.0}) for r in trials()]
    page = front_page.pareto_html(recs, {"run0"}, ["compression", "normal.mean"], ["maximize", "minimize"],
                                  tmp_path / "f.html").read_text()
    head = page.split("<thead>")[1].split("</thead>")[0]
    assert '<th title="maximize">compression &#8593;</th>' in head
    assert '<th title="minimize">normal.mean &#8595;</th>' in head
    assert '<div class="scroll"><table>' in page
