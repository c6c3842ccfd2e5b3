"""Checks of tinydl.distributed, DistributedDataParallel and SyncBatchNorm, run on 2 ranks in one launch.

    mpiexec -n 2 python -m mpi4py tests/_dist_scripts/ddp_checks.py [check ...]

Prints ``CHECK <name> <rank> PASS`` or ``CHECK <name> <rank> FAIL <reason>`` for
every check on every rank (tests/test_distributed.py reads these lines). Every
check runs on every rank in the same order: they communicate.
"""
import sys
import traceback

import numpy as np

import tinydl as td
import tinydl.distributed as dist
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.nn.parallel import DistributedDataParallel as DDP

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def close(a, b, tol, what):
    a, b = np.asarray(a.array if isinstance(a, td.Tensor) else a), np.asarray(b.array if isinstance(b, td.Tensor) else b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= tol, f"{what}: max |difference| {err:.3g} > {tol:g}"


def raises(fn, exc_type, *fragments):
    """``fn()`` must raise ``exc_type`` with every fragment in its message."""
    try:
        fn()
    except exc_type as exc:
        assert all(f in str(exc) for f in fragments), str(exc)
    else:
        raise AssertionError(f"no {exc_type.__name__} (expected one saying {fragments})")


def halves(a, rank, world):
    """Rank ``rank``'s contiguous part of the batch axis of ``a``."""
    n = a.shape[0] // world
    return a[rank * n:(rank + 1) * n]


# ------------------------------------------------------------------ collectives
@check
def collectives(rank, world):
    for op, expect in ((dist.ReduceOp.SUM, [3.0, 30.0]), (dist.ReduceOp.AVG, [1.5, 15.0]),
                       (dist.ReduceOp.MAX, [2.0, 20.0]), (dist.ReduceOp.MIN, [1.0, 10.0]),
                       (dist.ReduceOp.PRODUCT, [2.0, 200.0])):
        t = td.tensor([1.0 + rank, 10.0 * (1 + rank)], dtype=td.float64)
        dist.all_reduce(t, op)
        close(t, expect, 0, f"all_reduce {op}")
        assert t.dtype == td.float64
    t = td.tensor(np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2] * (rank + 1))   # a strided view
    dist.all_reduce(t, dist.ReduceOp.AVG)
    close(t, np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2] * 1.5, 0, "all_reduce AVG of a view")
    assert t.dtype == td.float32
    t = td.tensor([rank + 1, 7], dtype=td.int64)
    work = dist.all_reduce(t, async_op=True)
    work.wait()
    close(t, [3, 14], 0, "async all_reduce of int64")
    raises(lambda: dist.all_reduce(td.tensor([1, 2]), dist.ReduceOp.AVG), TypeError, "floating-point")
    t = td.tensor([[rank * 5.0, 1.0]])
    dist.broadcast(t, src=1)
    close(t, [[5.0, 1.0]], 0, "broadcast from rank 1")
    out = [td.zeros(2, dtype=td.int64) for _ in range(world)]
    dist.all_gather(out, td.tensor([rank, 10 * rank], dtype=td.int64))
    for r, o in enumerate(out):
        close(o, [r, 10 * r], 0, f"all_gather slot {r}")
    dist.barrier()
    assert dist.get_rank() == rank and dist.get_world_size() == world and dist.get_backend() == "mpi"


# ------------------------------------------------------------------ DDP = one process on the whole batch
def small_cnn(sync_bn):
    norm = nn.SyncBatchNorm if sync_bn else nn.BatchNorm2d
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm(4), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2),
                         norm(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).double()


def train_steps(model, batches, steps=3):
    """3 SGD-momentum steps; returns [(parameters, buffers) after each step] as NumPy copies."""
    opt = td.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    after = []
    for x, y in batches[:steps]:
        loss = F.cross_entropy(model(td.tensor(x)), td.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        after.append(([p.array.copy() for p in model.parameters()], [b.array.copy() for b in model.buffers()]))
    return after


def ddp_against_one_process(rank, world, **ddp_options):
    rng = np.random.default_rng(123)
    batches = [(rng.standard_normal((8, 3, 8, 8)), rng.integers(0, 5, 8)) for _ in range(3)]
    td.manual_seed(0)
    reference = train_steps(small_cnn(sync_bn=False), batches)         # 1 process, whole batches of 8
    td.manual_seed(rank)                                               # rank 1 starts from other weights
    model = small_cnn(sync_bn=True)
    ddp = DDP(model, **ddp_options)
    mine = train_steps(ddp, [(halves(x, rank, world), halves(y, rank, world)) for x, y in batches])
    for step, ((p_ref, b_ref), (p_dist, b_dist)) in enumerate(zip(reference, mine)):
        for i, (a, b) in enumerate(zip(p_ref, p_dist)):
            close(b, a, 1e-10, f"step {step + 1}, parameter {i}")
        for i, (a, b) in enumerate(zip(b_ref, b_dist)):
            close(b, a, 1e-10, f"step {step + 1}, buffer {i}")
    return ddp


@check
def ddp_equals_one_process(rank, world):
    ddp = ddp_against_one_process(rank, world)
    assert len(ddp.buckets) == 1, ddp.buckets


@check
def ddp_equals_one_process_many_buckets(rank, world):
    ddp = ddp_against_one_process(rank, world, bucket_cap_mb=1e-3)     # ~1 KB: one bucket per tensor or two
    assert len(ddp.buckets) >= 4, len(ddp.buckets)


@check
def ddp_no_sync_accumulates(rank, world):
    rng = np.random.default_rng(5)
    micro = [(rng.standard_normal((6, 7)), rng.integers(0, 3, 6)) for _ in range(3)]

    def mlp():
        return nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 3)).double()

    td.manual_seed(0)
    ref = mlp()
    for x, y in micro:                                                 # accumulate 3 whole micro-batches
        F.cross_entropy(ref(td.tensor(x)), td.tensor(y)).backward()
    td.manual_seed(0)
    ddp = DDP(mlp())
    for k, (x, y) in enumerate(micro):
        loss = lambda: F.cross_entropy(ddp(td.tensor(halves(x, rank, world))),  # noqa: E731
                                       td.tensor(halves(y, rank, world)))
        if k < len(micro) - 1:
            with ddp.no_sync():
                loss().backward()
            grad = ddp.module[0].weight.grad
            both = [td.zeros_like(grad) for _ in range(world)]
            dist.all_gather(both, grad)
            assert not np.allclose(both[0].array, both[1].array), "no_sync() reduced the gradients"
        else:
            loss().backward()
    for p_ref, p in zip(ref.parameters(), ddp.parameters()):
        close(p.grad, p_ref.grad, 1e-12, "accumulated gradient")


