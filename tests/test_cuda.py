"""On a real GPU: a training step makes no host transfer, state follows the device, models
train on 'cuda' as on the CPU. Every test is marked gpu: without CuPy and a CUDA device
they skip with the reason (see conftest.py)."""
import numpy as np
import pytest

import models
import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl import optim
from tinydl.data import DataLoader, TensorDataset
from tinydl.train import Trainer

pytestmark = pytest.mark.gpu


def _host(t):
    return td.backend.to_host(t.array if isinstance(t, td.Tensor) else t)


def _resnet20_step(device, dtype=np.float32, batch=16, seed=0):
    """(step, model, optimizer): one SGD-momentum training step of CIFAR ResNet-20 on
    fixed random data; ``step()`` returns the loss Tensor (left on the device)."""
    td.manual_seed(seed)
    model = models.create("resnet20").to(device)
    if dtype == np.float64:
        model.double()
    rng = np.random.default_rng(seed)
    x = td.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(dtype), device=device)
    y = td.tensor(rng.integers(0, 10, batch), device=device)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step, model, opt


def _gpu_activity(fn):
    """Names of the GPU activities (kernels, copies) while ``fn`` runs, as CUPTI records
    them through PyTorch's profiler. CUPTI sees every launch and copy in the process,
    CuPy's included; a device-to-host copy shows as 'Memcpy DtoH (Device -> Pageable)'."""
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile
    cp = td.backend.cupy_module()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()
    return [e.name for e in prof.events()]


def _host_copies(names):
    return [n for n in names if "DtoH" in n or "Device -> Pageable" in n]


@pytest.mark.parametrize("batch_norm", ["numba", "fused"])
def test_resnet20_training_step_makes_no_host_transfer(batch_norm):
    """With batch norm's passes and with its fused route (not yet the GPU's default)."""
    step, model, _ = _resnet20_step("cuda")
    with td.backends.route(batch_norm=batch_norm):
        step()
        step()                                  # kernels compiled, the memory pool filled
        names = _gpu_activity(step)
    assert any("tinydl_im2col" in n for n in names), "the profiler saw no CuPy kernel"
    assert any("forward_coefficients" in n for n in names) == (batch_norm == "fused")   # the route ran
    assert not _host_copies(names), f"device-to-host copies in a training step: {_host_copies(names)}"
    # the check can fail: asking for the loss value is one copy
    assert len(_host_copies(_gpu_activity(lambda: float(_host(step()))))) == 1


def test_resnet20_trains_on_cuda_as_on_the_cpu_in_float64():
    """Three SGD-momentum steps with weight decay and batch norm: every loss, parameter,
    running statistic and momentum buffer agrees with the CPU run to 1e-9."""
    runs = {}
    for device in ("cpu", "cuda"):
        step, model, opt = _resnet20_step(device, np.float64, batch=8)
        losses = [float(_host(step())) for _ in range(3)]
        runs[device] = (losses, model, opt)
    (l_cpu, m_cpu, o_cpu), (l_gpu, m_gpu, o_gpu) = runs["cpu"], runs["cuda"]
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    for (name, a), b in zip(m_cpu.state_dict().items(), m_gpu.state_dict().values()):
        assert b.device.type == "cuda", name
        np.testing.assert_allclose(_host(b), _host(a), rtol=1e-9, atol=1e-12, err_msg=name)
    for p_cpu, p_gpu in zip(m_cpu.parameters(), m_gpu.parameters()):
        buf_cpu, buf_gpu = o_cpu.state[p_cpu]["momentum_buffer"], o_gpu.state[p_gpu]["momentum_buffer"]
        assert td.backend.is_cupy_array(_raw(buf_gpu))
        np.testing.assert_allclose(_host(buf_gpu), _host(buf_cpu), rtol=1e-9, atol=1e-12)


def _raw(a):
    return a.array if isinstance(a, td.Tensor) else a


def test_dropout_masks_and_batch_norm_buffers_stay_on_the_gpu():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.5),
                        nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 3)).to("cuda")
    x = td.randn(5, 1, 8, 8, device="cuda", requires_grad=True)
    out = net(x)
    out.backward(td.randn(*out.shape, device="cuda"))     # a random upstream gradient
    assert x.grad.device.type == "cuda"
    assert all(td.backend.is_cupy_array(b.array) for b in net.buffers())
    dropped = F.dropout(td.ones(1000, device="cuda"), 0.5)
    assert dropped.device.type == "cuda" and 350 < int(_host((dropped == 0).sum())) < 650


def _images(n=96, size=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.integers(0, 120, size=(n, size, size)) + 40 * labels[:, None, None]
    return images.astype(np.uint8), labels.astype(np.int64)


def _trainer(out):
    td.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 4 * 4, 3)).to("cuda")
    opt = optim.Adam(model.parameters(), lr=0.05)
    train = DataLoader(TensorDataset(*_images()), batch_size=16, shuffle=True)
    test = DataLoader(TensorDataset(*_images(48, seed=1)), batch_size=16)
    return Trainer(model, opt, train, test, device="cuda", out=out, log=None, progress=False, plot=False)


