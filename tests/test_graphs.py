"""CUDA graphs (``td.cuda.graph``, ``GraphedStep``, the Trainer's ``cuda_graph``) and the matrix
products a capture takes (kernels/cublas_handle.py).

Without a GPU, the cuBLAS route's arguments are checked against a NumPy stand-in for
libcublas that reads the same memory column-major, as cuBLAS does: a wrong transpose flag,
leading dimension or stride gives a wrong product here. The gpu-marked tests capture real
training steps and compare them with eager ones (benchmarks/run_gpu_checks.sh runs them).
"""
import ctypes

import numpy as np
import pytest

import tinydl as td
from tinydl.kernels import cublas_handle, philox



class ColumnMajorBlas:
    """cuBLAS's ``<t>gemmStridedBatched`` (alpha 1, beta 0) on NumPy memory, from its definition:
    element (r, c) of a column-major matrix with leading dimension ld sits at r + c * ld."""

    def __init__(self):
        self.calls = []

    @staticmethod
    def _matrix(address, dtype, rows, cols, ld):
        assert ld >= max(1, rows), f"leading dimension {ld} < {rows} rows"
        item = np.dtype(dtype).itemsize
        span = (rows - 1) + (cols - 1) * ld + 1
        buffer = (ctypes.c_char * (span * item)).from_address(address)
        flat = np.frombuffer(buffer, dtype=dtype, count=span)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))

    def gemm_strided_batched(self, dtype, trans_a, trans_b, m, n, k, a, lda, stride_a, b, ldb, stride_b,
                             c, ldc, stride_c, batch):
        self.calls.append((trans_a, trans_b, m, n, k, lda, stride_a, ldb, stride_b, ldc, stride_c, batch))
        item = np.dtype(dtype).itemsize
        for i in range(batch):
            op_a = self._matrix(a + i * stride_a * item, dtype, *((m, k) if trans_a == 0 else (k, m)), lda)
            op_b = self._matrix(b + i * stride_b * item, dtype, *((k, n) if trans_b == 0 else (n, k)), ldb)
            op_a, op_b = (op_a if trans_a == 0 else op_a.T), (op_b if trans_b == 0 else op_b.T)
            out = self._matrix(c + i * stride_c * item, dtype, m, n, ldc)
            out[...] = op_a @ op_b


@pytest.fixture
def blas(monkeypatch):
    stand_in = ColumnMajorBlas()
    monkeypatch.setattr(cublas_handle, "library", stand_in)
    return stand_in


def _layouts(rng, shape, dtype, xp=np):
    """The same matrix stack stored row-major, column-major (a transposed view), and strided."""
    a = xp.asarray(rng.standard_normal(shape).astype(dtype))
    column_major = xp.ascontiguousarray(xp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    strided = xp.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
    strided[...] = a
    return {"row-major": a, "column-major": column_major, "strided": strided}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((5, 3), (3, 4)), ((1, 3), (3, 1)), ((6, 1), (1, 2)),
                                    ((2, 5, 3), (2, 3, 4)), ((2, 5, 3), (3, 4)), ((5, 3), (2, 3, 4)),
                                    ((1, 5, 3), (3, 3, 4)), ((3, 1, 3), (3, 3, 1))])
def test_own_cublas_matmul_reads_every_layout(blas, dtype, shapes):
    """Each operand row-major, column-major or strided, 2-D or 3-D, broadcast batches: the
    column-major stand-in gives NumPy's product, and reads row- and column-major in place."""
    rng = np.random.default_rng(0)
    a_shape, b_shape = shapes
    for a_name, a in _layouts(rng, a_shape, dtype).items():
        for b_name, b in _layouts(rng, b_shape, dtype).items():
            blas.calls.clear()
            out = cublas_handle.matmul(a, b)
            expected = np.matmul(a, b)
            assert out.shape == expected.shape and out.dtype == expected.dtype, (a_name, b_name)
            np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       err_msg=f"{a_name} @ {b_name}")
            assert len(blas.calls) == 1


