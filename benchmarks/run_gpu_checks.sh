#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU and CuPy:
# the environment, the gpu-marked tests (every op on 'cuda' against the CPU, gradchecks
# on 'cuda', training, no host transfers, checkpoints), the GPU benchmarks against
# PyTorch (cuDNN), and every example and the CLI on cuda.
#
#   OUT=/tmp/gpu BUDGET=480 bash benchmarks/run_gpu_checks.sh [--all] [--cpu]
#
# --all also runs the rest of the test suite (the CPU tests) with the GPU present.
# --cpu also runs benchmarks/run_cpu_checks.sh (issue #17's CPU figures) on two of the
# host's cores, often an Intel Xeon's, beside the GPU stages, which keep to the other cores.
#
# Made for a lent machine (the device tool: 10 minutes a command, 15 a session with the
# start, 8 files back): it ends within BUDGET seconds (default 540; each stage is cut to
# what is left, in the order of their value: see _budget.sh), prints its summary last
# (also $OUT/summary.txt), and leaves the logs as one file, $OUT/logs.tar.gz.
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
. benchmarks/_budget.sh
OUT=${OUT:-gpu-checks}
LOG="$OUT/logs"
mkdir -p "$LOG/examples"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-8}

# With --cpu the CPU checks get cores 0 and 1 to themselves, from the start.
PIN=""
cores=$(nproc)
if [ "$CPU" = 1 ]; then
  if command -v taskset > /dev/null && [ "$cores" -ge 6 ]; then
    PIN="taskset -c 2-$((cores - 1))"
  fi
  OUT="$LOG/cpu" BUDGET=$((BUDGET - 10)) CORES=0,1 bash benchmarks/run_cpu_checks.sh > "$LOG/cpu_checks.txt" 2>&1 &
  cpu_checks=$!
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import cupy, numba, numpy, torch; print('cupy', cupy.__version__, '| numba', numba.__version__,
'| numpy', numpy.__version__, '| torch', torch.__version__, '| cudnn', torch.backends.cudnn.version())"
  echo "GPU stages pinned: ${PIN:-no}; budget $BUDGET s"
} > "$LOG/env.txt" 2>&1

# The gpu-marked tests, spread over a few processes sharing the one GPU.
stage "$LOG/gpu_tests.txt" 240 $PIN $PY -m pytest -q -m gpu tests -n "$WORKERS" -p no:cacheprovider \
    --timeout 120 --tb=short -rfE

# tinydl against PyTorch on the GPU: training steps first (eager, then tinydl's as a CUDA
# graph), then conv rows (bench_conv.py).
stage "$LOG/bench_gpu.txt" 200 $PIN $PY benchmarks/bench_conv.py --device cuda --resnet50 --cuda-graph \
    --repeat 10 --rounds 3
# The same with tinydl's convolutions on cuDNN (PyTorch's wheel brings libcudnn).
stage "$LOG/bench_gpu_cudnn.txt" 150 $PIN $PY benchmarks/bench_conv.py --device cuda --resnet50 --cuda-graph \
    --cudnn --repeat 5 --rounds 2

# Launches and wall time of a ResNet-20 step: batch norm's passes against its fused route,
# with SGD, and Adam's plain update against its fused step; the first line of each is the
# summary. (The fused routes are forced: on the GPU they become the default once these and
# the gpu-marked tests pass; see FUSED_ON_CUDA_BY_DEFAULT in kernels/norm.py, optim/adam.py.)
for run in "numba sgd fused_cuda" "fused sgd fused_cuda" "fused adam single_tensor" "fused adam fused_cuda"; do
  set -- $run
  stage "$LOG/profile_resnet20_$1_$2_$3.txt" 60 $PIN $PY benchmarks/profile_gpu_step.py --steps 5 --top 8 \
      --batch-norm $1 --optimizer $2 --adam $3
done

