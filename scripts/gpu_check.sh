#!/usr/bin/env bash
# The GPU checks of ebmfast, in one call of under 8 minutes, on a machine with one CUDA GPU
# (H100 / H200; python3 with a CUDA torch and triton, nvcc, compute-sanitizer; no network needed):
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # OUT_DIR defaults to bench/results/gpu
#
# Steps, each under its own timeout (and the whole run under GPU_CHECK_BUDGET_S, default 470 s):
#   env         python, torch, triton, nvcc, the GPU
#   build       the extension with its CUDA kernels, in place (sm_90, 16 jobs)
#   pytest_cuda the GPU tests: python3 -m pytest -m cuda
#   memcheck    compute-sanitizer memcheck on scripts/gpu_sanitize_cases.py (every CUDA kernel once)
#   racecheck   compute-sanitizer racecheck on the same script
#   bench_mlp, bench_langevin   the GPU benchmarks in quick mode, results into OUT_DIR
# Every step runs even when an earlier one failed; the exit status is 1 if any failed.
# OUT_DIR gets gpu_check.log (every step's output), summary.txt (one line per step),
# pytest_cuda.xml and the benchmarks' result files.
# The benchmarks compare against torchebm and ebmkit when importable: on a machine with no network,
# put their wheels in build/wheels/ first (`python3 -m pip download --no-deps -d build/wheels torchebm==0.8.9
# ebmkit==0.16.0` where there is one); they are installed from there into /tmp/ebmfast_peers.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
OUT_DIR=${1:-bench/results/gpu}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd) || exit 2
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
LOG=$OUT_DIR/gpu_check.log
SUMMARY=$OUT_DIR/summary.txt
: >"$LOG"
: >"$SUMMARY"
# Triton compiles for the GPU (tests/conftest.py sets TRITON_INTERPRET=1 only when it is unset)
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 PIP_BREAK_SYSTEM_PACKAGES=1
failed=0

# step NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, time left), output appended to the log
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS)) t0=$SECONDS rc
  ((limit > left)) && limit=$left
  declare -F "$1" >/dev/null && set -- bash -c '"$@"' _ "$@" # `timeout` runs programs, not functions
  echo "=== $name (timeout ${limit}s): $*" | tee -a "$LOG"
  if ((limit < 5)); then
    rc=-1
  else
    timeout --kill-after=10 "$limit" "$@" >"$OUT_DIR/step.out" 2>&1
    rc=$?
    cat "$OUT_DIR/step.out" >>"$LOG"
    tail -n 8 "$OUT_DIR/step.out"
    rm -f "$OUT_DIR/step.out"
  fi
  local status="OK"
  if ((rc == -1)); then
    status="FAILED (not run: the ${BUDGET}s budget is spent)"
  elif ((rc == 124 || rc == 137)); then
    status="FAILED (timed out)"
  elif ((rc != 0)); then
    status="FAILED (exit $rc)"
  fi
  ((rc == 0)) || failed=$((failed + 1))
  echo "$status $name $((SECONDS - t0))s" | tee -a "$SUMMARY" "$LOG"
}

env_info() {
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -n 1
  "$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name(0))"
}
export -f env_info
export PY

if ls build/wheels/*.whl >/dev/null 2>&1; then # the peers, pure Python
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/ebmfast_peers build/wheels/*.whl \
    && export PYTHONPATH=/tmp/ebmfast_peers${PYTHONPATH:+:$PYTHONPATH}
fi

# exact allocations (no caching allocator), so that an access past a tensor's end is caught
sanitize=(env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --error-exitcode 1 --report-api-errors no)

step env 30 env_info
step build 240 env MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 \
  "$PY" -m pip install --no-build-isolation --no-deps --no-index -e .
step pytest_cuda 150 "$PY" -m pytest -m cuda -q -p no:cacheprovider --junitxml="$OUT_DIR/pytest_cuda.xml"
step memcheck 90 "${sanitize[@]}" --tool memcheck "$PY" scripts/gpu_sanitize_cases.py
step racecheck 90 "${sanitize[@]}" --tool racecheck "$PY" scripts/gpu_sanitize_cases.py
step bench_mlp 90 "$PY" bench/bench_mlp.py --device cuda --quick --out "$OUT_DIR"
step bench_langevin 60 "$PY" bench/bench_langevin_step.py --device cuda --quick --out "$OUT_DIR"

echo "=== summary (${SECONDS}s): $failed failed step(s)"
cat "$SUMMARY"
((failed == 0))
