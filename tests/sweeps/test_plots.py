"""Pareto pictures: PNGs, the self-contained interactive HTML, the mask-IoU chart (no MLflow)."""

from __future__ import annotations

import json
import re

from sweeps import front_page, plots

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


RED, GREY, BLUE = "#d93025", "#9aa0a6", "#1a73e8"        # the Pareto PNGs: plane front, other trials, rings
TAB_BLUE, TAB_RED = "#1f77b4", "#d62728"                 # the mask-IoU chart: bars, the watershed bar


def pixels(path, colour: str, tol: float = 0.02) -> int:
    """How many pixels of the PNG at ``path`` have ``colour`` (``#rrggbb``, each channel within ``tol``)."""
    import numpy as np
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100     # a decoded picture
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return int((np.abs(image[..., :3] - rgb) <= tol).all(axis=-1).sum())


def test_pngs_per_task_primary_metric_and_delta_m(tmp_path):
    recs = records()
    made = plots.pareto_pngs(recs, {"run00", "run05"}, OBJ, DIRS, tmp_path)
    names = sorted(p.name for p in made)
    assert names == ["pareto_compression_vs_delta_m.png", "pareto_compression_vs_normal.mean.png",
                     "pareto_compression_vs_seg.miou.png"]
    # every trial is on each plane's front (red), two are ringed as the sweep's front (blue); none grey
    for path in made:
        assert pixels(path, RED) > 50 and pixels(path, BLUE) > 20 and pixels(path, GREY) == 0, path.name
    dominated = {"run_id": "runD", "trial_key": "tD", "params": {}, "config": {},
                 "metrics": {"compression": 0.5, "seg.miou": 0.1, "normal.mean": 40.0, "delta_m": -20.0}}
    (tmp_path / "d").mkdir()
    again = plots.pareto_pngs(recs + [dominated], {"run00", "run05"}, OBJ, DIRS, tmp_path / "d")
    assert len(again) == 3 and all(pixels(path, GREY) > 10 for path in again)   # the one grey trial


def test_primary_metric_prefers_objectives_then_known_order():
    recs = records()
    assert plots.task_primary_metrics(recs, ["seg.pixel_acc"]) == {"seg": "seg.pixel_acc",
                                                                   "normal": "normal.mean"}
    assert plots.task_primary_metrics(recs)["seg"] == "seg.miou"


def test_html_is_self_contained_and_holds_every_point(tmp_path):
    recs = records()
    front = {"run00", "run03"}
    path = front_page.pareto_html(recs, front, OBJ, DIRS, tmp_path / "f.html", title="T </script> & co")
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


def test_key_params_show_varying_then_usual_constants():
    keys = plots.key_params(records())
    assert keys == ["sparsity", "dynamic.alpha0", "method"]                 # seed varies, but is noise


# The demo space's constants (search_spaces/dynamic.yaml and the usual ones): 14 params the old
# key_params put first, hiding the sampled loss weight behind its limit.
CONSTANTS = {"method": "disparse_dynamic", "criterion": "snip", "gradual.prune_steps": "3",
             "gradual.interval": "10", "dynamic.delta_t": "25", "dynamic.t_end_frac": "0.75",
             "dynamic.decay": "cosine", "dynamic.grow": "exact", "dynamic.erk_power": "1.0", "steps": "200",
             "cutoff": "8", "dynamic.alpha0": "0.3", "lr": "0.001", "sparsity": "0.8"}


def sampled(n=4, **over):
    recs = []
    for i in range(n):
        params = {**CONSTANTS, "loss_weights.normal": str(1.5 + i), "score_batches": str(2 + i % 2),
                  "seed": str(i), "checkpoint_dir": f"/tmp/c{i}", "export_path": f"/tmp/e{i}",
                  "baseline_metrics": f'{{"seg.miou": {i}}}', **over}
        recs.append({"run_id": f"run{i:02d}", "trial_key": f"t{i}", "params": params,
                     "metrics": {"compression": 0.5 + i / 10, "seg.miou": 0.6 - i / 30}})
    return recs


