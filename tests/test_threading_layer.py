"""Numba's thread pool next to PyTorch's OpenMP runtime, and parallel kernels called
from several Python threads (tinydl/kernels/_dispatch.py)."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code, **env_overrides):
    """Run ``code`` in a fresh interpreter with a clean threading environment; its stdout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "TINYDL_NO_NUMBA")}
    env.update(env_overrides)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"child failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_torch_imported_first_switches_numba_to_its_own_pool():
    out = run_child("""
        import torch
        from tinydl.kernels import _dispatch
        openmp_before = _dispatch._openmp_already_loaded()
        import numba, numpy as np
        from tinydl.kernels import relu_forward_numba
        relu_forward_numba(np.ones(_dispatch.PARALLEL_MIN_SIZE, np.float32))    # big enough for the threads
        print(openmp_before, numba.threading_layer())
    """)
    if out[0] != "True":
        pytest.skip("this torch build loads no OpenMP runtime at import")
    assert out[1] == "workqueue"


def test_tinydl_first_keeps_numbas_default_and_passive_openmp():
    out = run_child("""
        import tinydl, numba, os
        import torch
        print(numba.config.THREADING_LAYER, os.environ["OMP_WAIT_POLICY"])
    """)
    assert out == ["default", "PASSIVE"]


def test_an_explicit_user_choice_wins():
    out = run_child("""
        import torch
        import tinydl, numba
        print(numba.config.THREADING_LAYER)
    """, OMP_WAIT_POLICY="ACTIVE")
    assert out == ["default"]


def test_parallel_kernels_from_many_threads_on_the_workqueue_pool():
    # The workqueue pool aborts the process when two threads enter it at once;
    # tinydl's kernels take a lock, so DataLoader workers and the main thread can
    # both run them. Results must match the reference too.
    out = run_child("""
        import threading
        import numpy as np, numba
        from tinydl.kernels import (_dispatch, relu_forward_numba, relu_forward_reference,
                                    im2col_numba, im2col_reference)
        _dispatch.PARALLEL_MIN_SIZE = 0         # the parallel kernels, however small the arrays
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 3, 17, 15)).astype(np.float32)
        v = rng.standard_normal(1 << 16).astype(np.float32)
        want_cols, want_relu = im2col_reference(x, (3, 3), 1, 1), relu_forward_reference(v)
        bad = []

        def work():
            for _ in range(200):
                if not np.array_equal(im2col_numba(x, (3, 3), 1, 1), want_cols):
                    bad.append("im2col")
                if not np.array_equal(relu_forward_numba(v), want_relu):
                    bad.append("relu")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(numba.threading_layer(), len(bad))
    """, NUMBA_THREADING_LAYER="workqueue")
    assert out == ["workqueue", "0"]
