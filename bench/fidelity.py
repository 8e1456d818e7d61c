"""Fidelity benchmark (issue 20): does DiSparse keep a multitask net better than the entangled methods a
user already has, compared like with like?

Three parts, every number from this one run (nothing is compared across runs):

1. **methods** — dense, random, magnitude (IMP), snip, disparse_static, rigl, disparse_dynamic on every
   built-in generated workload, at each sparsity, for each seed, with the trial defaults (the scoring and
   allotment defaults are the same for every one-shot criterion).
2. **options** — each static criterion (random, snip, disparse_static) under each scoring/allotment
   option set (``score_on`` × ``allotment``, plus the reference's global ranking without the layer
   floor), on the first workload at the options sparsity.
3. **loss weights** — how each criterion's masks move when the loss weights change (the workload's
   reference weights against equal weights), scored at init without training: the IoU of the two masks
   and the thinnest layer each task keeps.

Per trial: every task metric, achieved sparsity, min layer density, which tasks were cut off (a layer
the task uses keeps less than 1 % of the target density, i.e. empty or next to empty), and Δm against
the dense run of the same workload and seed. Paired per-seed differences with a 95 % t-interval:
DiSparse static − SNIP under the same options, DiSparse dynamic − RigL, DiSparse static − random at the
same allotment.

    python bench/fidelity.py                 # the full run (~45 min on 2 cores), writes
                                             # bench/results/fidelity.{json,md} and docs/images/fidelity.png
    python bench/fidelity.py --quick         # seconds: a smoke run of every part
    python bench/fidelity.py ... --resume    # after an interruption: train only what the journal lacks

Trials run in ``--jobs`` worker processes (default 2) with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, RESULTS_DIR, write_result  # noqa: E402
from fidelity_report import (METHODS, OPTION_SETS, STATIC, add_delta_m, comparisons,  # noqa: E402,F401
                             markdown, paired, plot, t975)

WORKLOADS = ("cues", "scenes", "digits")
WORKLOAD_SETTINGS = {
    "cues": {"steps": 1500},                       # its design's length (docs/data.md); 32 px, 4096/8192
    "scenes": {"image_size": 32},                  # 32 px (the demo uses 64) to fit the time budget
    "digits": {},
}
QUICK = {"steps": 4, "train_size": 64, "test_size": 32, "score_batches": 1, "batch_size": 8}
CUT_OFF = 0.01          # a layer a task uses keeping < 1 % of the target density cuts the task off


# ----------------------------------------------------------------------------------------- trials


def _config(workload: str, seed: int, method: str, sparsity: float, options: dict, quick: bool) -> dict:
    cfg = {"workload": workload, "seed": seed, "method": method, "sparsity": sparsity,
           "num_threads": 1, **WORKLOAD_SETTINGS.get(workload, {}), **options}
    if quick:
        cfg.update(QUICK)
        if workload == "scenes":
            cfg["image_size"] = 32
    cfg["eval_every"] = cfg.get("steps", 300)           # one evaluation: the final, whole test set
    return cfg


def _run(job: dict) -> dict:
    """One trial in a worker: the record the tables read (no model kept)."""
    import warnings
    from disparse_core.trial import run_trial
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_trial(job["config"])
    cfg = job["config"]
    target = 0.0 if cfg["method"] == "dense" else cfg["sparsity"]
    cut = [t for t, d in result["task_min_density"].items() if d < CUT_OFF * (1.0 - target)]
    metrics = {k: float(v) for k, v in result.items() if "." in k and isinstance(v, (int, float))}
    return {**{k: job[k] for k in ("part", "workload", "seed", "method", "sparsity", "option")},
            "metrics": metrics, "achieved_sparsity": float(result["sparsity"]),
            "min_layer_density": float(result["min_layer_density"]),
            "task_min_density": result["task_min_density"], "cut_off": cut,
            "watershed": result.get("watershed"), "mask_iou": result.get("mask_iou"),
            "wall_s": time.perf_counter() - t0}


def _effective_key(config: dict) -> str:
    """Configs that train the same trial share a key (run once, reported under every label): the
    trial defaults filled in, and for ``random`` the options it ignores (it has no scores, and a global,
    layer or iterative ranking of random scores is the uniform allotment)."""
    from disparse_core.trial import TrialConfig
    cfg = TrialConfig.from_dict(config)
    c = cfg.to_dict()
    c["score_on"] = cfg.resolved_score_on          # None (by method) and its value train the same trial
    if c["method"] in ("random", "dense"):
        c["score_on"], c["score_rounds"] = "weights", 5
        c["allotment"] = c["allotment"] if c["allotment"] in ("erk", "uniform") else c["distribution"]
        c["layer_floor"] = None if c["allotment"] == "uniform" else c["layer_floor"]
    if c["method"] == "dense" or c["method"] in ("rigl", "disparse_dynamic"):
        for k in ("score_on", "allotment", "layer_floor", "score_rounds"):
            c[k] = None
    if c["allotment"] != "iterative":
        c["score_rounds"] = None
    return json.dumps(c, sort_keys=True, default=str)


def _read_journal(path: Path) -> dict:
    """``{key: record}`` of the trials a journal holds (a torn last line is ignored)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[entry["key"]] = entry["record"]
    return out


