"""Issue 5, benchmarks 1-4: what masks, dynamic updates and static scoring cost, on CPU or GPU.

1. ``masked_step``: a training step with masks attached (DynamicSparsifier, non-update step) over the
   same step of the dense model, fp32 and bf16 (autocast, as ``run_trial`` with ``bf16: true``).
   Goal <= 1.03x. (bench/core_bench.py measures the fp32 case on its own 3-task net; this script adds
   bf16, the paper's task set, scoring and memory, with the same interleaving rule.)
2. ``update``: one prune/grow update in dense-step units, ``(update step - masked step) / dense step``.
   Goal <= 2 (reference DiSparse: 22).
3. ``scoring``: static scoring (``task_scores``, SNIP, ``B`` batches) over ``B x T x (forward + backward)``
   of the dense model; also the whole ``sparsify`` call (ownership, scoring, calibrated decision,
   attach). Goal <= 2.
4. ``memory`` (CUDA only): peak ``torch.cuda.max_memory_allocated`` of training with masks + the dynamic
   sparsifier (update steps included), and with static masks (scoring included), over dense training.
   Goal <= 1.2x. On CPU it is skipped with a note.

    python bench/step_bench.py                                 # CPU, small net (bench/results/step_bench_cpu.json)
    python bench/step_bench.py --quick                         # seconds; what the smoke test runs
    python bench/step_bench.py --device cuda --arch deeplab_resnet34 --size 321 --batch 16   # paper scale

Anchors (reference DiSparse, H200, batch 16x3x321x321, DeepLab-ResNet34, seg 40 + normals): dense step
82.7 ms fp32 (TF32) / 49.3 ms bf16; masked 84.7 ms (1.024x); update 1.81 s (22 dense steps); static
scoring 5 batches x 2 tasks 0.83 s; peak memory 44.7 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time

from _common import interleaved, medians, ratio, sync, write_result  # noqa: E402  (adds the repo to sys.path)

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from disparse_core.dynamic import DynamicSparsifier  # noqa: E402
from disparse_core.masks import count_prunable, remove_masks  # noqa: E402
from disparse_core.models import build_model  # noqa: E402
from disparse_core.scoring import task_scores  # noqa: E402
from disparse_core.sparsify import sparsify  # noqa: E402
from disparse_core.tasks import normals_loss, segmentation_loss  # noqa: E402

ANCHORS = {"dense_step_fp32_ms": 82.7, "dense_step_bf16_ms": 49.3, "masked_step_ratio": 1.024,
           "update_s": 1.81, "update_dense_steps": 22, "scoring_5x2_s": 0.83, "peak_memory_gb": 44.7}
GOALS = {"masked_step_ratio": 1.03, "update_dense_steps": 2.0, "scoring_ratio": 2.0, "memory_ratio": 1.2}


def task_setup(seg_classes: int):
    channels = {"seg": seg_classes, "normal": 3}
    kinds = {"seg": "segmentation", "normal": "normals"}
    losses = {"seg": segmentation_loss(), "normal": normals_loss()}
    return channels, kinds, losses


def make_batch(batch, size, seg_classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = {"seg": torch.randint(0, seg_classes, (batch, size, size), generator=g),
         "normal": F.normalize(torch.randn(batch, 3, size, size, generator=g), dim=1)}
    return x.to(device), {t: v.to(device) for t, v in y.items()}


class Setup:
    """One model + Adam (+ a DynamicSparsifier when ``masked``), stepping as ``run_trial`` does."""

    def __init__(self, args, masked: bool, delta_t: int, seed: int = 0):
        channels, kinds, self.losses = task_setup(args.seg_classes)
        kw = {"width": args.width} if args.arch == "small" else {}
        self.model = build_model(args.arch, channels, task_kinds=kinds, seed=seed, **kw).to(args.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, weight_decay=5e-4)
        self.device = torch.device(args.device)
        self.sp = None
        if masked:
            x, y = args.batch_data
            far = 10 ** 9
            self.sp = DynamicSparsifier(self.model, self.opt, self.losses, sparsity=args.sparsity,
                                        t_end=far, delta_t=delta_t, alpha0=0.3, decay="constant",
                                        sample_batch=(x, y), grow="exact",
                                        loss_weights={"normal": 20.0})

    def step(self, step: int, x, y, bf16: bool) -> None:
        """``run_trial``'s ``_train_step``: zero_grad, (recording) forward under autocast, fp32 losses,
        weighted backward (or the sparsifier's backward), Adam step."""
        self.opt.zero_grad(set_to_none=True)
        rec = self.sp.recording(step) if self.sp is not None else contextlib.nullcontext()
        cast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
        with rec:
            with cast:
                out = self.model(x)
            task_losses = {t: self.losses[t](out[t].float(), y[t]) for t in out}
        if self.sp is not None:
            self.sp.backward(step, task_losses)
        else:
            (task_losses["seg"] + 20.0 * task_losses["normal"]).backward()
        self.opt.step()


def bench_steps(args, bf16: bool) -> dict:
    """Benchmarks 1 and 2 for one precision: dense, masked and update steps, interleaved."""
    x, y = args.batch_data
    dense = Setup(args, masked=False, delta_t=1)
    masked = Setup(args, masked=True, delta_t=10 ** 9 - 1)   # never updates
    updating = Setup(args, masked=True, delta_t=2)           # even steps update, odd steps do not
    counter = {"s": 1}

    def upd():
        updating.step(counter["s"] + 1, x, y, bf16)

    def plain():
        updating.step(counter["s"], x, y, bf16)
        counter["s"] += 2

    for i in range(args.warmup):
        dense.step(1, x, y, bf16)
        masked.step(1, x, y, bf16)
        upd()
        plain()
    series = interleaved({"dense": lambda: dense.step(1, x, y, bf16),
                          "masked": lambda: masked.step(1, x, y, bf16),
                          "update": upd, "masked_plain": plain}, args.rounds, args.device)
    med = medians(series)
    update_cost = {k: (med["update"][k] - med["masked_plain"][k]) / med["dense"][k] for k in ("wall", "cpu")}
    out = {"median_s": med,
           "masked_step_ratio": ratio(med, "masked", "dense"),
           "update_dense_steps": update_cost,
           "update_step_over_dense": ratio(med, "update", "dense"),
           "density_after_updates": updating.sp.density,
           "updates_done": len(updating.sp.history)}
    return out


def bench_scoring(args) -> dict:
    """Benchmark 3: task_scores (SNIP, B batches) and sparsify vs B x T x (forward + backward)."""
    channels, kinds, losses = task_setup(args.seg_classes)
    kw = {"width": args.width} if args.arch == "small" else {}
    model = build_model(args.arch, channels, task_kinds=kinds, seed=0, **kw).to(args.device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [make_batch(args.batch, args.size, args.seg_classes, args.device, seed=s)
               for s in range(args.score_batches)]
    x, y = batches[0]

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        out = model(x)
        sum(losses[t](out[t], y[t]) for t in out).backward()

    def score():
        task_scores(model, batches, losses, criterion="snip")

    def full():
        sparsify(model, batches, losses, sparsity=args.sparsity, method="disparse_static",
                 score_batches=args.score_batches)
        remove_masks(model, fold=False)
        model.load_state_dict(state)

    for _ in range(2):
        fwd_bwd(); score(); full()  # noqa: E702
    series = interleaved({"fwd_bwd": fwd_bwd, "task_scores": score, "sparsify": full},
                         args.score_rounds, args.device)
    med = medians(series)
    T = len(channels)
    unit = {k: args.score_batches * T * med["fwd_bwd"][k] for k in ("wall", "cpu")}
    out = {"median_s": med, "tasks": T, "batches": args.score_batches,
           "scoring_ratio": {k: med["task_scores"][k] / unit[k] for k in unit},
           "sparsify_ratio": {k: med["sparsify"][k] / unit[k] for k in unit}}
    return out


def bench_memory(args, bf16: bool) -> dict:
    """Benchmark 4 (CUDA): peak allocated memory of dense vs masked (dynamic, static) training."""
    if not str(args.device).startswith("cuda"):
        return {"skipped": "CPU run: torch.cuda.max_memory_allocated has no CPU counterpart; "
                           "run on a GPU (bash bench/gpu_check.sh)"}
    x, y = args.batch_data
    peaks = {}
    for kind in ("dense", "dynamic", "static"):
        _free(args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        s = Setup(args, masked=kind == "dynamic", delta_t=2)
        if kind == "static":
            batches = [make_batch(args.batch, args.size, args.seg_classes, args.device, seed=i)
                       for i in range(args.score_batches)]
            sparsify(s.model, batches, s.losses, sparsity=args.sparsity, method="disparse_static",
                     score_batches=args.score_batches)
            del batches
        for step in range(1, 6):  # steps 2 and 4 are update steps for the dynamic sparsifier
            s.step(step, x, y, bf16)
        sync(args.device)
        peaks[kind] = (torch.cuda.max_memory_allocated() - base) / 2**30
        del s
    _free(args.device)
    return {"peak_gib": peaks, "dynamic_ratio": peaks["dynamic"] / peaks["dense"],
            "static_ratio": peaks["static"] / peaks["dense"]}


def _free(device) -> None:
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the anchors' fp32 is TF32
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    args.batch_data = make_batch(args.batch, args.size, args.seg_classes, device)
    channels, kinds, _ = task_setup(args.seg_classes)
    kw = {"width": args.width} if args.arch == "small" else {}
    with torch.device("meta"):
        prunable = count_prunable(build_model(args.arch, channels, task_kinds=kinds, **kw))
    res = {"config": {k: v for k, v in vars(args).items() if k not in ("batch_data", "out")},
           "prunable_weights": prunable, "anchors": ANCHORS, "goals": GOALS,
           "tf32": device.type == "cuda", "steps": {}, "memory": {}}
    t0 = time.perf_counter()
    for dtype in args.dtypes.split(","):
        bf16 = dtype == "bf16"
        res["steps"][dtype] = bench_steps(args, bf16)
        _free(args.device)
        res["memory"][dtype] = bench_memory(args, bf16)
    res["scoring"] = bench_scoring(args)
    _free(args.device)
    res["bench_seconds"] = time.perf_counter() - t0
    return res


def summary(res: dict) -> str:
    c = res["config"]
    lines = [f"{c['arch']} on {c['device']}, batch {c['batch']}x3x{c['size']}x{c['size']}, "
             f"seg {c['seg_classes']} + normals, sparsity {c['sparsity']}, {c['rounds']} rounds"]
    for dtype, s in res["steps"].items():
        m = s["median_s"]
        lines.append(f"[{dtype}] dense {m['dense']['wall'] * 1e3:.1f} ms, masked "
                     f"{m['masked']['wall'] * 1e3:.1f} ms: ratio wall {s['masked_step_ratio']['wall']:.3f} "
                     f"cpu {s['masked_step_ratio']['cpu']:.3f}; update = {s['update_dense_steps']['wall']:.2f} "
                     f"dense steps (cpu {s['update_dense_steps']['cpu']:.2f})")
        mem = res["memory"][dtype]
        lines.append(f"[{dtype}] memory: " + (mem.get("skipped") or
                     f"dense {mem['peak_gib']['dense']:.2f} GiB, dynamic x{mem['dynamic_ratio']:.3f}, "
                     f"static x{mem['static_ratio']:.3f}"))
    sc = res["scoring"]
    lines.append(f"scoring {sc['batches']} batches x {sc['tasks']} tasks: "
                 f"{sc['median_s']['task_scores']['wall'] * 1e3:.0f} ms = {sc['scoring_ratio']['wall']:.2f} x "
                 f"(B x T x fwd+bwd) (cpu {sc['scoring_ratio']['cpu']:.2f}); whole sparsify "
                 f"{sc['sparsify_ratio']['wall']:.2f} (cpu {sc['sparsify_ratio']['cpu']:.2f})")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="small", choices=["small", "deeplab_resnet34"])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seg-classes", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--score-batches", type=int, default=5)
    p.add_argument("--score-rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few rounds (smoke test)")
    p.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:  # tiny defaults; options given explicitly still win
        p.set_defaults(batch=2, size=16, width=4, rounds=2, warmup=1, score_batches=2, score_rounds=2,
                       seg_classes=5)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args)
    dev = args.device.split(":")[0]
    name = f"step_bench_{dev}" + ("_quick" if args.quick else "")
    path = write_result(name, res, args.out)
    print(summary(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
