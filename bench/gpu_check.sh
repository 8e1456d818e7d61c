#!/usr/bin/env bash
# Issue 5 on a GPU machine, end to end in under 8 minutes, offline:
#   0. install the wheels of .whl/ (bench/fetch_gpu_wheels.sh, run beforehand where PyPI is reachable)
#      into /tmp/site: ray (stripped), optuna and their deps; the machine has torch/numpy/pandas/pyyaml
#   1-4. bench/step_bench.py at paper scale (DeepLab-ResNet34, 16x3x321x321, seg 40 + normals; fp32 with
#      TF32 and bf16): masked/dense step, one dynamic update, static scoring, peak memory;
#      bench/core_bench.py fp32 at the same scale as a cross-check
#   5. bench/gpu_trial.py: run_trial on CUDA, bf16, DiSparse dynamic, 300 steps
#   6. bench/packing_bench.py: a mini sweep (Ray Tune + Optuna) with 1, 2, 4 trials per GPU
# Results: JSON files in $OUT (the device tool's folder) or bench/results/gpu/; afterwards, here:
#   python bench/log_gpu_results.py DIR      # logs them to MLflow (the GPU machine has no MLflow)
#
#   bash bench/gpu_check.sh            # on the GPU machine (device tool: carry [".whl"], timeout 540 s)
#   bash bench/gpu_check.sh --cpu      # or DISPARSE_GPU_CHECK_DEVICE=cpu: every step at tiny sizes on CPU
# A failing step is recorded in gpu_check_summary.tsv (name, exit code, seconds) and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DISPARSE_GPU_CHECK_DEVICE:-cuda}
[[ "${1:-}" == "--cpu" ]] && DEVICE=cpu
RES=${DISPARSE_GPU_CHECK_OUT:-${OUT:-bench/results/gpu}}
mkdir -p "$RES"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export MLFLOW_DISABLE_TELEMETRY=true RAY_ADDRESS=local PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SUMMARY="$RES/gpu_check_summary.tsv"
: > "$SUMMARY"
START=$(date +%s)

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s, $(( t0 - START ))s elapsed)"
  timeout --kill-after=10 "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  tail -n 8 "$RES/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$SUMMARY"
  [[ $rc -eq 0 ]] || echo "!! $name failed (rc $rc); see $RES/$name.log"
}

# 0. wheels ------------------------------------------------------------------------------------------
t0=$(date +%s)
if "$PY" -c 'import ray, optuna' 2>/dev/null; then
  echo "== install: ray and optuna already importable, nothing installed"
elif ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl \
    && "$PY" -m compileall -q /tmp/site >/dev/null
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  echo "== install: $(ls .whl/*.whl | wc -l) wheels into /tmp/site in $(( $(date +%s) - t0 ))s"
else
  echo "!! no .whl/ and no ray: run bash bench/fetch_gpu_wheels.sh first (and carry .whl)"
fi
printf 'install\t%s\t%s\n' "$("$PY" -c 'import ray, optuna' 2>/dev/null; echo $?)" \
  "$(( $(date +%s) - t0 ))" >> "$SUMMARY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader > "$RES/nvidia_smi.txt" 2>&1

# 1-6 ------------------------------------------------------------------------------------------------
if [[ $DEVICE == cuda ]]; then
  step step_bench 150 "$PY" bench/step_bench.py --device cuda --arch deeplab_resnet34 --size 321 \
    --batch 16 --seg-classes 40 --rounds 20 --warmup 3 --score-rounds 6 --out "$RES/step_bench_cuda.json"
  step core_bench 60 "$PY" bench/core_bench.py --device cuda --arch deeplab_resnet34 --size 321 \
    --batch 16 --tasks 2 --rounds 15 --warmup 3 --out "$RES/core_bench_cuda.json"
  step gpu_trial 90 "$PY" bench/gpu_trial.py --device cuda --out "$RES/gpu_trial_cuda.json"
  step packing_bench 160 "$PY" bench/packing_bench.py --device cuda --levels 1,2,4 --trials 8 \
    --steps 300 --out "$RES/packing_bench_cuda.json"
else
  step step_bench 120 "$PY" bench/step_bench.py --quick --threads 1 --out "$RES/step_bench_cpu.json"
  step core_bench 120 "$PY" bench/core_bench.py --threads 1 --batch 2 --size 16 --width 4 --tasks 2 \
    --rounds 2 --warmup 1 --out "$RES/core_bench_cpu.json"
  step gpu_trial 120 "$PY" bench/gpu_trial.py --quick --out "$RES/gpu_trial_cpu.json"
  step packing_bench 240 "$PY" bench/packing_bench.py --quick --out "$RES/packing_bench_cpu.json"
fi
echo "== done in $(( $(date +%s) - START ))s; results in $RES:"
column -t "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
! cut -f2 "$SUMMARY" | grep -qv '^0$'
