"""Core cost benchmark: masked vs dense training step, and one dynamic prune/grow update.

(a) ``masked_step_ratio``: a training step (zero_grad, forward, T losses, backward, Adam step) of the
    model with masks attached (``DynamicSparsifier`` on a non-update step) over the same step of the
    same dense model. Goal <= 1.03.
(b) ``update_cost_dense_steps``: what one prune/grow update adds to a training step, in dense-step
    units: ``(update step - masked step) / dense step`` (goal <= 2; the reference's deepcopy +
    optimizer rebuild costs ~22). ``update_step_dense_steps`` is the whole update step (forward, T
    backward passes, prune/grow, optimizer step) over a dense step.

Timings are medians over many steps; dense, masked and update steps are interleaved round by round
so that drift (thermal, other processes) hits all of them alike. Not a test: run it by hand.

    python bench/core_bench.py                      # CPU, small net, writes bench/results/core_bench_cpu.json
    python bench/core_bench.py --device cuda --arch deeplab_resnet34 --size 321
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

from _common import machine_info, sync  # noqa: E402  (adds the repo to sys.path)

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from disparse_core.dynamic import DynamicSparsifier  # noqa: E402
from disparse_core.masks import sparsity_report  # noqa: E402
from disparse_core.models import build_model  # noqa: E402

TASKS = {"seg": 5, "depth": 1, "normal": 3}
LOSSES = {
    "seg": lambda out, y: F.cross_entropy(out, y),
    "depth": lambda out, y: F.l1_loss(out, y),
    "normal": lambda out, y: F.mse_loss(out, y),
}


def make_batch(batch: int, size: int, tasks, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = {"seg": torch.randint(0, TASKS["seg"], (batch, size, size), generator=g),
         "depth": torch.rand(batch, 1, size, size, generator=g),
         "normal": F.normalize(torch.randn(batch, 3, size, size, generator=g), dim=1)}
    return x.to(device), {t: y[t].to(device) for t in tasks}


def build(args, tasks, seed=0):
    return build_model(args.arch, {t: TASKS[t] for t in tasks}, width=args.width, seed=seed).to(args.device)


def dense_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    out = model(x)
    sum(LOSSES[t](out[t], y[t]) for t in out).backward()
    opt.step()


def sparse_step(sp, opt, step, x, y):
    opt.zero_grad(set_to_none=True)
    sp.forward_backward(step, x, y)
    opt.step()


def timed(fn, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). On a shared, loaded CPU the CPU time is the
    steadier measure (other processes' load inflates wall time, not our CPU time)."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def machine() -> dict:
    """``_common.machine_info()`` (the other benchmarks' machine record) plus the keys this script's
    JSON has always had: ``processor`` (= ``cpu``), ``cpu_count`` (= ``cores``), ``platform_processor``
    and the head of torch's ``parallel_info``. ``gpu`` is ``None`` without CUDA."""
    info = machine_info()
    info.update(processor=info["cpu"], platform_processor=platform.processor(), cpu_count=info["cores"],
                parallel_info=torch.__config__.parallel_info().splitlines()[:4])
    return info


def run(args) -> dict:
    tasks = list(TASKS)[: args.tasks]
    device = torch.device(args.device)
    x, y = make_batch(args.batch, args.size, tasks, device)
    losses = {t: LOSSES[t] for t in tasks}

    dense = build(args, tasks)
    masked = build(args, tasks)
    updating = build(args, tasks)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=5e-4) for m in (dense, masked, updating)]
    far = 10 ** 9
    sp_masked = DynamicSparsifier(masked, opts[1], losses, sparsity=args.sparsity, t_end=far,
                                  delta_t=far - 1, sample_batch=x, grow=args.grow)
    # every even step is an update step (delta_t=2); odd steps are ordinary masked steps
    sp_update = DynamicSparsifier(updating, opts[2], losses, sparsity=args.sparsity, t_end=far,
                                  delta_t=2, alpha0=0.3, decay="constant", sample_batch=x, grow=args.grow)

    for i in range(args.warmup):  # allocator, autotuning, Adam state
        dense_step(dense, opts[0], x, y)
        sparse_step(sp_masked, opts[1], 2 * i + 1, x, y)
        sparse_step(sp_update, opts[2], 2 * i + 1, x, y)
        sparse_step(sp_update, opts[2], 2 * i + 2, x, y)

    t_dense, t_masked, t_update, t_plain = [], [], [], []
    step = 2 * args.warmup
    for r in range(args.rounds):
        jobs = [
            (t_dense, lambda: dense_step(dense, opts[0], x, y)),
            (t_masked, lambda: sparse_step(sp_masked, opts[1], 1, x, y)),
            (t_update, lambda: sparse_step(sp_update, opts[2], step + 2, x, y)),
            (t_plain, lambda: sparse_step(sp_update, opts[2], step + 1, x, y)),
        ]
        if r % 2:
            jobs.reverse()
        for sink, fn in jobs:
            sink.append(timed(fn, device))
        step += 2

    series = {"dense": t_dense, "masked": t_masked, "update": t_update, "masked_plain": t_plain}
    med = {k: statistics.median(w for w, _ in v) for k, v in series.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in series.items()}
    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {"arch": args.arch, "width": args.width, "tasks": tasks, "batch": args.batch,
                   "size": args.size, "sparsity": args.sparsity, "grow": args.grow,
                   "rounds": args.rounds, "warmup": args.warmup, "device": str(device),
                   "update_alpha": 0.3},
        "prunable_weights": sparsity_report(masked)["total"],
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "median_s": med,
        "median_cpu_s": cpu,
        "masked_step_ratio": med["masked"] / med["dense"],
        "update_cost_dense_steps": (med["update"] - med["masked_plain"]) / med["dense"],
        "update_step_dense_steps": med["update"] / med["dense"],
        "cpu_time": {"masked_step_ratio": cpu["masked"] / cpu["dense"],
                     "update_cost_dense_steps": (cpu["update"] - cpu["masked_plain"]) / cpu["dense"],
                     "update_step_dense_steps": cpu["update"] / cpu["dense"]},
        "density_after_updates": sp_update.density,
        "target_density": 1.0 - args.sparsity,
    }
    result["mask_overhead"] = mask_overhead(dense, masked, device, med["dense"])
    result["union_overshoot"] = union_overshoot(args, tasks, x, y, losses)
    return result


