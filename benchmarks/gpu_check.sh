#!/usr/bin/env bash
# GPU check: install autodiffeq without network, run the `gpu` tests and benchmarks/gpu.py.
#
# Usage, from the repository root on a machine with an NVIDIA GPU and CuPy:
#
#     bash benchmarks/gpu_check.sh [OUTDIR]        # default OUTDIR: ${OUT:-benchmarks/results/gpu}
#
# Steps (about 8 minutes at most with the default budgets):
#   1. print the GPUs (nvidia-smi -L) and the Python version;
#   2. make autograd importable: if it is not, install it from the wheels in .whl/ (repository
#      root) into a temporary folder put on PYTHONPATH (nothing is installed into the Python
#      environment itself); fail with a message naming what is missing when there is no wheel;
#   3. install autodiffeq itself from this tree (no network, no dependencies) into that
#      temporary folder, so that its entry points (the plugins, the pytest plugin) are
#      registered; setuptools >= 77 comes from .whl/ when the environment's is older or absent;
#      then `python -m autodiffeq plugins` must list the `cupy` backend as available;
#   4. pytest -m gpu on tests/ (stops after 10 failures, TEST_TIMEOUT seconds in all), in
#      order: the direct GPU tests (tests/gpu), then the conformance and gradient kits' cases
#      of one representative solver per family (GPU_KIT_SELECTION, a pytest -k expression;
#      every sensitivity method is paired with these solvers), then, in the time left, every
#      other `gpu` case; output in OUTDIR/gpu_tests.log;
#   5. benchmarks/gpu.py (always run, BENCH_TIMEOUT seconds, --budget a little less so that
#      it stops its own parts in time), output in OUTDIR/gpu_bench.log and OUTDIR/gpu.csv.
# Exit status: 0 when the cupy backend was available, the tests passed and the benchmark ran
# every part; otherwise non-zero (the steps after a failure still run).
#
# Environment: PYTHON (default python3), TEST_TIMEOUT (default 240 s), BENCH_TIMEOUT (default
# 200 s), PER_TEST_TIMEOUT (pytest-timeout's --timeout when that plugin is installed; 120 s),
# GPU_BENCH_ARGS (extra arguments for benchmarks/gpu.py, e.g. "--parts ensemble,stiff"),
# GPU_KIT_SELECTION (default "Tsit5 or Vern7 or Rodas5P or -EM- or SRIW1 or SRA1").
#
# Preparing .whl/ on a machine with network (for a GPU machine without it; .whl/ is ignored
# by git). The wheels are pure Python; the flags pick what pip would choose for Python 3.12 on
# x86-64 Linux:
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux2014_x86_64 \
#         --platform manylinux_2_17_x86_64 -d .whl autograd "setuptools>=77"
#
# autograd's own requirements (`unzip -p .whl/autograd-*.whl '*/METADATA' | grep
# ^Requires-Dist`) are numpy<3 (and scipy for an extra), which the GPU machine has; add any
# other that your machine lacks to the same command. setuptools is needed only to build
# autodiffeq (pyproject.toml: setuptools>=77) when the machine's own is older or missing.
set -u

PYTHON=${PYTHON:-python3}
OUTDIR=${1:-${OUT:-benchmarks/results/gpu}}
TEST_TIMEOUT=${TEST_TIMEOUT:-240}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-200}
PER_TEST_TIMEOUT=${PER_TEST_TIMEOUT:-120}
GPU_BENCH_ARGS=${GPU_BENCH_ARGS:-}
GPU_KIT_SELECTION=${GPU_KIT_SELECTION:-"Tsit5 or Vern7 or Rodas5P or -EM- or SRIW1 or SRA1"}

if [ ! -f pyproject.toml ] || [ ! -f benchmarks/gpu.py ]; then
    echo "gpu_check: run this from the repository root (bash benchmarks/gpu_check.sh)" >&2
    exit 2
fi
mkdir -p "$OUTDIR"
SITE=$(mktemp -d "${TMPDIR:-/tmp}/autodiffeq-gpu-site.XXXXXX")
BUILD_TOOLS=$(mktemp -d "${TMPDIR:-/tmp}/autodiffeq-gpu-build.XXXXXX")
trap 'rm -rf "$SITE" "$BUILD_TOOLS"' EXIT
STATUS=0
note_failure() {  # note_failure CODE MESSAGE: remember the first failure, keep going
    echo "gpu_check: FAILED: $2" >&2
    if [ "$STATUS" -eq 0 ]; then STATUS=$1; fi
}
step() { echo; echo "=== [$SECONDS s] $*"; }

step "machine"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine?)"
fi
"$PYTHON" --version
echo "python: $(command -v "$PYTHON"); install folder (PYTHONPATH): $SITE; output: $OUTDIR"

# wheel_for NAME: the newest wheel of NAME in .whl/ (empty when none)
wheel_for() {
    ls -1 .whl/"$1"-*.whl 2>/dev/null | sort -V | tail -n 1
}

step "autograd"
if "$PYTHON" -c "import autograd" >/dev/null 2>&1; then
    echo "autograd is importable: $("$PYTHON" -c 'import autograd, os; print(os.path.dirname(autograd.__file__))')"
else
    whl=$(wheel_for autograd)
    if [ -z "$whl" ]; then
        echo "gpu_check: autograd is not importable by $PYTHON and there is no autograd wheel" \
             "in .whl/ (see the top of this script for how to download it)." >&2
        echo "gpu_check: missing: autograd (and its requirement numpy<3)" >&2
        exit 3
    fi
    echo "installing $whl into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$SITE" "$whl" || { echo "gpu_check: installing $whl failed" >&2; exit 3; }
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "import autograd" \
        || { echo "gpu_check: autograd still not importable" >&2; exit 3; }
    echo "autograd from $whl"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

