"""The op table: every differentiable op described once, tested many ways.

Each family module (math.py, shape.py, ...) lists ``CASES``: OpCase rows. The
runner ``tests/test_op_table.py`` turns every row into a float64 gradcheck, a
PyTorch parity test of forward and of every input gradient (float32 and
float64), a dtype test and, on a GPU, a cuda-equals-cpu test. Adding an op
means adding a row here.
"""
import dataclasses
import importlib
from typing import Callable, Optional, Sequence

FAMILIES = ["math", "shape", "reduce", "activation", "loss", "conv", "pool", "norm", "resample", "vision",
            "embedding", "fold", "activation_extra", "loss_extra", "extras", "volumetric", "grid"]


@dataclasses.dataclass
class OpCase:
    name: str                           # shown in the test id, e.g. "add/broadcast"
    fn: Callable                        # tinydl: fn(*tensors) -> Tensor or tuple
    torch_fn: Optional[Callable]        # torch: torch_fn(*torch tensors) -> same; None if PyTorch lacks it
    inputs: Callable                    # inputs(rng) -> list of numpy arrays (float ones are differentiable)
    grad: Optional[Sequence[int]] = None  # input positions that get gradients; default: every float input
    atol: float = 1e-5                  # float32 parity tolerances (float64 uses 1e-10 / 1e-7)
    rtol: float = 1e-4
    gradcheck: bool = True              # False for ops whose gradient is not defined by finite differences
    gc_atol: float = 1e-5               # gradcheck tolerances
    gc_rtol: float = 1e-3


def all_cases():
    cases = []
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"optable.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"optable.{family}":
                raise
            continue
        cases.extend(module.CASES)
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"duplicate op case names: {dupes}"
    return cases
