"""td.backends: the scoped, thread-local route settings (reference(), route(),
record_routes()) and the explicit CPU tuning. The routes' numbers are checked against
PyTorch in tests/test_op_table.py (every conv row through every route)."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("routes_on_small_shapes")


def _conv_route(**kwargs):
    x, w = td.randn(2, 3, 8, 8), td.randn(4, 3, 3, 3)
    with td.backends.record_routes() as taken:
        F.conv2d(x, w, padding=1, **kwargs)
    return taken[0][1]


def test_reference_is_scoped_nested_and_restored():
    with td.backends.reference(False):
        assert not td.backends.is_reference()
        with td.backends.reference():
            assert td.backends.is_reference() and _conv_route() == "reference"
            with td.backends.reference(False):
                assert not td.backends.is_reference() and _conv_route() != "reference"
            assert td.backends.is_reference()
        assert not td.backends.is_reference()


def test_the_environment_variable_at_import_is_the_default():
    code = ("import tinydl as td\nprint(td.backends.is_reference(), td.kernels.use_numba())\n"
            "with td.backends.reference(False):\n    print(td.backends.is_reference())")
    env = {k: v for k, v in os.environ.items() if k != "TINYDL_NO_NUMBA"}
    for flag, expected in (("1", "True False False"), ("0", "False True False")):
        done = subprocess.run([sys.executable, "-c", code], env={**env, "TINYDL_NO_NUMBA": flag, "PYTHONPATH": ROOT},
                              capture_output=True, text=True, timeout=120)
        assert " ".join(done.stdout.split()) == expected, done.stderr[-2000:]


@pytest.mark.usefixtures("forced_route_runs")
def test_settings_belong_to_their_thread():
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def other():
        with td.backends.route(conv2d="chunked"):
            seen["other"] = _conv_route()
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    with td.backends.reference():
        seen["main"] = _conv_route()                  # while the other thread forces 'chunked'
    release.set()
    t.join()
    assert seen == {"other": "chunked", "main": "reference"}
    assert _conv_route() == "direct"                 # the default: few channels, stride 1


@pytest.mark.usefixtures("forced_route_runs")
def test_a_forced_route_that_cannot_run_falls_back_and_says_so():
    with td.backends.route(conv2d="winograd"):
        assert _conv_route() == "winograd"
        assert _conv_route(stride=2) == "chunked"    # Winograd's tiles are stride 1 only
    with td.backends.route(conv2d="im2col"):
        assert _conv_route() == "im2col"             # the textbook op on the Numba kernels


def test_unknown_routes_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"conv2d='fft'.*winograd"):
        with td.backends.route(conv2d="fft"):
            pass
    with pytest.raises(ValueError, match="unknown route"):
        with td.backends.route(matmul="blas"):
            pass


def test_pooling_batch_norm_and_sgd_report_their_routes():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
    opt = td.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = td.randn(2, 3, 10, 10)
    for reference in (False, True):
        with td.backends.reference(reference), td.backends.record_routes() as taken:
            y = model(x)
            y.backward(td.randn(*y.shape))
            opt.step()
        routes = dict(taken)
        kernel = "reference" if reference else "numba"
        assert routes["max_pool2d"] == kernel
        assert routes["batch_norm"] == ("reference" if reference else "fused")
        assert routes["conv2d"] == ("reference" if reference else "direct")
        assert routes["sgd"] == "single_tensor"


def test_tune_reports_what_it_set():
    settings = td.backends.cpu.tune()
    assert td.backends.cpu.is_tuned()
    assert set(settings) == {"wait_policy", "threading_layer", "malloc", "chunk_workers", "threads"}
    assert settings["chunk_workers"] is True and settings["threads"] >= 1


_PROBE = "import tinydl; print(tinydl.backends.cpu.numba_uses_wide_vectors())"


def test_wide_vector_features_give_a_sapphire_rapids_kernel_512_bit_vectors():
    """Compiled, not run, for an Intel AVX-512 server core: LLVM's own tuning there gives
    Numba's loops 256-bit vectors; the features of wide_vector_features() 512-bit ones."""
    features = td.backends.cpu.wide_vector_features()
    if features is None:
        pytest.skip("no AVX-512 on this CPU")
    assert "+avx512f" in features.split(",") and features.endswith(",-prefer-256-bit")

    def wide(cpu, **extra_env):
        env = {k: v for k, v in os.environ.items() if k not in td.backends.cpu._USER_CODEGEN_CHOICES}
        env.update(NUMBA_CPU_NAME=cpu, PYTHONPATH=str(ROOT), **extra_env)
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
        return {"True": True, "False": False}[done.stdout.split()[-1]]

    assert wide("sapphirerapids", NUMBA_CPU_FEATURES=features)
    assert not wide("haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+fma")                    # no AVX-512: no zmm
    print("zmm with LLVM's own tuning for sapphirerapids:", wide("sapphirerapids"))       # False with Numba 0.68


def test_wide_vector_environment_only_where_it_widens_numbas_vectors(monkeypatch):
    cpu = td.backends.cpu
    monkeypatch.setattr(cpu, "wide_vector_features", lambda: "+avx512f,-prefer-256-bit")
    monkeypatch.setattr(cpu, "numba_uses_wide_vectors", lambda: False)          # as on an Intel core
    assert cpu.wide_vector_environment({"PATH": "/bin"}) == {"PATH": "/bin",
                                                             "NUMBA_CPU_FEATURES": "+avx512f,-prefer-256-bit"}
    for chosen in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME"):                       # the user's choice stands
        assert cpu.wide_vector_environment({chosen: "x"}) is None
    monkeypatch.setattr(cpu, "numba_uses_wide_vectors", lambda: True)           # as on Zen 4
    assert cpu.wide_vector_environment({}) is None
    monkeypatch.setattr(cpu, "wide_vector_features", lambda: None)              # no AVX-512
    monkeypatch.setattr(cpu, "numba_uses_wide_vectors", lambda: False)
    assert cpu.wide_vector_environment({}) is None


def test_routes_give_the_same_training_step():
    """A small CNN's step on every conv route it can take, float64, against the reference."""
    rng = np.random.default_rng(0)
    x, y = td.tensor(rng.standard_normal((4, 3, 12, 12))), td.tensor(rng.integers(0, 5, 4))

    def grads(scope):
        td.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1),
                              nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Flatten(), nn.Linear(4 * 24 * 24, 5))
        model.double()
        with scope:
            F.cross_entropy(model(x), y).backward()
        return [p.grad.numpy() for p in model.parameters()]

    expected = grads(td.backends.reference())
    for route in td.backends.ROUTES["conv2d"][1:]:
        for got, want in zip(grads(td.backends.route(conv2d=route)), expected):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=route)
