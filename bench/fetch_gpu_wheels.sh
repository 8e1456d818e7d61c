#!/usr/bin/env bash
# Download here (a machine with PyPI) the cp312 manylinux wheels that bench/gpu_check.sh installs on the
# offline GPU machine (Python 3.12, torch, numpy, pandas, pyyaml; no ray/optuna/mlflow, no network).
#
#   bash bench/fetch_gpu_wheels.sh            # -> .whl/ (gitignored), about 51 MiB
#   bash bench/fetch_gpu_wheels.sh --verify   # also: strip the cp311 ray wheel the same way, install it
#                                             # into a temp --target and import ray + ray.tune with the
#                                             # Python here (3.11 cannot import the cp312 build)
#
# ray as published (75.6 MiB) does not fit the 64 MiB the GPU machine receives with the tree: its Java
# jars (ray/jars/) and the dashboard's prebuilt web client (ray/dashboard/client/build/) are removed and
# the wheel's RECORD is rewritten so that pip still accepts it (see bench/strip_wheel.py).
#
# The install line gpu_check.sh runs first:
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl; python -m compileall -q /tmp/site
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
VERIFY=0
[[ "${1:-}" == "--verify" ]] && VERIFY=1
PY=${PYTHON:-python3}

# Versions pinned to what this project runs here (STACK-NOTES: ray 2.60.0, optuna 5.0.0).
PKGS=(
  ray==2.60.0
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0
  tensorboardX==2.6.5
  pydantic==2.13.4 pydantic-core==2.46.4 typing-inspection==0.4.2 annotated-types==0.7.0
  optuna==5.0.0 alembic==1.20.1 mako==1.4.3 sqlalchemy==2.1.9 colorlog==6.12.0
)

mkdir -p "$DEST" "$DEST/raw"
for spec in "${PKGS[@]}"; do
  name=${spec%%==*}
  # one pip call per wheel: a failure names the package
  "$PY" -m pip download --quiet --no-deps "$spec" --python-version 3.12 --implementation cp \
      --abi cp312 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 -d "$DEST/raw" 2>&1 | grep -v "WARNING: Location" || true
  if ! ls "$DEST/raw" | grep -qi "^$(echo "$name" | tr '-' '_')-"; then
    echo "fetch_gpu_wheels: could not download $spec for cp312 manylinux" >&2
    exit 1
  fi
done

for whl in "$DEST"/raw/*.whl; do
  base=$(basename "$whl")
  if [[ $base == ray-* ]]; then
    "$PY" bench/strip_wheel.py "$whl" "$DEST/$base"
  else
    cp -f "$whl" "$DEST/$base"
  fi
done
rm -rf "$DEST/raw"
"$PY" bench/strip_wheel.py --check "$DEST"/*.whl
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "fetch_gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in $DEST/"
if (( total > 52 * 1024 * 1024 )); then
  echo "fetch_gpu_wheels: warning: over 52 MiB; the tree + wheels must stay under 64 MiB" >&2
fi

if (( VERIFY )); then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download --quiet --no-deps ray==2.60.0 --only-binary=:all: -d "$tmp/raw" 2>&1 \
      | grep -v "WARNING: Location" || true
  raw=$(ls "$tmp"/raw/ray-*.whl)
  "$PY" bench/strip_wheel.py "$raw" "$tmp/$(basename "$raw")"
  "$PY" -m pip install --quiet --no-index --no-deps --target "$tmp/site" "$tmp/$(basename "$raw")"
  "$PY" -m compileall -q "$tmp/site" >/dev/null || true
  PYTHONPATH="$tmp/site" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 "$PY" -c "
import ray, ray.tune, ray.tune.search, ray.tune.schedulers
assert ray.__file__.startswith('$tmp/site'), ray.__file__
print('verify: stripped', ray.__version__, 'installs and imports from', ray.__file__)"
fi