def test_key_params_put_every_sampled_param_before_constants():
    recs = sampled()
    keys = plots.key_params(recs)
    assert len(keys) == plots._MAX_KEY_PARAMS
    assert keys[:2] == ["loss_weights.normal", "score_batches"]              # varying: shown first
    assert keys[2:] == list(plots._KEY_PARAMS[:8])                           # then usual constants
    every = plots.key_params(recs, limit=None)
    assert every == ["loss_weights.normal", "score_batches", *plots._KEY_PARAMS]
    assert not {"seed", "checkpoint_dir", "export_path", "baseline_metrics"} & set(every)


def test_key_params_of_one_front_member_count_variety_over_the_sweep():
    recs = sampled(sparsity="0.9")
    recs[0]["params"]["sparsity"] = "0.7"
    front = recs[:1]
    assert "loss_weights.normal" not in plots.key_params(front)             # alone, nothing varies
    keys = plots.key_params(front, among=recs)
    assert keys[:3] == ["sparsity", "loss_weights.normal", "score_batches"] and keys[3] == "method"


def test_key_params_a_conditional_param_varies_and_an_empty_run_changes_nothing():
    recs = sampled(2)
    recs[1]["params"]["gradual.initial_sparsity"] = "0.2"                   # sampled for one trial only
    recs.append({"run_id": "bare", "params": {}, "metrics": {}})            # a run whose params never came
    keys = plots.key_params(recs, limit=None)
    assert keys[:3] == ["gradual.initial_sparsity", "loss_weights.normal", "score_batches"]
    assert keys[3:] == list(plots._KEY_PARAMS)


def test_key_params_leave_out_a_param_no_shown_row_has():
    """A front of trials without the conditional param another method sampled: no empty column for it,
    and the param that does vary on the front is not pushed out by the limit."""
    recs = sampled(3)
    recs[0]["params"]["pretrain_steps"] = "100"                             # only the off-front trial
    front = recs[1:]
    front[0]["params"]["score_batches"], front[1]["params"]["score_batches"] = "1", "4"
    keys = plots.key_params(front, among=recs, limit=None)
    assert "pretrain_steps" not in keys and "score_batches" in keys
    assert "pretrain_steps" in plots.key_params(recs, limit=None)


def test_html_table_lists_every_sampled_param_then_the_usual_constants(tmp_path):
    page = front_page.pareto_html(sampled(), {"run00"}, ["compression", "seg.miou"],
                                  ["maximize", "maximize"], tmp_path / "f.html").read_text()
    head = page.split("<thead>")[1].split("</thead>")[0]
    params = ["loss_weights.normal", "score_batches", *plots._KEY_PARAMS]
    assert head.endswith("".join(f"<th>{k}</th>" for k in params) + "</tr>")


def test_mask_iou_png(tmp_path):
    path = plots.mask_iou_png({"a.weight": 0.9, "b.weight": 0.5, "c.weight": 0.45}, tmp_path / "m.png", title="t")
    assert pixels(path, TAB_BLUE) > 100 and pixels(path, TAB_RED) > 50        # bars, the watershed's red
    nested = plots.mask_iou_png({"a": {"seg-normal": 0.4}}, tmp_path / "n.png")
    assert pixels(nested, TAB_BLUE) > 100 and pixels(nested, TAB_RED) == 0    # one bar, no watershed
    assert plots.mask_iou_png({}, tmp_path / "e.png") is None


def test_each_task_plot_highlights_the_front_of_its_own_two_metrics():
    """The sweep's front over (compression, delta_m) is not the front of compression against one task:
    B is on the sweep's front but C beats it on both compression and seg.miou."""
    recs = [{"run_id": name, "metrics": {"compression": c, "seg.miou": m, "normal.mean": n}}
            for name, c, m, n in (("A", 0.9, 0.30, 30.0), ("B", 0.8, 0.50, 20.0), ("C", 0.85, 0.60, 25.0))]
    assert plots.plane_front(recs, "compression", "seg.miou", ["maximize", "maximize"]) == {"A", "C"}
    assert plots.plane_front(recs, "compression", "normal.mean", ["maximize", "minimize"]) == {"A", "B", "C"}
    recs.append({"run_id": "N", "metrics": {"compression": 0.99, "seg.miou": float("nan")}})
    assert plots.plane_front(recs, "compression", "seg.miou", ["maximize", "maximize"]) == {"A", "C"}
