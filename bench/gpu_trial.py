"""``run_trial`` end to end on one device: DiSparse dynamic, DeepLab-ResNet34 on the built-in scenes
workload, bf16 autocast, a few hundred steps; checks that every metric is finite and records the time
per step, the peak GPU memory and the reports. Part of bench/gpu_check.sh.

    python bench/gpu_trial.py --device cuda             # 300 steps, 96x96 crops, batch 16, bf16
    python bench/gpu_trial.py --quick                   # CPU, small net, 4 steps (smoke test)
"""

from __future__ import annotations

import argparse
import math
import time

from _common import write_result  # noqa: E402

import torch  # noqa: E402

from disparse_core.trial import run_trial  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="deeplab_resnet34")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--method", default="disparse_dynamic")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.steps, args.size, args.batch = "small", 4, 32, 4
    config = {"workload": "scenes", "tasks": ["seg", "normal"], "arch": args.arch,
              "image_size": args.size, "train_size": max(64, 4 * args.batch), "test_size": 32,
              "batch_size": args.batch, "steps": args.steps, "method": args.method, "sparsity": 0.9,
              "loss_weights": {"normal": 20.0}, "device": args.device, "bf16": args.bf16,
              "eval_every": max(1, args.steps // 3), "eval_batches": 2, "seed": 0,
              "dynamic": {"delta_t": max(1, args.steps // 10)}}
    if args.arch == "small":
        config["width"] = 8
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reports = []
    t0 = time.perf_counter()
    result = run_trial(config, report=lambda m: reports.append(dict(m)))
    wall = time.perf_counter() - t0
    flat = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    bad = sorted(k for k, v in flat.items() if not math.isfinite(v))
    out = {"config": config, "wall_s": wall, "seconds_per_step": wall / args.steps,
           "result": flat, "mask_iou_layers": len(result.get("mask_iou") or {}),
           "reports": reports, "non_finite": bad, "ok": not bad and bool(reports),
           "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    path = write_result(f"gpu_trial_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""), out,
                        args.out)
    print(f"run_trial {args.method} {args.arch} bf16={args.bf16} on {args.device}: {args.steps} steps in "
          f"{wall:.1f}s, sparsity {flat.get('sparsity', float('nan')):.3f}, seg.miou "
          f"{flat.get('seg.miou', float('nan')):.3f}, non-finite {bad or 'none'}; wrote {path}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
