#!/usr/bin/env bash
# The GPU half of ebmfast's tests and benchmarks, for a lent CUDA machine (H100 / H200), in calls
# of under 10 minutes each. Run it in the repository root on that machine:
#
#   bash scripts/gpu_session.sh "$OUT" build test     # call 1: build + GPU tests + GPU correctness check
#   bash scripts/gpu_session.sh "$OUT" bench          # call 2: bench_mlp_gpu.py + bench_langevin_step.py
#
# Phases (any order, several per call; default "build test bench", which may not fit one call):
#   env             versions, nvidia-smi, the GPU's properties (always runs first)
#   build           the extension with CUDA kernels: restored from a carried build when its stamp
#                   matches csrc/ + setup.py + torch + python + GPU arch, else
#                   pip install --no-build-isolation --no-deps -e . (MAX_JOBS=16, TORCH_CUDA_ARCH_LIST
#                   = this GPU's capability); checks that torch.ops.ebmfast has CUDA kernels
#   rebuild         the same, ignoring any carried build
#   test            GPU tests WITHOUT TRITON_INTERPRET (tests that skip without a GPU must pass here,
#                   checked in the JUnit XML), then bench/bench_mlp_gpu.py --check (every CUDA and
#                   Triton MLP kernel against float64 references)
#   suite           the whole suite (-m "not slow") without TRITON_INTERPRET, on this machine
#   bench-mlp       bench/bench_mlp_gpu.py (GPU_SESSION_QUICK=1: --quick)
#   bench-langevin  bench/bench_langevin_step.py --quick (its CPU part, then its GPU part)
#   langevin-full   bench/bench_langevin_step.py without --quick (several minutes)
#   bench           bench-mlp + bench-langevin
#   fetch-wheels    (HERE, with network; not on the GPU machine) downloads the peers torchebm and
#                   ebmkit as wheels into build/gpu_carry/wheels for the GPU machine, which has none
# Phases that need the extension build it first when it is missing.
#
# What comes back in $OUT (at most 8 files, as the device tool allows):
#   session.log          everything printed (written as it runs: it comes back even if the call is killed)
#   SUMMARY.txt          one line per step: OK / FAILED, and why
#   results.tar.gz       every log, results file (bench/results-style csv + md), JUnit XML
#   mlp_gpu.md, ...      up to 3 result files copied for reading without unpacking
#   gpu_ext.tar.gz       the built extension + its stamp, and triton_cache.tar.gz, Triton's kernel
#                        cache: copy both into build/gpu_carry/ here and name build/gpu_carry in the
#                        next call's `carry`, so that call neither rebuilds nor recompiles
#
# The device tool's calls, for the record (carry build/gpu_carry: the peers' wheels, the caches):
#   run(command='bash scripts/gpu_session.sh "$OUT" build test', carry=["build/gpu_carry"], timeout_s=600)
#   cp <files_at>/gpu_ext.tar.gz <files_at>/triton_cache.tar.gz build/gpu_carry/     # here, between calls
#   run(command='bash scripts/gpu_session.sh "$OUT" bench', carry=["build/gpu_carry"], timeout_s=600)
#   tar -xzf <files_at>/results.tar.gz -C /tmp/gpu_results   # then copy results/mlp_gpu.{csv,md} to bench/results/
#
# Stops at the first failed step with a clear message; logs and results are packed into $OUT in
# every case (an EXIT trap). Each step runs under `timeout` so that the call ends inside
# GPU_SESSION_BUDGET_S seconds with time to pack. Plain bash. Environment knobs:
#   GPU_SESSION_BUDGET_S=570   seconds for the whole call (keep it ~30 s under the tool's timeout_s)
#   GPU_SESSION_KEEP_GOING=1   record a failed test/bench step and go on (build failures still stop)
#   GPU_SESSION_QUICK=1        bench-mlp runs bench_mlp_gpu.py --quick
#   GPU_SESSION_CARRY=DIR      the carried folder (default build/gpu_carry)
#   PYTHON=python3             the interpreter that holds PyTorch
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_ARG=${1:-}
if [[ -z "$OUT_ARG" || "$OUT_ARG" == -* ]]; then
    sed -n '2,49p' "${BASH_SOURCE[0]}"
    echo "usage: bash scripts/gpu_session.sh OUT_DIR [PHASE ...]" >&2
    exit 2