# Every example and the CLI end to end on cuda, on small settings (the same commands run on
# the CPU in a few seconds each). The MNIST ones need $TINYDL_MNIST_DIR (or ../shared/data/mnist).
# Their logs go to $LOG/examples, what they write (figures, checkpoints) to a scratch folder.
E="$LOG/examples"
X=$(mktemp -d)
example() {
  local name=$1
  shift
  stage "$E/$name.txt" 90 $PIN "$@"
}
example deconvnet_visualize $PY examples/deconvnet_visualize.py --n-train 256 --n-probe 32 --epochs 1 --device cuda --out "$X/deconvnet"
example plain_vs_residual $PY examples/plain_vs_residual.py --depths 20 --train-size 256 --test-size 64 --epochs 1 --device cuda --out "$X/plain"
example train_bilinear_cnn $PY examples/train_bilinear_cnn.py --train-per-class 4 --test-per-class 2 --epochs 1 --device cuda --out "$X/bilinear"
example train_deep_snake $PY examples/train_deep_snake.py --num-train 32 --num-test 8 --steps 5 --device cuda --out "$X/snake"
example train_faster_rcnn $PY examples/train_faster_rcnn.py --num-train 16 --num-test 8 --steps 5 --device cuda --out "$X/frcnn" --quiet
example train_fcn $PY examples/train_fcn.py --train-size 16 --test-size 8 --epochs 1 --device cuda --out "$X/fcn"
example train_magicpoint $PY examples/train_magicpoint.py --num-train 32 --num-test 8 --steps 5 --device cuda --out "$X/magicpoint"
example resnet_mnist $PY examples/resnet_mnist.py --train-size 256 --test-size 64 --epochs 1 --device cuda --out "$X/resnet_mnist"
example notes_mnist_experiment $PY examples/notes_mnist_experiment.py --n-train 256 --n-test 64 --lrs 0.1 --momenta 0.9 --epochs 1 --device cuda --out "$X/notes" --quiet
example zfnet_experiments $PY examples/zfnet_experiments.py --n-train 256 --n-probe 32 --epochs 1 --evolution-epochs 1 --n-occlusion 1 --device cuda --out "$X/zfnet" --quiet
example detection_history $PY examples/detection_history.py --num-train 8 --num-test 4 --steps 3 --device cuda --out "$X/history" --quiet
example hessian_vector_product $PY examples/hessian_vector_product.py --device cuda
example gradient_penalty $PY examples/gradient_penalty.py --steps 20 --log-every 10 --device cuda --out "$X/wgan_gp"
example newton_method $PY examples/newton_method.py --max-gd 200 --device cuda
example cli $PY -m tinydl.cli train resnet20 --dataset shapes --epochs 1 --train-size 256 --test-size 64 --device cuda --out "$X/cli"
example cli_cuda_graph $PY -m tinydl.cli train resnet20 --dataset shapes --epochs 2 --train-size 256 --test-size 64 --device cuda --cuda-graph --out "$X/cli_graph"
example cli_cudnn_graph $PY -m tinydl.cli train resnet20 --dataset shapes --epochs 2 --train-size 256 --test-size 64 --device cuda --cudnn --cuda-graph --out "$X/cli_cudnn"

if [ "$ALL" = 1 ]; then
  stage "$LOG/cpu_tests.txt" 400 $PIN $PY -m pytest -q -m "not gpu" tests -n "$WORKERS" -p no:cacheprovider \
      --timeout 300 --tb=short -rfE
fi
[ "$CPU" = 1 ] && wait "$cpu_checks"

{
  echo "================ summary"
  cat "$LOG/env.txt"
  grep -E "^(FAILED|ERROR)" "$LOG/gpu_tests.txt" | cut -c1-200 | head -30
  tail -3 "$LOG/gpu_tests.txt"
  [ -f "$LOG/cpu_tests.txt" ] && { grep -E "^(FAILED|ERROR)" "$LOG/cpu_tests.txt" | cut -c1-300 | head -20; tail -2 "$LOG/cpu_tests.txt"; }
  echo "---- examples (exit code 0: ran to the end)"
  for f in "$E"/*.txt; do echo "$(basename "$f" .txt): $(tail -1 "$f")"; done
  echo "---- bench_gpu"
  grep "CUDA graph: " "$LOG/bench_gpu.txt" | cut -c1-400
  tail -22 "$LOG/bench_gpu.txt"
  echo "---- bench_gpu with --cudnn"
  grep "CUDA graph: " "$LOG/bench_gpu_cudnn.txt" | cut -c1-400
  tail -22 "$LOG/bench_gpu_cudnn.txt"
  echo "---- profiles (launches and ms per step)"
  head -qn 1 "$LOG"/profile_resnet20_*.txt
  [ -f "$LOG/cpu_checks.txt" ] && sed -n '/================ CPU summary/,$p' "$LOG/cpu_checks.txt"
} > "$OUT/summary.txt"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -r "$LOG"
rm -rf "$X"
cat "$OUT/summary.txt"
