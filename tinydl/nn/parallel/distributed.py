"""``DistributedDataParallel``: the same model on every rank, gradients averaged after backward.

Each rank runs the wrapped module on its own part of the batch. When the
wrapper is built, rank 0's parameters and buffers are broadcast, so every
rank starts from the same weights (after checking that every rank's model
has the same parameter shapes). Each backward then leaves in ``p.grad`` the
average over the ranks of their gradients, so the same optimizer step on
every rank keeps the weights equal: with a loss that is a mean over the
batch, training on W ranks with B samples each is training on one batch of
W*B samples.

How the gradients get reduced
-----------------------------
The autograd engine (``tinydl/autograd.py``) has no hooks: it calls each
node's ``backward`` once, in topological order, with the sum of every
gradient that reached that node's outputs. So the wrapper puts a node of its
own in front of each parameter: during ``forward`` every module sees, in
place of each parameter ``w``, the output of ``_GradReady`` (an identity,
y = w). That node's ``backward`` runs exactly when dL/dw is complete -- the
"gradient ready" event PyTorch gets from its autograd hooks -- and hands the
gradient to the reducer instead of to the engine:

* it copies dL/dw (plus ``w.grad`` left from earlier ``no_sync()`` steps)
  into ``w``'s slot of a flat bucket (about 25 MB; parameters in reverse
  order, roughly the order backward reaches them);
* when every parameter of a bucket is in, and every earlier bucket has been
  started, it starts that bucket's all-reduce (one non-blocking collective
  per bucket; bucket order is the same on every rank, as MPI requires);
* with the last bucket started it waits for all of them and stores
  w.grad = bucket slot / world size, for every parameter.

So ``loss.backward()`` returns with averaged gradients and an unchanged
training loop works (``Trainer`` included). Overlap: the all-reduce of the
last layers' bucket runs while backward computes the earlier layers -- on
GPUs (NCCL on its own stream) truly; with MPI on CPUs only as far as the MPI
library progresses messages between calls (MPICH does so inside MPI calls,
and the reducer polls the open buckets at each gradient event).

``find_unused_parameters=True``: after forward, the graph is walked from the
outputs and the parameters it does not reach are marked ready (zero
contribution) when backward starts; parameters unused on every rank keep
their ``grad``. Without it, a parameter that gets no gradient leaves the
reduction unfinished, and the next forward raises (as PyTorch does).
"""
import contextlib

import numpy as np

from ...autograd import Function, _topological_order, is_grad_enabled
from ...backend import device_of, get_array_module
from ...tensor import Tensor
from ..module import Module

__all__ = ["DistributedDataParallel"]

_MB = 1024 * 1024


class _GradReady(Function):
    """y = w, an identity in front of parameter w whose backward reports that dL/dw is complete.

    Backward: dL/dw = dL/dy, given to the reducer (which stores the average over
    the ranks in ``w.grad``), so nothing goes back to the engine.
    """

    def forward(ctx, w, reducer=None, index=0, pass_=None):
        ctx.reducer, ctx.index, ctx.pass_ = reducer, index, pass_
        return w

    def backward(ctx, gy):
        ctx.reducer.grad_ready(ctx.pass_, ctx.index, gy)
        return None


class _Bucket:
    """Flat buffer of consecutive gradients of one dtype and device; one all-reduce each."""

    def __init__(self, indices, params):
        xp = get_array_module(params[indices[0]].array)
        self.indices = indices
        self.offsets, total = {}, 0
        for i in indices:
            self.offsets[i] = total
            total += params[i].array.size
        self.buffer = xp.zeros(total, dtype=params[indices[0]].array.dtype)

    def slot(self, flat, i, shape):
        start = self.offsets[i]
        return flat[start:start + int(np.prod(shape, dtype=np.int64))].reshape(shape)


class _Pass:
    """One forward-backward's reduction: which gradients arrived, which buckets are started."""

    def __init__(self, buckets, n):
        self.ready = [False] * n
        self.missing = [len(b.indices) for b in buckets]
        self.started = 0                 # buckets whose all-reduce is started (a prefix)
        self.works = []
        self.unused = ()                 # parameters the graph does not reach (find_unused_parameters)
        self.used = np.ones(n, dtype=np.uint8)

    @property
    def begun(self):
        return any(self.ready)