@check
def ddp_state_dict_has_module_prefix(rank, world):
    td.manual_seed(rank)
    ddp = DDP(small_cnn(sync_bn=True))
    state = ddp.state_dict()
    assert all(k.startswith("module.") for k in state), list(state)[:3]
    assert list(state) == ["module." + k for k in ddp.module.state_dict()]
    copy = DDP(small_cnn(sync_bn=True))
    copy.load_state_dict(state)
    for a, b in zip(copy.parameters(), ddp.parameters()):
        close(a, b, 0, "state_dict round trip")


@check
def ddp_broadcasts_rank0_weights_and_buffers(rank, world):
    td.manual_seed(rank)
    model = small_cnn(sync_bn=False)
    model[1].running_mean.array[...] = rank + 1.0
    ddp = DDP(model)
    for t in list(ddp.parameters()) + list(ddp.buffers()):
        got = [td.zeros_like(t) for _ in range(world)]
        dist.all_gather(got, t)
        close(got[1], got[0], 0, "rank 1's copy of rank 0's tensor")
    close(model[1].running_mean, np.ones(4), 0, "rank 0's running mean")


@check
def ddp_shape_mismatch_names_the_parameter(rank, world):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2 + rank))
    raises(lambda: DDP(model), RuntimeError, "'2.weight'", "rank 1")


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x):
        return self.used(self.body(x).relu())


@check
def ddp_unused_parameters(rank, world):
    td.manual_seed(0)
    ddp = DDP(TwoHeads().double(), find_unused_parameters=True)
    x = td.tensor(np.random.default_rng(rank).standard_normal((3, 4)))
    for _ in range(2):
        ddp.zero_grad()
        ddp(x).mean().backward()
        assert ddp.module.unused.weight.grad is None and ddp.module.used.weight.grad is not None
    strict = DDP(TwoHeads().double())
    strict(x).mean().backward()
    raises(lambda: strict(x), RuntimeError, "find_unused_parameters=True", "unused.weight")


# ------------------------------------------------------------------ SyncBatchNorm = BatchNorm on the whole batch
@check
def syncbn_equals_batchnorm(rank, world):
    rng = np.random.default_rng(7)
    for shape in ((6, 3, 5, 4), (8, 5)):
        x = rng.standard_normal(shape) * 3 + 2
        gy = rng.standard_normal(shape)
        C = shape[1]
        w0, b0 = rng.standard_normal(C), rng.standard_normal(C)
        bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(C, momentum=0.3).double()
        sync = nn.SyncBatchNorm(C, momentum=0.3).double()
        for layer in (bn, sync):
            layer.weight.array[...], layer.bias.array[...] = w0, b0
        xb, xs = td.tensor(x, requires_grad=True), td.tensor(halves(x, rank, world), requires_grad=True)
        yb, ys = bn(xb), sync(xs)
        yb.backward(td.tensor(gy))
        ys.backward(td.tensor(halves(gy, rank, world)))
        close(ys, halves(yb.array, rank, world), 1e-12, f"{shape}: output")
        close(xs.grad, halves(xb.grad.array, rank, world), 1e-12, f"{shape}: input gradient")
        for name in ("weight", "bias"):
            g = getattr(sync, name).grad
            dist.all_reduce(g)                 # this rank's sums; DDP would average them
            close(g, getattr(bn, name).grad, 1e-12, f"{shape}: {name} gradient summed over ranks")
        bn(xb)
        sync(xs)                               # a second step: the running averages move again
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            close(getattr(sync, name), getattr(bn, name), 1e-12, f"{shape}: {name}")
        assert ys.dtype == td.float64 and xs.grad.dtype == td.float64
    x32 = td.tensor(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), requires_grad=True)
    y32 = nn.SyncBatchNorm(2)(x32)
    y32.backward(td.ones_like(y32))
    assert y32.dtype == td.float32 and x32.grad.dtype == td.float32


@check
def convert_sync_batchnorm_keeps_the_tensors(rank, world):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4, affine=False)))
    weight, mean = model[1].weight, model[1].running_mean
    model.eval()
    out = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model and type(model[1]) is nn.SyncBatchNorm and type(model[2][0]) is nn.SyncBatchNorm
    assert model[1].weight is weight and model[1].running_mean is mean and not model[1].training
    assert model[2][0].weight is None
    bn = nn.BatchNorm1d(3)
    assert type(nn.SyncBatchNorm.convert_sync_batchnorm(bn)) is nn.SyncBatchNorm


def main(names):
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    for name in names or CHECKS:
        try:
            CHECKS[name](rank, world)
            print(f"CHECK {name} {rank} PASS", flush=True)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            print(f"CHECK {name} {rank} FAIL {reason}", flush=True)
            traceback.print_exc()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
