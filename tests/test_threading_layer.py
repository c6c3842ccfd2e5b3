"""Nothing process-wide at import; td.backends.cpu.tune() (Numba's thread pool next to
PyTorch's OpenMP runtime); parallel kernels called from several Python threads."""
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


def test_import_changes_nothing_process_wide():
    """``import tinydl`` (and a convolution, untuned) leaves the environment, Numba's
    threading layer and OpenBLAS's thread count as they were."""
    out = run_child("""
        import os, numba
        before = dict(os.environ)
        import numpy as np
        from tinydl.kernels import _threads
        blas = _threads._blas_controls()
        threads_before = blas[1]() if blas else -1
        import tinydl, tinydl.nn.functional as F
        after_import = dict(os.environ)
        x = tinydl.randn(64, 16, 32, 32, requires_grad=True)
        y = F.conv2d(x, tinydl.randn(16, 16, 3, 3), padding=1)
        y.backward(tinydl.randn(*y.shape))
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        print(after_import == before, changed or "none", numba.config.THREADING_LAYER,
              (blas[1]() if blas else -1) == threads_before, tinydl.backends.cpu.is_tuned())
    """)
    assert out == ["True", "none", "default", "True", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_tune_after_torch_switches_numba_to_its_own_pool():
    out = run_child("""
        import torch
        import tinydl
        from tinydl.backends.cpu import _openmp_loaded
        openmp_before = _openmp_loaded()
        print(openmp_before, tinydl.backends.cpu.tune()["threading_layer"])
        import numba, numpy as np
        from tinydl.kernels import _dispatch, relu_forward_numba
        relu_forward_numba(np.ones(_dispatch.PARALLEL_MIN_SIZE, np.float32))    # big enough for the threads
        print(numba.threading_layer())
    """)
    if out[0] != "True":
        pytest.skip("this torch build loads no OpenMP runtime at import")
    assert out[1:] == ["workqueue", "workqueue"]


def test_tune_first_keeps_numbas_default_and_makes_openmp_passive():
    out = run_child("""
        import tinydl, numba, os
        settings = tinydl.backends.cpu.tune()
        import torch
        print(numba.config.THREADING_LAYER, os.environ["OMP_WAIT_POLICY"], settings["chunk_workers"])
    """)
    assert out == ["default", "PASSIVE", "True"]


def test_an_explicit_user_choice_wins():
    out = run_child("""
        import torch
        import tinydl, numba, os
        tinydl.backends.cpu.tune()
        print(numba.config.THREADING_LAYER, os.environ["OMP_WAIT_POLICY"])
    """, OMP_WAIT_POLICY="ACTIVE")
    assert out == ["default", "ACTIVE"]


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