def _tensors_in(obj):
    """Every Tensor in a (nested) output: a tensor, tuple, list, dict or namedtuple."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors_in(v)


def _broadcast_coalesced(group, arrays, src=0):
    """Broadcast ``arrays`` from ``src`` in place: one flat message per (dtype, device)."""
    kinds = {}
    for a in arrays:
        kinds.setdefault((a.dtype, str(device_of(a))), []).append(a)
    for same in kinds.values():
        xp = get_array_module(same[0])
        flat = xp.concatenate([a.ravel() for a in same])
        group.broadcast(flat, src)
        if group.rank == src:
            continue
        start = 0
        for a in same:
            a[...] = flat[start:start + a.size].reshape(a.shape)
            start += a.size


class DistributedDataParallel(Module):
    """``DistributedDataParallel(module)``, as ``torch.nn.parallel.DistributedDataParallel``.

    module                  the model, already on this rank's device ('cpu', or 'cuda:<local rank>')
    broadcast_buffers       broadcast rank 0's buffers (BN running statistics) before each
                            training forward (True), as PyTorch
    bucket_cap_mb           bucket size (25 MB)
    find_unused_parameters  walk the graph after forward for parameters that get no gradient
    gradient_as_bucket_view ``p.grad`` are views of the bucket buffers (no copy)

    ``device_ids``, ``output_device``, ``dim``, ``check_reduction`` and ``static_graph``
    are accepted for PyTorch compatibility: one process drives one device here.
    ``state_dict()`` keys carry the ``module.`` prefix, as PyTorch's; save
    ``model.module.state_dict()`` for a checkpoint that loads without the wrapper.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        from ... import distributed as dist
        self.group = dist._get_default_group(process_group, "DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * _MB)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.require_backward_grad_sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any "
                               "parameter that requires a gradient.")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self._check_devices(device_ids)
        self._check_shapes_across_ranks()
        _broadcast_coalesced(self.group, [p.array for p in self.params] + [b.array for b in module.buffers()])
        self._build_buckets()
        self._pass = None

    # ------------------------------------------------------------ set-up
    def _check_devices(self, device_ids):
        devices = {str(device_of(p.array)) for p in self.params}
        if len(devices) > 1:
            raise ValueError(f"DistributedDataParallel: the module's parameters are on several devices "
                             f"{sorted(devices)}; one process drives one device")
        device = devices.pop()
        if device_ids is not None and (device == "cpu" or [str(d).split(":")[-1] for d in device_ids]
                                       != [device.split(":")[-1]]):
            raise ValueError(f"DistributedDataParallel: device_ids {device_ids} do not match the module's "
                             f"device {device} (device_ids must be None for CPU modules)")
        if self.group.name == "nccl" and device == "cpu":
            raise ValueError("DistributedDataParallel: backend 'nccl' reduces GPU memory but the module is on "
                             "the cpu; move it to this rank's GPU first (model.to(f'cuda:{local_rank}')), "
                             "or use backend 'mpi'")

    def _check_shapes_across_ranks(self):
        """Every rank must hold parameters of the same shapes, in the same order (a clear error if not)."""
        g = self.group
        shapes = [p.shape for p in self.params]
        counts = g.all_gather(np.array([len(shapes), max(len(s) for s in shapes)], dtype=np.int64))
        for r, (count, _) in enumerate(counts):
            if count != len(shapes):
                raise RuntimeError(f"DistributedDataParallel: rank {r} has {count} parameters that require "
                                   f"grad, rank {g.rank} has {len(shapes)}; every rank must build the same model")
        width = 1 + int(counts[:, 1].max())
        table = np.full((len(shapes), width), -1, dtype=np.int64)
        for i, s in enumerate(shapes):
            table[i, 0], table[i, 1:1 + len(s)] = len(s), s
        every = g.all_gather(table)
        for r in range(g.size):
            bad = np.nonzero((every[r] != every[0]).any(axis=1))[0]
            if len(bad):
                i = int(bad[0])
                shape_r, shape_0 = (tuple(int(d) for d in row[1:1 + row[0]]) for row in (every[r][i], every[0][i]))
                raise RuntimeError(f"DistributedDataParallel: parameter '{self.param_names[i]}' has shape "
                                   f"{shape_r} on rank {r} but {shape_0} on rank 0; every rank must build "
                                   "the same model")

    def _layout(self):
        return [(p.array.dtype, str(device_of(p.array))) for p in self.params]

    def _build_buckets(self):
        """Parameters in reverse order (backward meets the last layers first), cut into buckets of
        at most ``bucket_bytes_cap`` bytes of one dtype and device."""
        layout = self._layout()
        buckets, current, size = [], [], 0
        for i in reversed(range(len(self.params))):
            nbytes = self.params[i].array.nbytes
            if current and (layout[i] != layout[current[0]] or size + nbytes > self.bucket_bytes_cap):
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
        buckets.append(current)
        self.buckets = [_Bucket(b, self.params) for b in buckets]
        self.bucket_of = {i: b for b, bucket in enumerate(self.buckets) for i in bucket.indices}
        self._bucket_layout = layout

    # ------------------------------------------------------------ forward
    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of forwards run inside only accumulate ``p.grad`` locally; the first
        synchronised backward after them averages the accumulated gradients."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def forward(self, *inputs, **kwargs):
        if not is_grad_enabled():
            return self.module(*inputs, **kwargs)
        if self.broadcast_buffers and self.training:
            buffers = [b.array for b in self.module.buffers()]
            if buffers:
                _broadcast_coalesced(self.group, buffers)
        if not self.require_backward_grad_sync:
            return self.module(*inputs, **kwargs)
        self._check_previous_pass()
        if self._layout() != self._bucket_layout:       # the module was moved or cast since
            self._build_buckets()
        pass_ = self._pass = _Pass(self.buckets, len(self.params))
        index = {id(p): i for i, p in enumerate(self.params)}
        stand_ins, swapped = {}, []
        for module in self.module.modules():
            for name, p in module._parameters.items():
                i = index.get(id(p))
                if i is None:
                    continue
                if i not in stand_ins:
                    stand_ins[i] = _GradReady.apply(p, reducer=self, index=i, pass_=pass_)
                module._parameters[name] = stand_ins[i]
                swapped.append((module, name, p))
        try:
            output = self.module(*inputs, **kwargs)
        finally:
            for module, name, p in swapped:
                module._parameters[name] = p
        if self.find_unused_parameters:
            reached = set()
            for t in _tensors_in(output):
                if t.grad_fn is not None:
                    reached.update(id(node) for node in _topological_order([t.grad_fn]))
            pass_.unused = [i for i, s in stand_ins.items() if id(s.grad_fn) not in reached]
        return output

    def _check_previous_pass(self):
        last = self._pass
        if last is not None and last.begun and not all(last.ready):
            missing = [self.param_names[i] for i, r in enumerate(last.ready) if not r]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not produce gradients for "
                f"{len(missing)} parameter(s) ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}), "
                "so their reduction never finished. Pass find_unused_parameters=True if some parameters "
                "do not take part in the loss, and call backward once per forward.")

    # ------------------------------------------------------------ backward: the reducer
    def grad_ready(self, pass_, i, g):
        """Called by ``_GradReady.backward`` when dL/d(params[i]) = g is complete."""
        if pass_ is not self._pass:
            raise RuntimeError("DistributedDataParallel: backward through the output of an earlier forward; "
                               "run backward after each forward (use no_sync() to accumulate)")
        if pass_.ready[i]:
            raise RuntimeError(f"DistributedDataParallel: the gradient of '{self.param_names[i]}' arrived "
                               "twice in one reduction; call backward once per forward")
        if not pass_.begun:
            for j in pass_.unused:
                pass_.used[j] = 0
                self._add_to_bucket(pass_, j, None)
        self._add_to_bucket(pass_, i, g)

    def _add_to_bucket(self, pass_, i, g):
        p, b = self.params[i], self.bucket_of[i]
        bucket = self.buckets[b]
        slot = bucket.slot(bucket.buffer, i, p.shape)
        earlier = p.grad.array if p.grad is not None else None      # accumulated under no_sync()
        if g is None:
            slot[...] = 0 if earlier is None else earlier
        else:
            slot[...] = g if earlier is None else earlier + g
        pass_.ready[i] = True
        pass_.missing[b] -= 1
        while pass_.started < len(self.buckets) and pass_.missing[pass_.started] == 0:
            pass_.works.append(self.group.all_reduce_async(self.buckets[pass_.started].buffer, "sum"))
            pass_.started += 1
        if pass_.started == len(self.buckets):
            self._finish(pass_)
        else:
            for work in pass_.works:        # lets MPI move the open buckets' messages along
                work.is_completed()

    def _finish(self, pass_):
        """Wait for every bucket, then p.grad = bucket slot / world size."""
        for work in pass_.works:
            work.wait()
        used = pass_.used
        if self.find_unused_parameters:          # keep the grad of parameters no rank used
            self.group.all_reduce(used, "max")
        size = self.group.size
        for bucket in self.buckets:
            if self.gradient_as_bucket_view:
                bucket.buffer /= size
                flat = bucket.buffer
            else:
                flat = bucket.buffer / size
            for i in bucket.indices:
                if used[i]:
                    p = self.params[i]
                    p.grad = Tensor(bucket.slot(flat, i, p.shape))
        pass_.works = []

    def extra_repr(self):
        return f"world_size={self.group.size}, buckets={len(self.buckets)}"