def test_own_cublas_matmul_transposed_operand_takes_the_flag(blas):
    """w.T (a column-major view) is read in place with cuBLAS's transpose flag, not copied."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(cublas_handle.matmul(x, w.T), x @ w.T, rtol=1e-5)
    trans_a, trans_b = blas.calls[-1][:2]
    assert (trans_a, trans_b) == (1, 0)      # B = w.T read as stored (w), transposed; A = x as stored


def test_own_cublas_matmul_edge_sizes_and_refusals(blas):
    assert cublas_handle.matmul(np.ones((3, 0), np.float32), np.ones((0, 2), np.float32)).tolist() == [[0, 0]] * 3
    assert cublas_handle.matmul(np.ones((0, 4)), np.ones((4, 2))).shape == (0, 2)
    assert not blas.calls
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4, 2\)"):
        cublas_handle.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        cublas_handle.matmul(np.ones((2, 3), np.float32), np.ones((3, 2)))
    with pytest.raises(TypeError, match="2 or 3 dimensions"):
        cublas_handle.matmul(np.ones((2, 2, 2, 3)), np.ones((3, 2)))


def test_own_cublas_matmul_writes_into_out(blas):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3, 5))
    out = np.empty((2, 4, 5))
    assert cublas_handle.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    strided_out = np.empty((4, 10))[:, ::2]                  # not contiguous: written through a copy
    assert cublas_handle.matmul(a[0], b[0], out=strided_out) is strided_out
    np.testing.assert_allclose(strided_out, a[0] @ b[0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"out is float64 \(4, 4\)"):
        cublas_handle.matmul(a[0], b[0], out=np.empty((4, 4)))


# ================================================================ dropout's generator, compiled as C++
_PHILOX_AS_CPP = r"""
#include <cstdint>
#define __device__
static unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
""" + philox.PHILOX_SOURCE + r"""
extern "C" void words(unsigned long long seed, unsigned long long drawn, long long n, unsigned long long* out) {
    for (long long i = 0; i < n; ++i) out[i] = tinydl_philox_word(seed, drawn, i);
}
extern "C" void uniforms(const unsigned long long* r, long long n, double* d, float* f) {
    for (long long i = 0; i < n; ++i) { d[i] = tinydl_uniform_double(r[i]); f[i] = tinydl_uniform_float(r[i]); }
}
"""


@pytest.fixture(scope="module")
def philox_cpp(tmp_path_factory):
    import shutil
    import subprocess
    if shutil.which("g++") is None:
        pytest.skip("needs g++ to compile the CUDA source as C++")
    path = tmp_path_factory.mktemp("philox") / "philox.cpp"
    path.write_text(_PHILOX_AS_CPP)
    subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-o", str(path.with_suffix(".so")), str(path)],
                   check=True)
    lib = ctypes.CDLL(str(path.with_suffix(".so")))
    lib.words.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_longlong, ctypes.c_void_p]
    lib.uniforms.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p]
    return lib


@pytest.mark.parametrize("seed, drawn", [(0, 0), (1234, 0), (2**64 - 1, 7), (42, 2**64 - 2)])
def test_dropout_generator_is_numpys_philox(philox_cpp, seed, drawn):
    """The CUDA source's words are numpy.random.Philox's (4x64-10: Random123's constants and
    rounds), from the counter a draw starts at, across a carry past 2^64; its floats are
    NumPy's doubles and the top 24 bits in float32, in [0, 1)."""
    n = 23                                              # not a multiple of 4: a partial last block
    words = np.empty(n, np.uint64)
    philox_cpp.words(seed, drawn, n, words.ctypes.data)
    expected = np.random.Philox(key=seed, counter=drawn).random_raw(n)
    np.testing.assert_array_equal(words, expected)
    d, f = np.empty(n), np.empty(n, np.float32)
    philox_cpp.uniforms(words.ctypes.data, n, d.ctypes.data, f.ctypes.data)
    np.testing.assert_array_equal(d, (words >> np.uint64(11)).astype(np.float64) * 2.0**-53)
    np.testing.assert_array_equal(f, ((words >> np.uint64(40)).astype(np.float64) * 2.0**-24).astype(np.float32))
    assert 0 <= f.min() and f.max() < 1 and 0 <= d.min() and d.max() < 1
    assert np.random.Philox(key=seed, counter=drawn).random_raw(4 * 3 + 1)[12] == \
        np.random.Philox(key=seed, counter=drawn + 3).random_raw(1)[0]    # what the counter moves by


# ================================================================ GraphedStep, on a stand-in graph
class _Param:
    grad = None


