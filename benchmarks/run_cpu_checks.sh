#!/usr/bin/env bash
# Issue #17's CPU checks on whatever CPU this is, on two cores as the issue's Xeon had:
# lscpu's model name, bench_alone.py (tinydl / PyTorch, every row), what Numba's 512-bit
# vectors are worth here (the steps without / with them), and whether the conv
# dispatcher's choice is the fastest route for each ResNet-20 layer here
# (bench_routes.py). For a new CPU, e.g. the host of a lent GPU machine, which is often an
# Intel Xeon (run_gpu_checks.sh --cpu runs this too). About 6 minutes, at most BUDGET
# seconds (default 540; see _budget.sh). Logs go to $OUT (default ./cpu-checks); the
# summary is printed last.
#
#   OUT=/tmp/cpu bash benchmarks/run_cpu_checks.sh          # CORES=0,1 by default
set -u
cd "$(dirname "$0")/.."
. benchmarks/_budget.sh
OUT=${OUT:-cpu-checks}
CORES=${CORES:-0,1}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

# Both libraries start one thread per core they may use (their defaults count every core
# of the machine, which on the pinned cores would only make them wait for each other).
threads=$(echo "$CORES" | tr ',' '\n' | wc -l)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads NUMBA_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
PIN=""
if command -v taskset > /dev/null; then
  PIN="taskset -c $CORES"
fi

{
  lscpu | grep -E "^(Model name|Socket|Core|Thread|CPU\(s\)|L2|L3)"
  grep -o -w -E "avx512f|avx512_bf16|amx_tile" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  echo "pinned: ${PIN:-no (taskset missing)}, $threads threads each"
  $PY -c "import numba, numpy, torch, tinydl; print('numba', numba.__version__, '| numpy', numpy.__version__,
'| torch', torch.__version__, '| wide vectors in the tinydl command:', tinydl.backends.cpu.wide_vector_environment() is not None)"
} > "$OUT/env.txt" 2>&1

: > "$OUT/bench_alone.txt"; : > "$OUT/wide_vectors.txt"; : > "$OUT/routes_resnet20.txt"
# bench_alone.py prints its table after every round: a stage stopped by the budget still tells.
stage "$OUT/bench_alone.txt" 300 $PIN $PY benchmarks/bench_alone.py --rounds 3
# The tinydl child without 512-bit vectors against one as the tinydl command runs.
stage "$OUT/wide_vectors.txt" 200 $PIN $PY benchmarks/bench_alone.py --rounds 2 --only "train step" \
    --wide-vectors off --against .
stage "$OUT/routes_resnet20.txt" 150 $PIN $PY benchmarks/bench_routes.py --net resnet20 --rounds 3

echo "================ CPU summary"
cat "$OUT/env.txt"
for f in bench_alone wide_vectors; do      # the last table each printed, and how it ended
  echo "---- $f"
  awk '/^each library alone/ { last = "" } { last = last $0 "\n" } END { printf "%s", last }' "$OUT/$f.txt"
done
echo "---- routes_resnet20"
tail -22 "$OUT/routes_resnet20.txt"
