"""conv2d's cuDNN route (kernels/cudnn.py, td.backends.cudnn). On a GPU with libcudnn the
gpu-marked tests compare it with tinydl's own kernels there, in float64 and float32, forward
and both gradients, over strides, padding, dilation and groups; without one, the CPU tests
check that asking for it changes nothing and that the CLI refuses it in one line."""
import numpy as np
import pytest

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels.cudnn import CudnnConv
from test_graphs import training_step


def test_without_a_gpu_cudnn_is_unavailable_and_asking_changes_nothing():
    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = td.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with td.backends.record_routes() as usual:
        expected = F.conv2d(x, w, padding=1)
    with td.backends.route(conv2d="cudnn"), td.backends.record_routes() as taken:
        got = F.conv2d(x, w, padding=1)
    assert taken == usual and ("conv2d", "cudnn") not in taken
    np.testing.assert_array_equal(got.detach().numpy(), expected.detach().numpy())
    assert not CudnnConv.applies(x.array, w.shape, ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), (True, True, True))
    if not td.cuda.is_available():
        assert td.backends.cudnn.is_available() is False and td.backends.cudnn.version() is None


def test_cli_refuses_cudnn_off_the_gpu_in_one_line(tmp_path, capsys):
    from tinydl import cli
    code = cli.main(["train", "lenet5", "--cudnn", "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--cudnn needs --device cuda (not cpu)" in err and "Traceback" not in err


# ================================================================ on a GPU with cuDNN
def _needs_cudnn():
    if not td.backends.cudnn.is_available():
        pytest.skip("needs libcudnn (pip install 'tinydl[gpu-cudnn]'; PyTorch's wheel brings it too)")


GEOMETRIES = [  # (N, C, H, W, C_out, kernel, stride, padding, dilation, groups): height != width
    (4, 3, 16, 16, 8, 3, 1, 1, 1, 1), (2, 16, 9, 11, 32, 3, 2, 1, 1, 1), (3, 8, 12, 12, 8, 1, 1, 0, 1, 1),
    (2, 8, 14, 14, 16, 1, 2, 0, 1, 1), (2, 4, 13, 13, 6, 5, 1, 2, 1, 1), (2, 6, 15, 15, 6, 3, 1, 2, 2, 1),
    (2, 8, 10, 10, 8, 3, 1, 1, 1, 2), (2, 8, 10, 10, 8, 3, 1, 1, 1, 8), (1, 1, 32, 32, 6, 5, 1, 0, 1, 1),
    (3, 64, 7, 7, 64, 3, 1, 1, 1, 1),     # every pair below differs, so a swapped height/width fails
    (2, 6, 10, 13, 6, (3, 5), (1, 2), (1, 2), (2, 1), 2), (2, 4, 1, 20, 5, (1, 3), 1, (0, 1), 1, 1)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[str(g) for g in GEOMETRIES])
def test_cudnn_route_equals_tinydls_own_kernels(geometry, dtype):
    """y, dL/dx, dL/dW and dL/db on cuDNN equal tinydl's own GPU route (and so PyTorch's:
    the op table checks that one), for a random upstream gradient."""
    _needs_cudnn()
    n, c, h, w_, c_out, k, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((n, c, h, w_)).astype(dtype)
    kh, kw = (k, k) if isinstance(k, int) else k
    w0 = rng.standard_normal((c_out, c // groups, kh, kw)).astype(dtype)
    b0 = rng.standard_normal(c_out).astype(dtype)
    results = []
    for route in ("chunked", "cudnn"):
        x, w, b = (td.tensor(a, device="cuda", requires_grad=True) for a in (x0, w0, b0))
        with td.backends.route(conv2d=route), td.backends.record_routes() as taken:
            y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
            g = td.tensor(np.random.default_rng(2).standard_normal(y.shape).astype(dtype), device="cuda")
            y.backward(g)
        assert ("conv2d", route) in taken, taken
        results.append([td.backend.to_host(t.array) for t in (y, x.grad, w.grad, b.grad)])
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    for name, ours, theirs in zip(("y", "dL/dx", "dL/dW", "dL/db"), *results):
        np.testing.assert_allclose(theirs, ours, err_msg=f"cuDNN {name}", **tol)


@pytest.mark.gpu
def test_cudnn_leaves_asymmetric_padding_to_the_other_routes_and_can_be_deterministic():
    """'same' with an even kernel pads one more on the bottom/right: not the classic API's, so
    another route runs; with td.backends.cudnn.deterministic two runs agree bit for bit."""
    _needs_cudnn()
    rng = np.random.default_rng(3)
    x = td.tensor(rng.standard_normal((2, 4, 9, 9)), device="cuda", requires_grad=True)
    w = td.tensor(rng.standard_normal((4, 4, 4, 4)), device="cuda", requires_grad=True)
    with td.backends.route(conv2d="cudnn"), td.backends.record_routes() as taken:
        F.conv2d(x, w, padding="same")
    assert taken and ("conv2d", "cudnn") not in taken
    w3 = td.tensor(rng.standard_normal((8, 4, 3, 3)), device="cuda", requires_grad=True)
    grads = []
    gy = rng.standard_normal((2, 8, 9, 9))
    td.backends.cudnn.deterministic = True
    try:
        for _ in range(2):
            x.grad = w3.grad = None
            with td.backends.route(conv2d="cudnn"):
                y = F.conv2d(x, w3, padding=1)
                y.backward(td.tensor(gy, device="cuda"))
            grads.append([td.backend.to_host(g.array) for g in (x.grad, w3.grad)])
    finally:
        td.backends.cudnn.deterministic = False
    for first, second in zip(*grads):
        np.testing.assert_array_equal(first, second)


@pytest.mark.gpu
def test_cudnn_enabled_runs_resnet20_training_steps_as_tinydls_own_route():
    """td.backends.cudnn.enabled: every conv of a ResNet-20 step on cuDNN, asymmetric padding
    aside; three SGD steps in float64 equal those on tinydl's own kernels, also captured as a
    CUDA graph."""
    _needs_cudnn()
    import models
    cp = td.backend.cupy_module()
    rng = np.random.default_rng(0)
    xs = [cp.asarray(rng.standard_normal((8, 3, 32, 32))) for _ in range(4)]
    ys = [cp.asarray(rng.integers(0, 10, 8)) for _ in range(4)]
    runs = []
    for enabled, graphed in ((False, False), (True, False), (True, True)):
        td.manual_seed(0)
        model = models.create("resnet20").to("cuda").double()
        opt = td.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        step = training_step(model, opt)
        td.backends.cudnn.enabled = enabled
        try:
            run = td.cuda.GraphedStep(step, warmup=2, params=list(model.parameters())) if graphed else step
            with td.backends.record_routes() as taken:
                losses = [float(cp.asnumpy(run(x, y).array)) for x, y in zip(xs, ys)]
        finally:
            td.backends.cudnn.enabled = False
        convs = {r for op, r in taken if op == "conv2d"}
        assert convs == ({"cudnn"} if enabled else convs - {"cudnn"}), convs
        runs.append(losses)
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-9)
    np.testing.assert_allclose(runs[2], runs[0], rtol=1e-9)