def test_trainer_on_cuda_learns_checkpoints_and_resumes_exactly(tmp_path):
    full = _trainer(tmp_path / "full").fit(6)
    # on the CPU this run's loss falls from 0.90 to 0.07 and its test accuracy reaches 100%
    assert full[-1]["train_loss"] < 0.35 * full[0]["train_loss"]
    assert max(r["test_acc"] for r in full) >= 0.75
    assert 0 < full[-1]["gpu_mem_used_mb"] <= full[-1]["gpu_mem_reserved_mb"]

    first = _trainer(tmp_path / "resumed")
    first.fit(2)
    del first
    resumed = _trainer(tmp_path / "resumed")
    assert resumed.resume() == 2
    assert all(td.backend.is_cupy_array(p.array) for p in resumed.model.parameters())
    assert all(td.backend.is_cupy_array(v) for s in resumed.optimizer.state.values()
               for v in s.values() if hasattr(v, "shape") and v.ndim)
    history = resumed.fit(6)
    # atomics in the GPU's scatter-adds may reorder float sums: close, not bit-equal
    np.testing.assert_allclose([r["train_loss"] for r in history], [r["train_loss"] for r in full],
                               rtol=1e-5)


def test_saved_cuda_state_loads_onto_either_device(tmp_path):
    model = models.create("lenet5").to("cuda")
    td.save(model.state_dict(), tmp_path / "m.npz")
    on_cpu = td.load(tmp_path / "m.npz", map_location="cpu")
    on_gpu = td.load(tmp_path / "m.npz", map_location="cuda")
    for name, p in model.state_dict().items():
        assert on_cpu[name].device.type == "cpu" and on_gpu[name].device.type == "cuda"
        np.testing.assert_array_equal(_host(on_cpu[name]), _host(p))
        np.testing.assert_array_equal(_host(on_gpu[name]), _host(p))
    cpu_model = models.create("lenet5")
    cpu_model.load_state_dict(td.load(tmp_path / "m.npz"))
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_host(cpu_model(td.tensor(x))), _host(model(td.tensor(x, device="cuda"))),
                               rtol=1e-4, atol=1e-5)


def test_out_of_range_label_on_cuda_gives_nan_not_a_wrong_loss():
    logits = td.randn(4, 3, device="cuda", requires_grad=True)
    loss = F.cross_entropy(logits, td.tensor([0, 1, 3, 2], device="cuda"))
    assert np.isnan(float(_host(loss)))
    loss.backward()
    assert np.isnan(_host(logits.grad)).any()
    ok = F.cross_entropy(logits, td.tensor([0, 1, -100, 2], device="cuda"))   # ignore_index is fine
    assert np.isfinite(float(_host(ok)))


def test_cli_trains_on_cuda(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from tinydl import cli
    code = cli.main(["train", "lenet5", "--device", "cuda", "--epochs", "2", "--train-size", "512",
                     "--test-size", "256", "--batch-size", "64", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "device cuda" in out and "gpu mem" in out
    state = td.load(tmp_path / "checkpoint.npz", map_location="cuda")
    assert state["epoch"] == 2


@pytest.mark.parametrize("make, options", [("Adam", dict(weight_decay=1e-2)), ("Adam", dict(amsgrad=True)),
                                           ("AdamW", dict(maximize=True))], ids=["adam_wd", "amsgrad", "adamw_max"])
def test_fused_adam_on_cuda_steps_as_on_the_cpu(make, options):
    """Adam's fused CUDA step ('fused_cuda') agrees with the CPU's fused step, which is the
    plain update bit for bit, to rounding (CUDA fuses a * b + c), in float32 and float64."""
    rng = np.random.default_rng(9)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        start = [rng.standard_normal(s).astype(dtype) for s in ((7, 3), (300,))]
        grads = [[rng.standard_normal(a.shape).astype(dtype) for a in start] for _ in range(3)]
        runs = {}
        for device in ("cpu", "cuda"):
            params = [td.tensor(a.copy(), device=device, requires_grad=True) for a in start]
            opt = getattr(optim, make)(params, lr=0.01, **options)
            with td.backends.route(adam="fused_cuda"), td.backends.record_routes() as taken:
                for step in grads:
                    for p, g in zip(params, step):
                        p.grad = td.tensor(g, device=device)
                    opt.step()
            assert {route for _, route in taken} == {"fused_cuda" if device == "cuda" else "fused_numba"}
            runs[device] = [_host(p) for p in params] + [_host(v) for p in params for v in opt.state[p].values()
                                                          if not isinstance(v, int)]
        for a, b in zip(runs["cuda"], runs["cpu"]):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3)