def plan(workloads, seeds, sparsities, options_sparsity, option_sets, quick,
         methods=METHODS[1:], method_options=None) -> list[dict]:
    """Every trial to run, dense runs first (they are the Δm reference of their workload and seed)."""
    jobs = []

    def add(part, workload, seed, method, sparsity, option, keys):
        jobs.append({"part": part, "workload": workload, "seed": seed, "method": method,
                     "sparsity": sparsity, "option": option,
                     "config": _config(workload, seed, method, sparsity, keys, quick)})
        jobs[-1]["key"] = _effective_key(jobs[-1]["config"])

    for w in workloads:
        for s in seeds:
            add("methods", w, s, "dense", 0.0, "default", {})
    for w in workloads:
        for sp in sparsities:
            for s in seeds:
                for m in methods:
                    add("methods", w, s, m, sp, "default", dict(method_options or {}))
    for name in option_sets:
        for s in seeds:
            for m in STATIC:
                add("options", workloads[0], s, m, options_sparsity, name, OPTION_SETS[name])
    return jobs




def loss_weight_masks(workload: str, seeds, sparsity: float, quick: bool) -> list[dict]:
    """Masks at init under the workload's reference loss weights and under equal weights, per criterion
    (default options): IoU of the two masks and each task's thinnest layer under each weighting."""
    import warnings
    import torch
    from disparse_core.config import SCORE_ON_DEFAULT
    from disparse_core.data import build_workload
    from disparse_core.models import build_model
    from disparse_core.sparsify import sparsify
    from disparse_core.tasks import build_losses
    from disparse_core.trial import TrialConfig
    out = []
    for seed in seeds:
        base = _config(workload, seed, "snip", sparsity, {}, quick)
        cfg = TrialConfig.from_dict(base)
        kw = {k: v for k, v in (("image_size", cfg.image_size), ("train_size", cfg.train_size),
                                ("test_size", cfg.test_size)) if v is not None}
        wl = build_workload(workload, seed=seed, **kw)
        reference = {t: wl.loss_weights.get(t, 1.0) for t in wl.tasks}
        equal = {t: 1.0 for t in wl.tasks}
        loader = wl.train_loader(cfg.batch_size, seed=2 * seed + 1)
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == cfg.score_batches:
                break
        losses = build_losses(wl)
        for method in STATIC:
            masks, thin = {}, {}
            for label, weights in (("reference", reference), ("equal", equal)):
                torch.manual_seed(seed)
                model = build_model(cfg.arch, wl.task_channels, seed=seed, task_kinds=wl.task_kinds,
                                    in_channels=wl.in_channels)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = sparsify(model, batches, losses, sparsity=sparsity, method=method,
                                   loss_weights=weights, seed=seed, score_batches=cfg.score_batches,
                                   allotment=cfg.allotment, score_on=cfg.score_on or SCORE_ON_DEFAULT[method],
                                   floor=cfg.layer_floor, rounds=cfg.score_rounds,
                                   erk_power=cfg.dynamic.erk_power)
                masks[label] = res.masks
                thin[label] = {t: min((float(res.masks[n].float().mean()) for n, o in res.ownership.items()
                                       if t in o), default=1.0) for t in wl.tasks}
            inter = sum(int((masks["reference"][n] & masks["equal"][n]).sum()) for n in masks["equal"])
            union = sum(int((masks["reference"][n] | masks["equal"][n]).sum()) for n in masks["equal"])
            out.append({"workload": workload, "seed": seed, "method": method, "sparsity": sparsity,
                        "reference_weights": reference, "mask_iou_reference_vs_equal": inter / union,
                        "task_min_density": thin})
    return out


