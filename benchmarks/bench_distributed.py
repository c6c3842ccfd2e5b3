"""Data-parallel costs on this machine: an all-reduce, and ResNet-20 on 1 process x 2 threads
against 2 ranks x 1 thread.

    python benchmarks/bench_distributed.py            # needs mpiexec (pip install -e ".[dist]")

1. ``dist.all_reduce`` (SUM, MPI backend) of 25.6 M float32 -- a ResNet-50
   gradient, 102.4 MB -- on 2 ranks: seconds, and the bus bandwidth
   2(N-1)/N x bytes / seconds that the ring all-reduce model uses.
2. ResNet-20 training steps (SGD momentum, CIFAR-sized 3x32x32 float32, global
   batch 128): one process with 2 Numba/BLAS threads on the whole batch, then 2
   ranks with 1 thread each on 64 images, DistributedDataParallel averaging
   the gradients. Prints images per second of the whole job.

Each part runs in fresh processes started by this driver. Times: best and
median over the timed repetitions (after warm-up), rank 0's clock.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOATS = 25_600_000
BATCH = 128


def _limit_threads(n):
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


def _report(name, times, extra=""):
    times = np.asarray(times)
    print(f"RESULT {name} best {times.min():.4f} median {np.median(times):.4f} {extra}", flush=True)


def worker_allreduce(repeat):
    import tinydl as td
    import tinydl.distributed as dist
    dist.init_process_group("mpi")
    t = td.ones(FLOATS, dtype=td.float32)
    times = []
    for i in range(repeat + 1):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(t)
        if i:                            # the first one pays for page faults and MPI's set-up
            times.append(time.perf_counter() - start)
    n = dist.get_world_size()
    if dist.get_rank() == 0:
        best = min(times)
        _report("allreduce", times, f"bus_GBps {2 * (n - 1) / n * 4 * FLOATS / best / 1e9:.2f} ranks {n}")


def worker_train(threads, steps, distributed):
    import models
    import tinydl as td
    import tinydl.nn.functional as F
    td.backends.cpu.tune()          # as the CLI does, in both set-ups
    _limit_threads(threads)
    rank, world = 0, 1
    td.manual_seed(0)
    model = models.builder("resnet20")(num_classes=10)
    if distributed:
        import tinydl.distributed as dist
        dist.init_process_group("mpi")
        rank, world = dist.get_rank(), dist.get_world_size()
        model = td.nn.parallel.DistributedDataParallel(model)
    opt = td.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = td.tensor(rng.random((BATCH // world, 3, 32, 32), dtype=np.float32))
    y = td.tensor(rng.integers(0, 10, BATCH // world))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:                       # two warm-up steps (workspaces, caches)
            times.append(time.perf_counter() - start)
    if rank == 0:
        _report(f"train_{world}x{threads}", times, f"images_per_s {BATCH / min(times):.1f}")


def run(command, threads):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    if out.returncode or not lines:
        sys.exit(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
    return lines[0].split()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=("allreduce", "train"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=10, help="timed ResNet-20 steps (default 10)")
    parser.add_argument("--repeat", type=int, default=10, help="timed all-reduces (default 10)")
    args = parser.parse_args()
    if args.worker == "allreduce":
        return worker_allreduce(args.repeat)
    if args.worker == "train":
        return worker_train(args.threads, args.steps, args.distributed)

    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        sys.exit("bench_distributed: mpiexec not found; pip install -e '.[dist]'")
    me = [sys.executable, os.path.abspath(__file__)]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU: {model}, {os.cpu_count()} cores; MPI: mpiexec -n 2 ({mpiexec})")

    r = run([mpiexec, "-n", "2", *me, "--worker", "allreduce", "--repeat", str(args.repeat)], 1)
    print(f"all-reduce of {FLOATS / 1e6:.1f} M float32 ({4 * FLOATS / 1e6:.1f} MB), 2 ranks: best {float(r[3]):.3f} s, "
          f"median {float(r[5]):.3f} s; bus bandwidth 2(N-1)/N x size / time = {r[7]} GB/s")
    single = run([*me, "--worker", "train", "--threads", "2", "--steps", str(args.steps)], 2)
    double = run([mpiexec, "-n", "2", *me, "--worker", "train", "--threads", "1", "--distributed",
                  "--steps", str(args.steps)], 1)
    print(f"ResNet-20 training, global batch {BATCH} (3x32x32 float32), step time best / median:")
    for label, r in (("1 process x 2 threads", single), ("2 ranks x 1 thread (DDP)", double)):
        print(f"  {label:26s} {1000 * float(r[3]):7.1f} / {1000 * float(r[5]):7.1f} ms   {r[7]} images/s (best)")
    print(f"  2 ranks / 1 process throughput: {float(double[7]) / float(single[7]):.2f}x")


if __name__ == "__main__":
    main()