@pytest.fixture
def recording_graph(monkeypatch):
    """td.cuda.graph and CUDAGraph stood in for on the CPU: in the block, ``capture.active`` is
    set and the step records its work instead of doing it; replay does the recorded work. This
    checks GraphedStep's bookkeeping, not CUDA (the gpu-marked tests below do)."""
    import contextlib
    recorded = []

    class RecordingCUDAGraph:
        def __init__(self):
            self.work = []

        def replay(self):
            for work in self.work:
                work()

    @contextlib.contextmanager
    def recording(g, pool=None, stream=None):
        recorded.clear()
        td.backend.capture.active = True
        try:
            yield g
        finally:
            td.backend.capture.active = False
        g.work = list(recorded)

    monkeypatch.setattr(td.cuda, "graph", recording)
    monkeypatch.setattr(td.cuda, "CUDAGraph", RecordingCUDAGraph)
    return recorded


def _toy_step(recorded, param, log):
    """y = 2x + w, then w += 1 in place and a fresh gradient array, as a training step does."""
    w = np.zeros(1)

    def step(x):
        y, grad = np.empty_like(x), np.empty_like(x)

        def work():
            y[...] = 2 * x + w
            grad[...] = x
            w[...] += 1

        param.grad = td.Tensor(grad)
        if td.backend.capture.active:
            recorded.append(work)
            log.append("captured")
        else:
            work()
            log.append("eager")
        return y
    return step, w


def test_graphed_step_warms_up_captures_once_and_replays(recording_graph):
    param, log, lr = _Param(), [], [0.1]
    step, w = _toy_step(recording_graph, param, log)
    graphed = td.cuda.GraphedStep(step, warmup=2, key=lambda: lr[0], params=[param])
    x = np.arange(3.0)
    ys = [graphed(x + i).copy() for i in range(4)]
    assert log == ["eager", "eager", "captured"]              # the 4th call is a replay only
    assert (graphed.captures, graphed.replays) == (1, 2)
    np.testing.assert_array_equal(ys, [2 * (x + i) + i for i in range(4)])   # w grows by 1 a step
    assert graphed(x) is graphed(x + 1)                        # the graph's output array, every time
    captured_grad = param.grad
    np.testing.assert_array_equal(graphed(x + 7), 2 * (x + 7) + w - 1)   # this call's x, in the static one
    assert log[-1] == "captured" and graphed.replays == 5

    short = graphed(np.ones(2))                                # another shape: eagerly
    assert log[-1] == "eager" and short is not graphed._outputs and param.grad is not captured_grad
    graphed(x)
    assert param.grad is captured_grad                         # the replay's gradients, again
    lr[0] = 0.01                                               # a baked-in value changed: capture again
    graphed(x)
    assert log[-1] == "captured" and graphed.captures == 2


def test_graphed_step_captures_a_shape_that_repeats_and_keeps_its_gradients(recording_graph):
    """A short batch right after the warm-up is not captured (the next full one would then run
    eagerly for good); a gradient array swapped by the user is the graph's again after a replay."""
    param, log = _Param(), []
    step, _ = _toy_step(recording_graph, param, log)
    graphed = td.cuda.GraphedStep(step, warmup=2, params=[param])
    for n in (3, 3, 2, 3, 3, 3):
        graphed(np.ones(n))
    assert log == ["eager"] * 4 + ["captured"] and graphed._signature == (((3,), np.dtype(float)),)
    captured = param.grad.array
    param.grad.array = np.zeros(3)          # what zero_grad(set_to_none=False) does
    graphed(np.ones(3))
    assert param.grad.array is captured


