"""The 'nccl' backend on GPUs: ``mpiexec -n N python -m mpi4py tests/_dist_scripts/nccl_checks.py``
(one process per GPU; N = 1 works). Prints ``NCCL CHECKS PASS`` when every check holds."""
import numpy as np

import tinydl as td
import tinydl.distributed as dist
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.backend import is_cupy_array
from tinydl.ops.sync_norm import sync_batch_norm


def main():
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{dist.get_node_local_rank()}"

    t = td.tensor([1.0 + rank, 2.0], device=device)
    dist.all_reduce(t)
    assert is_cupy_array(t.array)
    np.testing.assert_array_equal(t.cpu().numpy(), [world * (world + 1) / 2, 2.0 * world])
    t = td.tensor([1.0 + rank], device=device, dtype=td.float64)
    dist.all_reduce(t, dist.ReduceOp.AVG, async_op=True).wait()
    np.testing.assert_allclose(t.cpu().numpy(), [(world + 1) / 2])
    t = td.tensor([float(rank)] * 3, device=device)
    dist.broadcast(t, src=0)
    np.testing.assert_array_equal(t.cpu().numpy(), [0.0] * 3)
    out = [td.zeros(2, device=device, dtype=td.int64) for _ in range(world)]
    dist.all_gather(out, td.tensor([rank, 1], device=device, dtype=td.int64))
    assert [o.cpu().numpy().tolist() for o in out] == [[r, 1] for r in range(world)]
    dist.barrier()

    # DDP on the GPU: the gradients stay CuPy arrays; on one rank they are the plain model's.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3, 8, 8)), rng.integers(0, 4, 8)

    def net():
        td.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 4)).double().to(device)

    plain, ddp = net(), nn.parallel.DistributedDataParallel(net())
    for model in (plain, ddp):
        F.cross_entropy(model(td.tensor(x, device=device)), td.tensor(y, device=device)).backward()
    for p, q in zip(plain.parameters(), ddp.parameters()):
        assert is_cupy_array(q.grad.array)
        if world == 1:
            np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.cpu().numpy(), rtol=1e-12, atol=1e-12)

    # The SyncBatchNorm op through NCCL (on one rank: batch norm).
    xb = td.tensor(rng.standard_normal((6, 3, 4, 4)), device=device, requires_grad=True)
    xs = td.tensor(xb.array.copy(), requires_grad=True)
    bn = nn.BatchNorm2d(3).double().to(device)
    yb = bn(xb)
    ys = sync_batch_norm(xs, None, None, bn.weight, bn.bias, 0.1, 1e-5, dist._get_default_group())
    gy = td.tensor(rng.standard_normal((6, 3, 4, 4)), device=device)
    yb.backward(gy)
    ys.backward(gy)
    if world == 1:
        np.testing.assert_allclose(ys.cpu().numpy(), yb.cpu().numpy(), atol=1e-12)
        np.testing.assert_allclose(xs.grad.cpu().numpy(), xb.grad.cpu().numpy(), atol=1e-12)
    dist.destroy_process_group()
    print("NCCL CHECKS PASS", flush=True)


if __name__ == "__main__":
    main()
