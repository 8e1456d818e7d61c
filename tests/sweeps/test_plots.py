"""Pareto pictures: PNGs, the self-contained interactive HTML, the mask-IoU chart (no MLflow)."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("matplotlib")
from sweeps import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
OBJ = ["compression", "seg.miou", "normal.mean"]
DIRS = ["maximize", "maximize", "minimize"]


def records(n=6):
    out = []
    for i in range(n):
        out.append({"run_id": f"run{i:02d}", "trial_key": f"t{i}",
                    "params": {"method": "disparse_dynamic", "sparsity": str(0.5 + i / 20), "seed": "0",
                               "dynamic.alpha0": str(0.1 * i)},
                    "config": {"workload": "scenes"},
                    "metrics": {"compression": 0.5 + i / 20, "seg.miou": 0.6 - i / 30, "seg.pixel_acc": 0.9,
                                "normal.mean": 20 + i, "normal.within_30": 0.7, "delta_m": -i * 1.0,
                                "sparsity": 0.5 + i / 20}})
    return out


def test_pngs_per_task_primary_metric_and_delta_m(tmp_path):
    recs = records()
    made = plots.pareto_pngs(recs, {"run00", "run05"}, OBJ, DIRS, tmp_path)
    names = sorted(p.name for p in made)
    assert names == ["pareto_compression_vs_delta_m.png", "pareto_compression_vs_normal.mean.png",
                     "pareto_compression_vs_seg.miou.png"]
    assert all(p.read_bytes()[:8] == PNG and p.stat().st_size > 1000 for p in made)


def test_primary_metric_prefers_objectives_then_known_order():
    recs = records()
    assert plots.task_primary_metrics(recs, ["seg.pixel_acc"]) == {"seg": "seg.pixel_acc",
                                                                   "normal": "normal.mean"}
    assert plots.task_primary_metrics(recs)["seg"] == "seg.miou"


def test_html_is_self_contained_and_holds_every_point(tmp_path):
    recs = records()
    front = {"run00", "run03"}
    path = plots.pareto_html(recs, front, OBJ, DIRS, tmp_path / "f.html", title="T </script> & co")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<select" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page) and "<link" not in page
    assert "T &lt;/script&gt; &amp; co" in page
    blob = re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert {p["run_id"] for p in data["points"]} == {r["run_id"] for r in recs}
    assert {p["run_id"] for p in data["points"] if p["front"]} == front
    assert data["x0"] == "compression" and "delta_m" in data["axes"]
    table = page.split("<tbody>")[1].split("</tbody>")[0]
    assert all(rid in table for rid in front) and "run01" not in table


def test_key_params_show_usual_then_varying():
    keys = plots.key_params(records())
    assert keys[:2] == ["method", "sparsity"] and "dynamic.alpha0" in keys and "seed" not in keys


def test_mask_iou_png(tmp_path):
    path = plots.mask_iou_png({"a.weight": 0.9, "b.weight": 0.5, "c.weight": 0.45}, tmp_path / "m.png", title="t")
    assert path.read_bytes()[:8] == PNG
    nested = plots.mask_iou_png({"a": {"seg-normal": 0.4}}, tmp_path / "n.png")
    assert nested.read_bytes()[:8] == PNG
    assert plots.mask_iou_png({}, tmp_path / "e.png") is None