def mask_overhead(dense, masked, device, dense_step_s: float, reps: int = 200) -> dict:
    """The masks' own work per step, isolated from the convolutions: read every prunable weight
    (parametrize + ``weight * mask``) and backpropagate through it, masked model minus dense model.
    On a loaded machine this separates what masking costs from load noise in the step ratio."""
    def touch(model):
        mods = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        return lambda: sum((m.weight * 1.0).sum() for m in mods).backward()
    fns = {"dense": touch(dense), "masked": touch(masked)}
    times = {k: [] for k in fns}
    for r in range(reps):
        for k in (("dense", "masked") if r % 2 else ("masked", "dense")):
            times[k].append(timed(fns[k], device)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    dense.zero_grad(set_to_none=True)
    masked.zero_grad(set_to_none=True)
    extra = med["masked"] - med["dense"]
    return {"extra_s_per_step": extra, "fraction_of_dense_step": extra / dense_step_s}


def union_overshoot(args, tasks, x, y, losses) -> dict:
    """Sparsity after the first update at the reference settings (alpha0 0.5), union vs exact."""
    out = {}
    for grow in ("union", "exact"):
        model = build(args, tasks)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        # first update at delta_t=10 of t_end=3000: alpha = 0.4999 as at step 50 of 15000
        sp = DynamicSparsifier(model, opt, losses, sparsity=args.sparsity, t_end=3000, delta_t=10,
                               sample_batch=x, grow=grow)
        for step in range(11):
            sparse_step(sp, opt, step, x, y)
        out[grow] = {"target_sparsity": args.sparsity, "sparsity_after_first_update": 1 - sp.density}
    return out


def markdown(res: dict) -> str:
    c, m, med, ct = res["config"], res["machine"], res["median_s"], res["cpu_time"]
    return "\n".join([
        f"Run {res['date']} on `{m['processor']}` ({m['cpu_count']} cores, torch {m['torch']}, "
        f"{m['torch_threads']} threads{', ' + m['gpu'] if m.get('gpu') else ''}); "
        f"`{c['arch']}` width {c['width']}, tasks {', '.join(c['tasks'])}, batch {c['batch']}, "
        f"{c['size']}×{c['size']}, sparsity {c['sparsity']}, grow `{c['grow']}`, "
        f"{c['rounds']} interleaved rounds (medians), load average {res['load_average']}.",
        "",
        "| measure | wall time | CPU time | goal |",
        "|---|---|---|---|",
        f"| dense step | {med['dense'] * 1e3:.1f} ms | {res['median_cpu_s']['dense'] * 1e3:.1f} ms | |",
        f"| masked step | {med['masked'] * 1e3:.1f} ms | {res['median_cpu_s']['masked'] * 1e3:.1f} ms | |",
        f"| masked / dense step | {res['masked_step_ratio']:.3f}× | {ct['masked_step_ratio']:.3f}× "
        f"| ≤ 1.03× |",
        f"| update step (forward, {len(c['tasks'])} backward, prune/grow, Adam), dense steps | "
        f"{res['update_step_dense_steps']:.2f} | {ct['update_step_dense_steps']:.2f} | |",
        f"| cost of one update (update step − masked step), dense steps | "
        f"{res['update_cost_dense_steps']:.2f} | {ct['update_cost_dense_steps']:.2f} "
        f"| ≤ 2 (reference: 22) |",
        f"| masks' own work per step (weight reads + backward, isolated) | "
        f"{res['mask_overhead']['extra_s_per_step'] * 1e3:.2f} ms = "
        f"{res['mask_overhead']['fraction_of_dense_step']:.1%} of a dense step | | |",
        "",
        f"Union mode (reference), sparsity after the first update at a {c['sparsity']:.0%} target: "
        f"{res['union_overshoot']['union']['sparsity_after_first_update']:.2%} "
        f"(exact mode: {res['union_overshoot']['exact']['sparsity_after_first_update']:.2%}).",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="small", choices=["small", "deeplab_resnet34"])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--tasks", type=int, default=3, choices=[1, 2, 3])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--grow", default="exact", choices=["exact", "union"])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/core_bench_<device>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args)
    out = Path(args.out or Path(__file__).parent / "results" / f"core_bench_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
