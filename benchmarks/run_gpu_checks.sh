#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU and CuPy:
# the environment, the gpu-marked tests (every op on 'cuda' against the CPU, gradchecks
# on 'cuda', training, no host transfers, checkpoints) and the GPU benchmarks against
# PyTorch (cuDNN). Logs go to $OUT (default ./gpu-checks); the summary is printed last.
#
#   OUT=/tmp/gpu bash benchmarks/run_gpu_checks.sh [--all]
#
# --all also runs the rest of the test suite (the CPU tests) with the GPU present.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-8}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import cupy, numba, numpy, torch; print('cupy', cupy.__version__, '| numba', numba.__version__,
'| numpy', numpy.__version__, '| torch', torch.__version__, '| cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/env.txt"

# The gpu-marked tests, spread over a few processes sharing the one GPU.
timeout "${TEST_TIMEOUT:-300}" $PY -m pytest -q -m gpu tests -n "$WORKERS" -p no:cacheprovider \
    --timeout 120 --tb=short -rfE > "$OUT/gpu_tests.txt" 2>&1
echo "gpu tests exit code $?" >> "$OUT/gpu_tests.txt"

timeout "${BENCH_TIMEOUT:-240}" $PY benchmarks/bench_conv.py --device cuda --resnet50 \
    --repeat 10 --rounds 3 > "$OUT/bench_gpu.txt" 2>&1
echo "benchmark exit code $?" >> "$OUT/bench_gpu.txt"

if [ "${1:-}" = "--all" ]; then
  timeout "${ALL_TIMEOUT:-400}" $PY -m pytest -q -m "not gpu" tests -n "$WORKERS" -p no:cacheprovider \
      --timeout 300 --tb=short -rfE > "$OUT/cpu_tests.txt" 2>&1
  echo "cpu tests exit code $?" >> "$OUT/cpu_tests.txt"
fi

echo "================ summary"
cat "$OUT/env.txt"
grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.txt" | cut -c1-300 | head -60
tail -3 "$OUT/gpu_tests.txt"
[ -f "$OUT/cpu_tests.txt" ] && { grep -E "^(FAILED|ERROR)" "$OUT/cpu_tests.txt" | cut -c1-300 | head -20; tail -2 "$OUT/cpu_tests.txt"; }
cat "$OUT/bench_gpu.txt" | tail -25