fi
shift
mkdir -p "$OUT_ARG" || exit 2
OUT=$(cd "$OUT_ARG" && pwd)
PHASES=("$@")
[[ ${#PHASES[@]} -eq 0 ]] && PHASES=(build test bench)

PY=${PYTHON:-python3}
BUDGET=${GPU_SESSION_BUDGET_S:-570}   # seconds this call may take in all
RESERVE=25                            # seconds kept back for packing the results
CARRY=${GPU_SESSION_CARRY:-$ROOT/build/gpu_carry}
WORK=$(mktemp -d /tmp/gpu_session.XXXXXX)
LOGS=$WORK/logs
RES=$WORK/results
SUMMARY=$WORK/SUMMARY.txt
mkdir -p "$LOGS" "$RES"
# Triton's kernel cache in a folder of our own, so it can be packed and carried to the next call
# (a fixed path: a warm machine keeps it between calls)
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/gpu_session_triton_cache}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PIP_BREAK_SYSTEM_PACKAGES=1 PY
WARM_STAMP=/tmp/gpu_session_ext_stamp # the stamp of the build in ebmfast/ (kept while the machine is warm)
EXT_READY=0     # 1 once the CUDA extension has been built or restored and checked in this call
EXT_BUILT=0     # 1 when this call built it (then it is packed for the next call)

note() { echo "$*" | tee -a "$SUMMARY"; }

FAILURES=0      # failed steps so far (only ever > 0 with GPU_SESSION_KEEP_GOING=1)

# fail STEP REASON: record, print, and stop (the EXIT trap packs everything). With
# GPU_SESSION_KEEP_GOING=1 a failed test or benchmark step is recorded and the session goes on
# (returns 1); build steps (FATAL=1) and budget stops always end it.
fail() {
    note "FAILED $1: $2"
    if [[ "${GPU_SESSION_KEEP_GOING:-0}" == 1 && "${FATAL:-0}" != 1 ]]; then
        FAILURES=$((FAILURES + 1))
        return 1
    fi
    note "STOPPED at step '$1' after ${SECONDS}s; logs: results.tar.gz (logs/$1.log) and session.log"
    exit 1
}

# step NAME CMD...: runs CMD under a timeout that keeps the call inside its budget, output to the
# screen and to logs/NAME.log; a non-zero exit or a timeout stops the session.
step() {
    local name=$1
    shift
    local left=$((BUDGET - SECONDS - RESERVE))
    if ((left < 20)); then
        FATAL=1 fail "$name" "not started: ${left}s left of the ${BUDGET}s budget (run this phase in a new call)"
    fi
    echo
    echo "=== [${SECONDS}s] $name (timeout ${left}s): $*"
    local t0=$SECONDS cmd=("$@")
    # `timeout` runs programs, not shell functions: run those in a child bash (they are exported)
    declare -F "$1" >/dev/null && cmd=(bash -c '"$@"' _ "$@")
    timeout --kill-after=10 "$left" "${cmd[@]}" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    if ((rc == 124 || rc == 137)); then
        FATAL=1 fail "$name" "timed out after $((SECONDS - t0))s (budget ${BUDGET}s for the whole call)"
    elif ((rc != 0)); then
        fail "$name" "exit status $rc (see logs/$name.log)"
        return 1
    fi
    note "OK $name ($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------------------- packing (always)
pack() {
    local rc=$?
    trap - EXIT
    echo
    echo "=== [${SECONDS}s] packing results into $OUT"
    cp "$SUMMARY" "$OUT/SUMMARY.txt" 2>/dev/null
    # up to 3 result files beside the tarball, for reading without unpacking (8 files at most come back)
    local n=0 f
    for f in mlp_gpu.md mlp_gpu_quick.md mlp_gpu_check.md langevin/langevin_step_cpu.md \
        langevin/langevin_step_cpu_quick.md mlp_gpu.csv; do
        if [[ -f "$RES/$f" && $n -lt 3 ]]; then
            cp "$RES/$f" "$OUT/$(basename "$f")" && n=$((n + 1))
        fi
    done
    tar -czf "$OUT/results.tar.gz" -C "$WORK" logs results SUMMARY.txt 2>/dev/null
    if ((EXT_BUILT)); then # the built extension, for the next call's carry
        tar -czf "$OUT/gpu_ext.tar.gz" -C "$WORK" ext 2>/dev/null
    fi
    if [[ -d "$TRITON_CACHE_DIR" ]] && [[ -n "$(ls -A "$TRITON_CACHE_DIR" 2>/dev/null)" ]]; then
        tar -czf "$OUT/triton_cache.tar.gz" -C "$TRITON_CACHE_DIR" . 2>/dev/null
    fi
    for f in gpu_ext.tar.gz triton_cache.tar.gz; do # files over 16 MiB do not come back: say so
        if [[ -f "$OUT/$f" ]] && (($(stat -c %s "$OUT/$f") > 16 * 1024 * 1024)); then
            rm -f "$OUT/$f"
            echo "$f is over 16 MiB: not returned (the next call rebuilds / recompiles)"
        fi
    done
    ls -la "$OUT"
    echo
    echo "=== SUMMARY (${SECONDS}s)"
    cat "$SUMMARY"
    rm -rf "$WORK" # everything is in $OUT now
    exit "$rc"
}

# ---------------------------------------------------------------------------- phases
phase_env() {
    echo "=== [${SECONDS}s] environment"
    date -u +%Y-%m-%dT%H:%M:%SZ
    echo "repo: $ROOT; phases: ${PHASES[*]}; budget ${BUDGET}s; carry folder: $CARRY"
    ls -la "$CARRY" 2>/dev/null || echo "(no carried folder $CARRY)"
    uname -a
    nproc
    df -h /tmp | tail -1
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu,clocks.sm,clocks.max.sm \
            --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not found"
    "$PY" - <<'EOF' 2>&1 | tee "$LOGS/env.log"
import platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable}); torch {torch.__version__}, CUDA {torch.version.cuda}")
try:
    import triton
    print(f"triton {triton.__version__}")
except Exception as exc:
    print(f"triton: not importable ({exc})")
for mod in ("torchebm", "ebm", "pytest", "xdist", "pytest_timeout"):
    try:
        m = __import__(mod)
        print(f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as exc:
        print(f"{mod}: not importable ({type(exc).__name__})")
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to torch")
p = torch.cuda.get_device_properties(0)
print(f"GPU {p.name}: capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
      f"{p.total_memory / 2**30:.1f} GiB, {getattr(p, 'shared_memory_per_block_optin', '?')} B smem/block opt-in")
EOF
    local rc=${PIPESTATUS[0]}
    ((rc == 0)) || FATAL=1 fail env "no usable CUDA GPU / torch (see above)"
    note "OK env"
}

# the peers (torchebm, ebmkit) are not on the GPU machine's image: carried wheels, pure Python
install_peers() {
    local whl=("$CARRY"/wheels/*.whl)
    if [[ -f "${whl[0]}" ]]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_session_site \
            "${whl[@]}" \
            && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_session_site" \
            && note "peers installed from $CARRY/wheels: $("$PY" -c 'import torchebm, ebm
print("torchebm", torchebm.__version__, "ebmkit", ebm.__version__)' 2>&1 | tail -1)" \
            || note "peers: pip install of the carried wheels failed (their rows will say why)"
    else
        note "peers: no wheels in $CARRY/wheels (torchebm/ebmkit rows will say 'unavailable'; fetch-wheels here first)"
    fi
}

# a stamp of everything the build depends on: a carried build is reused only when it matches
ext_stamp() {
    {
        find "$ROOT/csrc" "$ROOT/setup.py" -type f | LC_ALL=C sort | xargs sha256sum | sed "s|$ROOT/||"
        "$PY" -c "import torch, platform; print(torch.__version__, torch.version.cuda, platform.python_version(),
'%d.%d' % torch.cuda.get_device_capability())"
    } | sha256sum | cut -d' ' -f1
}

# exit 0 when ebmfast._C loads with CUDA kernels for every op the benchmarks use
check_ext() {
    "$PY" - <<'EOF'
import sys, torch
import ebmfast
from ebmfast import _ext
info = _ext.build_info()
print("ebmfast", ebmfast.__file__, "build", info, "load error:", _ext.load_error())
missing = [op for op in ("langevin_step", "philox_normal", "mlp_energy_grad", "mlp_energy_grad_backward",
                         "mlp_langevin_chain")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", "CUDA")]
if not info.get("cuda") or missing:
    sys.exit(f"the extension has no CUDA kernels for {missing or 'any op'}")
print("CUDA kernels registered for langevin_step, philox_normal, mlp_energy_grad, mlp_energy_grad_backward, "
      "mlp_langevin_chain")
EOF
}

build_ext() {
    local cap
    cap=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || FATAL=1 fail build "no GPU capability"
    rm -f "$ROOT"/ebmfast/_C*.so "$WARM_STAMP"
    # one architecture (this GPU's): a build for several takes several times as long
    FATAL=1 step build env MAX_JOBS=16 TORCH_CUDA_ARCH_LIST="$cap" FORCE_CUDA=1 \
        "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e "$ROOT"
    if ! ls "$ROOT"/ebmfast/_C*.so >/dev/null 2>&1; then # an editable install that built out of place
        FATAL=1 step build_inplace env MAX_JOBS=16 TORCH_CUDA_ARCH_LIST="$cap" FORCE_CUDA=1 \
            "$PY" setup.py build_ext --inplace
    fi
    FATAL=1 step build_check check_ext
    mkdir -p "$WORK/ext"
    cp "$ROOT"/ebmfast/_C*.so "$WORK/ext/" && ext_stamp >"$WORK/ext/STAMP" && cp "$WORK/ext/STAMP" "$WARM_STAMP"
    EXT_READY=1
    EXT_BUILT=1
}

# ensure_ext [force]: the CUDA extension, from this machine (warm), the carried build, or a new build
ensure_ext() {
    ((EXT_READY)) && return 0
    if [[ "${1:-}" != force ]]; then
        # a warm machine keeps the last call's build: reuse it when the sources have not changed since
        if ls "$ROOT"/ebmfast/_C*.so >/dev/null 2>&1 && [[ -f $WARM_STAMP && "$(cat "$WARM_STAMP")" == "$(ext_stamp)" ]] \
            && check_ext >"$LOGS/ext_existing.log" 2>&1; then
            note "OK build: reusing this machine's build from an earlier call (warm machine, same sources)"
            EXT_READY=1
            return 0
        fi
        if [[ -f "$CARRY/gpu_ext.tar.gz" ]]; then
            local tmp
            tmp=$(mktemp -d)
            tar -xzf "$CARRY/gpu_ext.tar.gz" -C "$tmp"
            if [[ -f "$tmp/ext/STAMP" && "$(cat "$tmp/ext/STAMP")" == "$(ext_stamp)" ]]; then
                cp "$tmp"/ext/_C*.so "$ROOT/ebmfast/"
                if check_ext >"$LOGS/ext_carried.log" 2>&1; then
                    cp "$tmp/ext/STAMP" "$WARM_STAMP"
                    note "OK build: restored the carried extension (stamp matches csrc/, setup.py, torch, GPU)"
                    EXT_READY=1
                    return 0
                fi
                note "the carried extension does not load (logs/ext_carried.log): rebuilding"
            else
                note "the carried extension's stamp does not match this tree / torch / GPU: rebuilding"
            fi
        fi
    fi
    build_ext
}

restore_triton_cache() {
    if [[ -f "$CARRY/triton_cache.tar.gz" ]]; then
        mkdir -p "$TRITON_CACHE_DIR" && tar -xzf "$CARRY/triton_cache.tar.gz" -C "$TRITON_CACHE_DIR" \
            && note "restored the carried Triton cache ($(find "$TRITON_CACHE_DIR" -type f | wc -l) files)"
    fi
}

# pytest options this machine supports, into the array PYTEST_OPTS: the CI selection (not slow:
# the slow AOT grid alone takes ~10 min), a per-test timeout, parallel workers for the big suite
pytest_opts() {
    PYTEST_OPTS=(-p no:cacheprovider -q -rs --durations=15 -m "not slow")
    "$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST_OPTS+=(--timeout=300)
    if [[ "${1:-}" == parallel ]] && "$PY" -c "import xdist" 2>/dev/null; then
        PYTEST_OPTS+=(-n 8 --dist loadfile) # one file per worker: module fixtures (g++ harnesses) build once
    fi
}

# tests that skip without a GPU must have PASSED here: read them off the JUnit XML
check_junit() {
    "$PY" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
cases = []
for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    kids = {c.tag for c in tc}
    status = "failed" if kids & {"failure", "error"} else "skipped" if "skipped" in kids else "passed"
    skip = next((c.get("message", "") for c in tc if c.tag == "skipped"), "")
    cases.append((tc.get("classname", ""), tc.get("name", ""), status, skip))
print(f"{len(cases)} tests: " + ", ".join(f"{sum(c[2] == s for c in cases)} {s}" for s in ("passed", "failed", "skipped")))
for cls, name, status, why in cases:
    if status == "skipped":
        print(f"  skipped {cls}::{name}: {why[:160]}")
# (test-name predicate, minimum number that must pass, what it is)
required = [
    (lambda c, n: n.startswith("test_cuda_op_on_gpu"), 2, "CUDA mlp_energy_grad_backward op on the GPU (f32, f64)"),
    (lambda c, n: c.endswith("test_langevin_step") and "cuda" in n, 1, "langevin_step on the cuda backend"),
    (lambda c, n: c.endswith("test_mlp_triton_aot"), 1, "Triton kernels compile for sm_90 (ptxas)"),
]
bad = []
for pred, need, what in required:
    got = [c for c in cases if pred(c[0], c[1])]
    passed = sum(c[2] == "passed" for c in got)
    line = f"  required: {what}: {passed}/{len(got)} passed (need >= {need})"
    print(line)
    if passed < need or any(c[2] != "passed" for c in got):
        bad.append(line.strip())
if bad:
    sys.exit("GPU tests that must run here did not all pass:\n" + "\n".join(bad))
EOF
}

phase_test() {
    ensure_ext
    # WITHOUT the interpreter: tests/conftest.py only sets TRITON_INTERPRET=1 when it is unset
    export TRITON_INTERPRET=0
    step ebmfast_info "$PY" -m ebmfast.info
    # the GPU tests: those that skip without a GPU / nvcc-built extension / ptxas, and the MLP op
    # tests (their CPU kernels, now built together with the CUDA ones)
    pytest_opts
    step pytest_gpu "$PY" -m pytest "${PYTEST_OPTS[@]}" --junitxml="$RES/pytest_gpu.xml" \
        tests/ops/test_mlp_cuda_backward_emulated.py::test_cuda_op_on_gpu \
        tests/ops/test_langevin_step.py tests/ops/test_mlp_triton_aot.py \
        tests/ops/test_mlp_energy.py tests/ops/test_grad_norm_penalty.py tests/samplers tests/test_fallback.py
    step pytest_gpu_required check_junit "$RES/pytest_gpu.xml"
    # every CUDA / Triton MLP kernel on the GPU against float64 references (exit 1 on a failure)
    step mlp_gpu_check "$PY" bench/bench_mlp_gpu.py --check --out "$RES"
}

phase_suite() {
    ensure_ext
    export TRITON_INTERPRET=0
    pytest_opts parallel
    step pytest_suite "$PY" -m pytest "${PYTEST_OPTS[@]}" --junitxml="$RES/pytest_suite.xml" tests
}

phase_bench_mlp() {
    ensure_ext
    unset TRITON_INTERPRET
    local quick=()
    [[ "${GPU_SESSION_QUICK:-0}" == 1 ]] && quick=(--quick)
    step bench_mlp_gpu "$PY" bench/bench_mlp_gpu.py ${quick[@]+"${quick[@]}"} --out "$RES"
}

phase_bench_langevin() {
    ensure_ext
    unset TRITON_INTERPRET
    step bench_langevin "$PY" bench/bench_langevin_step.py --quick --out "$RES/langevin"
    # the script records a failed GPU part in its markdown and exits 0: make that a failure here
    if grep -q "GPU benchmark failed" "$RES"/langevin/*.md 2>/dev/null; then
        fail bench_langevin "its GPU part raised (see the markdown in results/langevin/)"
    fi
}

phase_langevin_full() {
    ensure_ext
    unset TRITON_INTERPRET
    step bench_langevin_full "$PY" bench/bench_langevin_step.py --out "$RES/langevin"
    if grep -q "GPU benchmark failed" "$RES"/langevin/*.md 2>/dev/null; then
        fail bench_langevin_full "its GPU part raised (see the markdown in results/langevin/)"
    fi
}

phase_fetch_wheels() {
    # here, with network access; the GPU machine has none. Pure-Python wheels, no dependencies
    # beyond torch (which the GPU machine has).
    mkdir -p "$CARRY/wheels"
    step fetch_wheels "$PY" -m pip download --no-deps --only-binary=:all: -d "$CARRY/wheels" \
        torchebm==0.8.9 ebmkit==0.16.0
}

main() {
    trap pack EXIT
    note "gpu_session.sh ${PHASES[*]} started $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT"
    local p
    for p in "${PHASES[@]}"; do
        case "$p" in
        env | build | rebuild | test | suite | bench | bench-mlp | bench-langevin | langevin-full | fetch-wheels) ;;
        *) FATAL=1 fail args "unknown phase '$p' (env build rebuild test suite bench bench-mlp bench-langevin langevin-full fetch-wheels)" ;;
        esac
    done
    if [[ " ${PHASES[*]} " == *" fetch-wheels "* ]]; then
        phase_fetch_wheels
        return 0
    fi
    phase_env
    install_peers
    restore_triton_cache
    for p in "${PHASES[@]}"; do
        case "$p" in
        env) ;;
        build) ensure_ext ;;
        rebuild) ensure_ext force ;;
        test) phase_test ;;
        suite) phase_suite ;;
        bench) phase_bench_mlp && phase_bench_langevin ;;
        bench-mlp) phase_bench_mlp ;;
        bench-langevin) phase_bench_langevin ;;
        langevin-full) phase_langevin_full ;;
        esac
    done
    if ((FAILURES)); then
        note "FINISHED with $FAILURES failed step(s) (GPU_SESSION_KEEP_GOING=1): ${PHASES[*]} in ${SECONDS}s"
        exit 1
    fi
    note "ALL DONE: ${PHASES[*]} in ${SECONDS}s"
}

export -f check_ext check_junit # run by `step` in a child bash
cd "$ROOT" || exit 2
# everything also goes to $OUT/session.log as it is printed, so a killed call still returns it
main 2>&1 | tee "$OUT/session.log"
exit "${PIPESTATUS[0]}"