step "autodiffeq (this tree, no network, into $SITE)"
build_path=""
if ! "$PYTHON" -c "
import sys, setuptools
major = int(setuptools.__version__.split('.')[0])
sys.exit(0 if major >= 77 else 1)" >/dev/null 2>&1; then
    whl=$(wheel_for setuptools)
    if [ -n "$whl" ]; then
        echo "setuptools >= 77 is not importable: using $whl for the build only"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$BUILD_TOOLS" "$whl" && build_path="$BUILD_TOOLS:"
    else
        echo "setuptools >= 77 is not importable and .whl/ has no setuptools wheel: trying anyway"
    fi
fi
if ! PYTHONPATH="$build_path$PYTHONPATH" "$PYTHON" -m pip install -q --no-deps \
        --no-build-isolation --no-index --no-compile --no-cache-dir --target "$SITE" . ; then
    note_failure 4 "pip could not install autodiffeq from this tree (setuptools >= 77 missing?)"
fi
"$PYTHON" -c "import autodiffeq; print('autodiffeq', autodiffeq.__version__ if hasattr(autodiffeq, '__version__') else '', 'from', autodiffeq.__file__)" \
    || note_failure 4 "autodiffeq does not import"
plugins=$("$PYTHON" -m autodiffeq plugins 2>&1)
cupy_line=$(printf '%s\n' "$plugins" | grep -E '^[[:space:]]+backend[[:space:]]+cupy[[:space:]]' | head -n 1)
if [ -z "$cupy_line" ]; then
    printf '%s\n' "$plugins" | head -n 40
    note_failure 5 "'python -m autodiffeq plugins' lists no cupy backend (entry points not registered?)"
else
    echo "$cupy_line"
    case "$cupy_line" in
        *unavailable*) note_failure 5 "the cupy backend is not available here (see the line above)" ;;
        *available*) echo "cupy backend: available" ;;
        *) note_failure 5 "unexpected plugins line for cupy" ;;
    esac
fi

step "pytest -m gpu (at most $TEST_TIMEOUT s) -> $OUTDIR/gpu_tests.log"
timeout_opt=()
if "$PYTHON" -c "import pytest_timeout" >/dev/null 2>&1; then
    timeout_opt=(--timeout "$PER_TEST_TIMEOUT")
fi
: > "$OUTDIR/gpu_tests.log"
test_rc=0
run_tests() {  # run_tests LABEL SECONDS REQUIRED PYTEST-ARGS...: one pytest run, appended
    # to the log; REQUIRED=no: running out of time is reported, not counted as a failure
    local label=$1 seconds=$2 required=$3 rc
    shift 3
    if [ "$seconds" -le 5 ]; then
        echo "gpu tests ($label): no time left" | tee -a "$OUTDIR/gpu_tests.log"
        return
    fi
    echo "--- gpu tests ($label, at most $seconds s)" | tee -a "$OUTDIR/gpu_tests.log"
    timeout "$seconds" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider --maxfail=10 -rs \
        ${timeout_opt[@]+"${timeout_opt[@]}"} "$@" 2>&1 | tee -a "$OUTDIR/gpu_tests.log"
    rc=${PIPESTATUS[0]}
    case "$rc" in
        0) echo "gpu tests ($label): passed" ;;
        124) if [ "$required" = yes ]; then
                 note_failure 6 "gpu tests ($label): stopped after $seconds s"
             else
                 echo "gpu tests ($label): not all ran in $seconds s (informational)"
                 rc=0
             fi ;;
        5) note_failure 6 "gpu tests ($label): none collected" ;;
        *) note_failure 6 "gpu tests ($label): pytest exit status $rc" ;;
    esac
    if [ "$test_rc" -eq 0 ]; then test_rc=$rc; fi
}
tests_start=$SECONDS
run_tests "direct" $((TEST_TIMEOUT / 4)) yes tests/gpu
run_tests "kits, one solver per family" $((TEST_TIMEOUT - (SECONDS - tests_start))) yes \
    -k "$GPU_KIT_SELECTION" --ignore=tests/gpu tests
run_tests "every other gpu case" $((TEST_TIMEOUT - (SECONDS - tests_start))) no \
    -k "not ($GPU_KIT_SELECTION)" --ignore=tests/gpu tests

step "benchmarks/gpu.py (at most $BENCH_TIMEOUT s) -> $OUTDIR/gpu_bench.log, $OUTDIR/gpu.csv"
budget=$((BENCH_TIMEOUT > 60 ? BENCH_TIMEOUT - 20 : BENCH_TIMEOUT * 2 / 3))
# shellcheck disable=SC2086  # GPU_BENCH_ARGS is split on purpose
timeout "$BENCH_TIMEOUT" "$PYTHON" benchmarks/gpu.py --out "$OUTDIR" --budget "$budget" \
    $GPU_BENCH_ARGS 2>&1 | tee "$OUTDIR/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
case "$bench_rc" in
    0) echo "benchmark: every part ran" ;;
    124) note_failure 7 "benchmark: stopped after $BENCH_TIMEOUT s (BENCH_TIMEOUT)" ;;
    2) note_failure 7 "benchmark: the backend under test is not usable here (peers only)" ;;
    *) note_failure 7 "benchmark: exit status $bench_rc (a part failed: see the log)" ;;
esac

step "done: tests $test_rc, benchmark $bench_rc; logs in $OUTDIR; exit $STATUS"
exit "$STATUS"
