"""The gpu-marked tests, run on the CPU with a NumPy stand-in for CuPy (tests/cupy_standin).

Most sessions have no GPU, so tinydl's 'cuda' code paths would otherwise run only when one
is lent. The stand-in's arrays are NumPy's, of a class of their own that tinydl takes for
device arrays and that refuses host arrays beside them, as CuPy does: what this catches is
backend discipline (a CPU tensor made on the way, a NumPy call on device data, optimizer
state or a checkpoint left on the wrong device), not CUDA code. The tests that need what a
CPU cannot give (a CUDA kernel, a stream, NCCL) are skipped by the stand-in itself.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
STANDIN = TESTS / "cupy_standin"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: the gpu tests run for real")
def test_gpu_marked_tests_pass_with_a_numpy_standin_for_cupy():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(TESTS), "-p", "no:cacheprovider",
               "-p", "no:xdist", "--tb=short", "-rf",
               # its MPI child processes do not see the stand-in's skips
               "--deselect", "tests/test_distributed.py::test_nccl_backend_on_one_gpu"]
    run = subprocess.run(command, cwd=TESTS.parent, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=900)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, f"{summary}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert " passed" in summary, summary        # the stand-in was taken for a GPU: tests ran
