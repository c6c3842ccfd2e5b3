"""Shared pytest setup: the 'gpu' marker, the device list, the shared MNIST folder."""
import os
import pathlib

import pytest

import tinydl as td

# The suite runs tuned, as the CLI and the Trainer do (idle OpenMP threads sleep, chunks
# of a convolution on all cores); tests/test_threading_layer.py checks the untuned import.
td.backends.cpu.tune()

MNIST_DIR = pathlib.Path(os.environ.get(
    "TINYDL_MNIST_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA device (skipped otherwise)")
    config.addinivalue_line("markers", "slow: trains a network; a few tens of seconds")


def pytest_collection_modifyitems(config, items):
    if td.backend.cuda_is_available():
        return
    reason = f"no CUDA device: {td.backend._cupy_error or 'CuPy is not installed'}"
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


# ``device`` parametrises a test over cpu and (marked gpu) cuda.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def mnist_dir():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST test-set files are not in {MNIST_DIR} (set TINYDL_MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def load_example():
    """``load_example('train_fcn')`` imports examples/train_fcn.py by its path (examples/
    is a folder of scripts, not a package); each script is imported once per session."""
    import importlib.util
    folder = pathlib.Path(__file__).resolve().parents[1] / "examples"
    loaded = {}

    def load(name):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"_example_{name}", folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]
    return load


@pytest.fixture
def routes_on_small_shapes(monkeypatch):
    """Convolutions as small as a test's take the routes, not the textbook op that wins
    on tiny problems (kernels/conv.py TEXTBOOK_MAX_COLUMNS), so route tests stay fast."""
    import tinydl.kernels.conv
    monkeypatch.setattr(tinydl.kernels.conv, "TEXTBOOK_MAX_COLUMNS", -1)


@pytest.fixture
def forced_route_runs(request):
    """Skips a test that forces a convolution route (its ``route`` parameter, or any if it
    has none) under TINYDL_NO_NUMBA=1, where every op runs its textbook reference code."""
    callspec = getattr(request.node, "callspec", None)
    route = callspec.params.get("route") if callspec else None
    if route != "reference" and td.backends.is_reference():
        pytest.skip("TINYDL_NO_NUMBA=1: every op runs its textbook reference code")