# -------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of every part (seconds)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--sparsities", default="0.8,0.9,0.95")
    parser.add_argument("--options-sparsity", type=float, default=0.9)
    parser.add_argument("--option-sets", default=",".join(OPTION_SETS))
    parser.add_argument("--parts", default="methods,options,weights")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--with-options", default=None, metavar="OPTION_SET",
                        help="run the methods part with this option set (OPTION_SETS) instead of the "
                             "trial defaults, e.g. to evaluate a set the options part selected")
    parser.add_argument("--methods", default=",".join(METHODS[1:]),
                        help="the sparse methods of the methods part (dense always runs)")
    parser.add_argument("--analyse-only", action="store_true",
                        help="train nothing: the tables from the journal's trials (implies --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the trials already in the journal (<out>.jsonl) and train the rest")
    parser.add_argument("--out", default=str(RESULTS_DIR / "fidelity.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "images" / "fidelity.png"))
    args = parser.parse_args(argv)
    args.resume = args.resume or args.analyse_only
    methods = [m for m in args.methods.split(",") if m]
    if [m for m in methods if m not in METHODS[1:]]:
        parser.error(f"--methods: expected some of {', '.join(METHODS[1:])}, got {args.methods!r}")
    workloads = [w for w in args.workloads.split(",") if w]
    sparsities = [float(s) for s in args.sparsities.split(",") if s]
    option_sets = [o for o in args.option_sets.split(",") if o]
    parts = set(args.parts.split(","))
    unknown = [o for o in option_sets if o not in OPTION_SETS]
    if unknown:
        parser.error(f"--option-sets: unknown {unknown[0]!r} (known: {', '.join(OPTION_SETS)})")
    if args.quick:
        workloads, sparsities = workloads[:1], sparsities[:1]
        option_sets = option_sets[:2]
        args.seeds = min(args.seeds, 2)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.with_options is not None and args.with_options not in OPTION_SETS:
        parser.error(f"--with-options: unknown {args.with_options!r} (known: {', '.join(OPTION_SETS)})")
    jobs = plan(workloads, seeds, sparsities if "methods" in parts else [], args.options_sparsity,
                option_sets if "options" in parts else [], args.quick, methods,
                OPTION_SETS.get(args.with_options, {}))
    started = time.perf_counter()
    for w in workloads:                    # generate and cache the data once, before the workers start
        from disparse_core.data import build_workload
        for s in seeds:
            kw = {k: v for k, v in _config(w, s, "dense", 0.0, {}, args.quick).items()
                  if k in ("image_size", "train_size", "test_size")}
            build_workload(w, seed=s, **kw)
    unique = list({job["key"]: job for job in reversed(jobs)}.values())[::-1]   # first of each key
    # every finished trial is appended to the journal at once: an interrupted run loses nothing, and a
    # rerun with the same journal trains only what is missing (same code, same keys)
    journal = Path(args.out).with_suffix(".jsonl")
    journal.parent.mkdir(parents=True, exist_ok=True)
    trained = _read_journal(journal) if args.resume else {}
    if not args.resume and journal.exists():
        journal.unlink()
    todo = [] if args.analyse_only else [job for job in unique if job["key"] not in trained]
    print(f"{len(unique)} distinct trials ({len(jobs)} labelled), {len(unique) - len(todo)} from "
          f"{journal.name}, {len(todo)} to train", flush=True)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = {pool.submit(_run, job): job for job in todo}
        for done, future in enumerate(as_completed(futures), 1):
            job, record = futures[future], future.result()
            trained[job["key"]] = record
            with journal.open("a") as fh:
                fh.write(json.dumps({"key": job["key"], "record": record}, default=float) + "\n")
            print(f"[{time.perf_counter() - started:7.1f}s] {done}/{len(todo)} {record['workload']} "
                  f"{record['method']} {record['sparsity']:g} {record['option']} seed {record['seed']} "
                  f"({record['wall_s']:.1f}s)", flush=True)
    records = [{**trained[job["key"]], **{k: job[k] for k in ("part", "option")}} for job in jobs
               if job["key"] in trained]
    add_delta_m(records)
    weight_rows = (loss_weight_masks(workloads[0], seeds, args.options_sparsity, args.quick)
                   if "weights" in parts else [])
    comps = comparisons(records, workloads, sparsities if "methods" in parts else [],
                        args.options_sparsity, option_sets if "options" in parts else [])
    meta = {"workloads": workloads, "seeds": seeds, "sparsities": sparsities, "trained": len(unique),
            "with_options": args.with_options,
            "options_sparsity": args.options_sparsity, "option_sets": option_sets, "jobs": args.jobs,
            "quick": args.quick, "elapsed_s": time.perf_counter() - started}
    path = write_result("fidelity", {**meta, "records": records, "comparisons": comps,
                                     "loss_weights": weight_rows}, args.out)
    full = json.loads(path.read_text())
    md = markdown(records, comps, weight_rows, {**meta, "date": full["date"], "machine": full["machine"]})
    path.with_suffix(".md").write_text(md)
    if "methods" in parts and args.plot:
        plot(records, meta, Path(args.plot))
    print(md)
    print(f"wrote {path} and {path.with_suffix('.md')}" + (f" and {args.plot}" if args.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
