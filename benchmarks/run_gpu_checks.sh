#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU and CuPy:
# the environment, the gpu-marked tests (every op on 'cuda' against the CPU, gradchecks
# on 'cuda', training, no host transfers, checkpoints) and the GPU benchmarks against
# PyTorch (cuDNN), and every example and the CLI on cuda. Logs go to $OUT (default
# ./gpu-checks); the summary is printed last.
#
#   OUT=/tmp/gpu bash benchmarks/run_gpu_checks.sh [--all] [--cpu]
#
# --all also runs the rest of the test suite (the CPU tests) with the GPU present.
# --cpu also runs benchmarks/run_cpu_checks.sh (issue #17's CPU figures on two of this
# host's cores, often an Intel Xeon's; about 6 minutes) into $OUT/cpu.
set -u
ALL=0; CPU=0
for arg in "$@"; do
  case $arg in
    --all) ALL=1 ;;
    --cpu) CPU=1 ;;
    *) echo "run_gpu_checks.sh: unknown option $arg (--all, --cpu)"; exit 2 ;;
  esac
done
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

# Launches and wall time of a ResNet-20 step: batch norm's passes against its fused route,
# with SGD, and Adam's plain update against its fused step; the first line of each is the
# summary. (The fused routes are forced: on the GPU they become the default once these and
# the gpu-marked tests pass; see FUSED_ON_CUDA_BY_DEFAULT in kernels/norm.py, optim/adam.py.)
for run in "numba sgd fused_cuda" "fused sgd fused_cuda" "fused adam single_tensor" "fused adam fused_cuda"; do
  set -- $run
  timeout 120 $PY benchmarks/profile_gpu_step.py --steps 5 --top 8 --batch-norm $1 --optimizer $2 --adam $3 \
      > "$OUT/profile_resnet20_$1_$2_$3.txt" 2>&1
done

# Every example and the CLI end to end on cuda, on small settings (the same commands run on
# the CPU in a few seconds each). The MNIST ones need $TINYDL_MNIST_DIR (or ../shared/data/mnist).
mkdir -p "$OUT/examples"
example() {
  local name=$1; shift
  timeout "${EXAMPLE_TIMEOUT:-300}" "$@" > "$OUT/examples/$name.txt" 2>&1
  echo "$name exit code $?" >> "$OUT/examples.txt"
}
: > "$OUT/examples.txt"
E="$OUT/examples"
example deconvnet_visualize $PY examples/deconvnet_visualize.py --n-train 256 --n-probe 32 --epochs 1 --device cuda --out "$E/deconvnet"
example plain_vs_residual $PY examples/plain_vs_residual.py --depths 20 --train-size 256 --test-size 64 --epochs 1 --device cuda --out "$E/plain"
example train_bilinear_cnn $PY examples/train_bilinear_cnn.py --train-per-class 4 --test-per-class 2 --epochs 1 --device cuda --out "$E/bilinear"
example train_deep_snake $PY examples/train_deep_snake.py --num-train 32 --num-test 8 --steps 5 --device cuda --out "$E/snake"
example train_faster_rcnn $PY examples/train_faster_rcnn.py --num-train 16 --num-test 8 --steps 5 --device cuda --out "$E/frcnn" --quiet
example train_fcn $PY examples/train_fcn.py --train-size 16 --test-size 8 --epochs 1 --device cuda --out "$E/fcn"
example train_magicpoint $PY examples/train_magicpoint.py --num-train 32 --num-test 8 --steps 5 --device cuda --out "$E/magicpoint"
example resnet_mnist $PY examples/resnet_mnist.py --train-size 256 --test-size 64 --epochs 1 --device cuda --out "$E/resnet_mnist"
example notes_mnist_experiment $PY examples/notes_mnist_experiment.py --n-train 256 --n-test 64 --lrs 0.1 --momenta 0.9 --epochs 1 --device cuda --out "$E/notes" --quiet
example zfnet_experiments $PY examples/zfnet_experiments.py --n-train 256 --n-probe 32 --epochs 1 --evolution-epochs 1 --n-occlusion 1 --device cuda --out "$E/zfnet" --quiet
example detection_history $PY examples/detection_history.py --num-train 8 --num-test 4 --steps 3 --device cuda --out "$E/history" --quiet
example hessian_vector_product $PY examples/hessian_vector_product.py --device cuda
example gradient_penalty $PY examples/gradient_penalty.py --steps 20 --log-every 10 --device cuda --out "$E/wgan_gp"
example newton_method $PY examples/newton_method.py --max-gd 200 --device cuda
example cli $PY -m tinydl.cli train resnet20 --dataset shapes --epochs 1 --train-size 256 --test-size 64 --device cuda --out "$E/cli"

if [ "$ALL" = 1 ]; then
  timeout "${ALL_TIMEOUT:-400}" $PY -m pytest -q -m "not gpu" tests -n "$WORKERS" -p no:cacheprovider \
      --timeout 300 --tb=short -rfE > "$OUT/cpu_tests.txt" 2>&1
  echo "cpu tests exit code $?" >> "$OUT/cpu_tests.txt"
fi

if [ "$CPU" = 1 ]; then
  OUT="$OUT/cpu" bash benchmarks/run_cpu_checks.sh > "$OUT/cpu_checks.txt" 2>&1
fi

echo "================ summary"
cat "$OUT/env.txt"
grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.txt" | cut -c1-300 | head -60
tail -3 "$OUT/gpu_tests.txt"
[ -f "$OUT/cpu_tests.txt" ] && { grep -E "^(FAILED|ERROR)" "$OUT/cpu_tests.txt" | cut -c1-300 | head -20; tail -2 "$OUT/cpu_tests.txt"; }
cat "$OUT/examples.txt"
cat "$OUT/bench_gpu.txt" | tail -25
head -qn 1 "$OUT"/profile_resnet20_*.txt
if [ -f "$OUT/cpu_checks.txt" ]; then
  sed -n '/================ CPU summary/,$p' "$OUT/cpu_checks.txt"
fi