def test_trainer_recaptures_on_any_changed_setting():
    from tinydl import optim
    from tinydl.train import Trainer
    model = td.nn.Linear(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(model, opt, [], log=None, tune=False)
    before = trainer._hyperparameters()
    opt.param_groups[0]["lr"] = np.float32(0.1)         # a NumPy scalar lr: the same number, another key
    assert trainer._hyperparameters() != before
    key = trainer._hyperparameters()
    opt.param_groups[0]["lr"] = np.float32(0.05)
    assert trainer._hyperparameters() != key


def test_graphed_step_needs_a_warm_up_step():
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        td.cuda.GraphedStep(lambda x: x, warmup=0)


# ================================================================ what refuses a graph
def _tiny_trainer(**options):
    from tinydl import optim
    from tinydl.train import Trainer
    model = td.nn.Sequential(td.nn.Flatten(), td.nn.Linear(4, 2))
    opt = options.pop("optimizer", None) or optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if options.get("scheduler_interval") == "step":
        options["scheduler"] = optim.lr_scheduler.StepLR(opt, 1)
    return Trainer(model, opt, [], device=options.pop("device", "cpu"), log=None, tune=False, cuda_graph=True,
                   **options)


@pytest.mark.parametrize("options, message", [
    (dict(), "needs device 'cuda'"),
    (dict(device="cuda", optimizer="adam"), "Adam/AdamW with capturable=True \\(not Adam without"),
    (dict(device="cuda", optimizer="rmsprop"), r"capturable=True \(not RMSprop: its step"),
    (dict(device="cuda", scheduler_interval="step"), "per-epoch scheduler"),
    (dict(device="cuda", detect_anomaly=True), "no detect_anomaly"),
])
def test_trainer_cuda_graph_refuses_what_it_cannot_capture(options, message, monkeypatch):
    from tinydl import optim
    monkeypatch.setattr(td.backend, "parse_device", lambda d: td.backend.Device(str(d).split(":")[0]))
    if options.get("optimizer") == "adam":
        options["optimizer"] = optim.Adam([td.nn.Parameter(td.zeros(2))])
    if options.get("optimizer") == "rmsprop":
        options["optimizer"] = optim.RMSprop([td.nn.Parameter(td.zeros(2))])
    with pytest.raises(ValueError, match=message):
        _tiny_trainer(**options)


@pytest.mark.parametrize("make", ["Adam", "AdamW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(amsgrad=True, weight_decay=0.1), dict(maximize=True)])
def test_capturable_adam_steps_as_the_plain_one_bit_for_bit(make, dtype, options):
    """capturable=True keeps t on the parameter's device and corrects there: the same numbers
    (the corrections rounded to x's dtype, as a Python float is). Its state saves and loads."""
    from tinydl import optim
    results = []
    for capturable in (False, True):
        rng = np.random.default_rng(0)
        p = td.nn.Parameter(td.tensor(rng.standard_normal(7).astype(dtype)))
        opt = getattr(optim, make)([p], lr=0.01, capturable=capturable, **options)
        for _ in range(5):
            p.grad = td.tensor(rng.standard_normal(7).astype(dtype))
            opt.step()
        results.append((p.array.copy(), opt))
    (plain, _), (captured, opt) = results
    np.testing.assert_array_equal(captured, plain)
    step = opt.state[opt.param_groups[0]["params"][0]]["step"]
    assert isinstance(step, np.ndarray) and step.shape == () and step == 5
    again = getattr(optim, make)(opt.param_groups[0]["params"], lr=0.01, capturable=True, **options)
    again.load_state_dict(opt.state_dict())       # the count comes back (as an int, made 0-d at the next step)
    p = again.param_groups[0]["params"][0]
    p.grad = td.tensor(np.ones(7, dtype))
    again.step()
    assert again.state[p]["step"] == 6


def test_capturable_adam_keeps_its_flag_through_a_checkpoint_and_plain_adam_refuses_a_capture():
    """A run resumed with --cuda-graph from a plain Adam's checkpoint stays capturable (the flag
    says how to compute, not what); a plain Adam inside a capture refuses, naming the flag. A
    float64 gradient on a float32 parameter steps as the plain update does."""
    from tinydl import optim
    plain = optim.Adam([td.nn.Parameter(td.zeros(3))], lr=0.1)
    plain.param_groups[0]["params"][0].grad = td.ones(3)
    plain.step()
    p = td.nn.Parameter(td.zeros(3))
    captured = optim.Adam([p], lr=0.1, capturable=True)
    captured.load_state_dict(plain.state_dict())
    assert captured.param_groups[0]["capturable"] and captured.state[p]["step"] == 1
    p.grad = td.ones(3)
    td.backend.capture.active = True
    try:
        captured.step()                           # no refusal: its count is on the device
        with pytest.raises(td.cuda.GraphCaptureError, match="capturable=True"):
            plain.step()
    finally:
        td.backend.capture.active = False
    results = []
    for capturable in (False, True):
        q = td.nn.Parameter(td.tensor(np.linspace(-1, 1, 4000, dtype=np.float32)))
        opt = optim.Adam([q], lr=0.01, capturable=capturable)
        for k in range(3):
            q._grad = td.tensor(np.linspace(0.1, 0.7, 4000) * (k + 1))      # float64 on a float32 parameter (past p.grad's check)
            opt.step()
        results.append(q.array.copy())
    np.testing.assert_array_equal(results[1], results[0])


def test_trainer_cuda_graph_refuses_a_cumulative_batch_norm(monkeypatch):
    from tinydl import optim
    from tinydl.train import Trainer
    monkeypatch.setattr(td.backend, "parse_device", lambda d: td.backend.Device(str(d).split(":")[0]))
    model = td.nn.Sequential(td.nn.Linear(4, 4), td.nn.BatchNorm1d(4, momentum=None), td.nn.Dropout(0.5))
    with pytest.raises(ValueError, match="batch norm with a momentum"):
        Trainer(model, optim.SGD(model.parameters(), lr=0.1), [], device="cuda", log=None, tune=False,
                cuda_graph=True)
    model[1].momentum = 0.1               # dropout is fine: its masks come from a counter on the GPU
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), [], device="cuda", log=None, tune=False, cuda_graph=True)


@pytest.mark.parametrize("flags, message", [
    (["--device", "cpu"], "--cuda-graph needs --device cuda (not cpu)"),
    (["--device", "cuda", "--optimizer", "rmsprop"], "--cuda-graph needs --optimizer sgd, momentum, nesterov, adam"),
    (["--device", "cuda", "--detect-anomaly"], "--cuda-graph needs no --detect-anomaly"),
])
def test_cli_cuda_graph_refusals_are_one_line(tmp_path, capsys, flags, message):
    from tinydl import cli
    code = cli.main(["train", "lenet5", "--cuda-graph", "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


# ================================================================ on a GPU
def _cupy():
    return td.backend.cupy_module()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_cublas_matmul_on_the_gpu_equals_cupys(dtype):
    """Every layout of the stand-in test, on the GPU: the own handle's product is CuPy's."""
    from tinydl.kernels.matmul import matmul
    cp, rng = _cupy(), np.random.default_rng(3)
    for a_shape, b_shape in [((64, 48), (48, 80)), ((3, 17, 9), (3, 9, 5)), ((4, 7, 6), (6, 3)), ((7, 6), (2, 6, 5))]:
        for a_name, a in _layouts(rng, a_shape, dtype, cp).items():
            for b_name, b in _layouts(rng, b_shape, dtype, cp).items():
                with td.backends.route(matmul="own_cublas"):
                    got = matmul(a, b)
                cp.testing.assert_allclose(got, cp.matmul(a, b), rtol=1e-5 if dtype == np.float32 else 1e-12,
                                           err_msg=f"{a_name} @ {b_name}")


def training_step(model, opt):
    """step(x, y) on raw arrays: cross-entropy, zero_grad, backward, update; returns the loss."""
    import tinydl.nn.functional as F

    def step(x, y):
        loss = F.cross_entropy(model(td.Tensor(x)), td.Tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def _model_and_data(name, batch, seed=0):
    import models
    td.manual_seed(seed)
    model = models.create(name).to("cuda").double()
    shape = (1, 32, 32) if name == "lenet5" else (3, 32, 32)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((batch,) + shape) for _ in range(6)]
    ys = [rng.integers(0, 10, batch) for _ in range(6)]
    return model, xs, ys


@pytest.mark.gpu
@pytest.mark.parametrize("name, optimizer", [("lenet5", "sgd"), ("resnet20", "sgd"), ("resnet20", "adamw")])
def test_captured_training_steps_equal_eager_ones(name, optimizer):
    """Six steps of SGD momentum (weight decay, batch-norm buffers) or capturable AdamW: two
    eager, one capture, then replays. Losses, parameters and buffers equal the eager run's
    (float64, to rounding): the replays' Adam corrects each step by its own t."""
    from tinydl import optim
    cp = _cupy()
    runs = []
    for graphed in (False, True):
        model, xs, ys = _model_and_data(name, 8)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) if optimizer == "sgd" else \
            optim.AdamW(model.parameters(), lr=1e-3, capturable=True)

        step = training_step(model, opt)
        run = td.cuda.GraphedStep(step, warmup=2, params=list(model.parameters())) if graphed else step
        losses = [float(cp.asnumpy(run(cp.asarray(x), cp.asarray(y)).array)) for x, y in zip(xs, ys)]
        if graphed:
            assert (run.captures, run.replays) == (1, 4)
        runs.append((losses, {k: cp.asnumpy(v.array) for k, v in model.state_dict().items()}))
    (eager_losses, eager_state), (graph_losses, graph_state) = runs
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-9)
    for k in eager_state:
        np.testing.assert_allclose(graph_state[k], eager_state[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.gpu
def test_trainer_with_cuda_graph_learns_as_eager(tmp_path):
    """A conv net (batch norm, max pool) trained 3 epochs with a StepLR schedule and a short last
    batch: one capture per learning rate, the short batches eagerly, the same losses."""
    from tinydl import optim
    from tinydl.data import DataLoader, TensorDataset
    from tinydl.train import Trainer
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 100)
    images = (rng.integers(0, 120, (100, 8, 8)) + 40 * labels[:, None, None]).astype(np.uint8)
    histories, trainers = [], []
    for graphed in (False, True):
        td.manual_seed(0)
        model = td.nn.Sequential(td.nn.Conv2d(1, 4, 3, padding=1), td.nn.BatchNorm2d(4), td.nn.ReLU(),
                                 td.nn.MaxPool2d(2), td.nn.Flatten(), td.nn.Linear(64, 3)).to("cuda")
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        trainer = Trainer(model, opt, DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True),
                          scheduler=optim.lr_scheduler.StepLR(opt, 1, gamma=0.5), device="cuda", log=None,
                          progress=False, plot=False, cuda_graph=graphed)
        histories.append(trainer.fit(3))
        trainers.append(trainer)
    eager, graph = histories
    np.testing.assert_allclose([r["train_loss"] for r in graph], [r["train_loss"] for r in eager], rtol=1e-4)
    np.testing.assert_allclose([r["train_acc"] for r in graph], [r["train_acc"] for r in eager], atol=0.021)
    assert trainers[1]._graphed.captures == 3          # one per learning rate
    assert eager[-1]["train_loss"] < eager[0]["train_loss"]


@pytest.mark.gpu
def test_capture_refuses_a_host_copy_and_leaves_no_capture_open():
    cp = _cupy()
    x = td.tensor(np.arange(4.0), device="cuda")
    g = td.cuda.CUDAGraph()
    with pytest.raises(td.cuda.GraphCaptureError, match="no copy to the host"):
        with td.cuda.graph(g):
            float(td.backend.to_host((x * 2).sum().array))
    assert not td.backend.capture.active
    with pytest.raises(RuntimeError, match="nothing was captured"):
        g.replay()
    y = cp.zeros(4)
    with td.cuda.graph(g):                    # a capture after the failed one works
        y[...] = x.array * 3
    assert float(y.sum()) == 0.0              # recorded, not run
    g.replay()
    cp.testing.assert_array_equal(y, cp.arange(4.0) * 3)




@pytest.mark.gpu
def test_dropout_on_the_gpu_draws_new_masks_in_a_replayed_graph():
    """Dropout's masks on 'cuda': the kept fraction is 1 - p, manual_seed repeats them, and a
    captured dropout draws a new mask at every replay (its counter moves on the device)."""
    import tinydl.nn.functional as F
    cp = _cupy()
    x = td.ones(64, 1024, device="cuda")
    td.manual_seed(7)
    first = cp.asnumpy(F.dropout(x, 0.25).array)
    assert abs((first != 0).mean() - 0.75) < 0.01 and set(np.unique(first)) <= {0.0, 1 / 0.75}
    td.manual_seed(7)
    np.testing.assert_array_equal(cp.asnumpy(F.dropout(x, 0.25).array), first)
    out = cp.empty((64, 1024), dtype=cp.float32)
    g = td.cuda.CUDAGraph()
    with td.cuda.graph(g):
        out[...] = F.dropout(x, 0.25).array
    masks = []
    for _ in range(3):
        g.replay()
        masks.append(cp.asnumpy(out) != 0)
    assert not (masks[0] == masks[1]).all() and not (masks[1] == masks[2]).all()
    assert all(abs(m.mean() - 0.75) < 0.01 for m in masks)


@pytest.mark.gpu
def test_cli_trains_a_dropout_model_with_cuda_graph(tmp_path, capsys):
    from tinydl import cli
    code = cli.main(["train", "lenet_tf", "--device", "cuda", "--cuda-graph", "--epochs", "2", "--train-size", "256",
                     "--test-size", "64", "--batch-size", "64", "--no-progress", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
