"""Which implementation of an op runs: scoped, thread-local settings, like ``td.no_grad()``.

Every op in ``tinydl/ops/`` is written as the textbook algorithm (the convolution:
im2col, one matrix product, col2im). Faster ways of computing the same numbers
(a direct kernel, a chunked multi-core schedule, ...) are *routes* in
``tinydl/kernels/``, chosen by one dispatch function per op. These settings pick
the route::

    with td.backends.reference():           # the textbook ops on the NumPy reference
        loss.backward()                     # kernels: what to step through in a debugger

    with td.backends.route(conv2d="direct"):         # force a route where it applies
        y = F.conv2d(x, w)

    with td.backends.record_routes() as taken:      # which routes ran, in order
        y = F.conv2d(x, w)
    taken        # [('conv2d', 'direct')]

``TINYDL_NO_NUMBA=1`` in the environment at import makes ``reference()`` the default. The
settings belong to the thread that makes them (a DataLoader worker keeps its own),
so two threads can run different routes at once. ``ROUTES`` lists each op's routes;
``td.backends.cpu.tune()`` is the explicit, process-wide tuning for speed.
"""
import contextlib
import os
import threading
import types

__all__ = ["ROUTES", "reference", "is_reference", "route", "forced_route", "record_routes", "note_route"]

#: op -> the routes ``route()`` can force. The textbook ones: 'reference' (NumPy kernels)
#: and 'im2col' (compiled kernels: Numba on the CPU, CUDA on the GPU); the others live in
#: kernels/conv.py. Batch norm: 'numba' (the op's passes, compiled; 'cuda' on the GPU) or
#: 'fused' (kernels/norm.py: one call a direction). Adam: its plain update or one kernel.
#: Cross entropy: its array code, or one Numba loop a direction on (N, C) logits (kernels/loss.py).
#: Max pooling ('reference', 'numba', 'cuda') and SGD ('single_tensor', 'fused_numba',
#: 'foreach_numba', 'fused_cuda') follow ``reference()`` and the device, and are recorded too.
#: The GPU's matrix products: CuPy's cuBLAS handle, or tinydl's own (what a CUDA graph's capture
#: takes; kernels/matmul.py).
ROUTES = {
    "conv2d": ("reference", "im2col", "pointwise", "winograd_f4", "winograd", "direct", "gy_columns", "chunked",
               "cudnn"),
    "conv_transpose2d": ("reference", "im2col", "winograd", "as_conv2d", "subpixel", "chunked"),
    "batch_norm": ("reference", "numba", "fused"),
    "adam": ("single_tensor", "fused_numba", "fused_cuda"),
    "cross_entropy": ("reference", "numba"),
    "matmul": ("cupy", "own_cublas"),
}

class _Settings(threading.local):
    """This thread's settings; the class attributes are every thread's defaults (and read fast)."""
    reference = None          # None: the process default below
    forced = types.MappingProxyType({})    # op -> forced route (replaced, never changed in place)
    recorders = ()            # the open record_routes lists


_local = _Settings()


# The default of every thread: TINYDL_NO_NUMBA=1 in the environment when tinydl was imported.
_REFERENCE_BY_DEFAULT = os.environ.get("TINYDL_NO_NUMBA", "0") == "1"


def is_reference():
    """Do the textbook ops run on the NumPy reference kernels in this thread?"""
    flag = _local.reference
    return _REFERENCE_BY_DEFAULT if flag is None else flag


@contextlib.contextmanager
def reference(enabled=True):
    """``with td.backends.reference():`` runs every op as written in ``tinydl/ops/``,
    on the plain NumPy kernels (``reference(False)`` lifts it in an inner block)."""
    previous = _local.reference
    _local.reference = bool(enabled)
    try:
        yield
    finally:
        _local.reference = previous


@contextlib.contextmanager
def route(**routes):
    """``with td.backends.route(conv2d="direct"):`` forces a route for each named op.
    A call the route cannot compute (a direct convolution with stride 2, say) takes
    the usual choice instead: ``record_routes`` tells which ran."""
    for op, name in routes.items():
        if op not in ROUTES or name not in ROUTES[op]:
            raise ValueError(f"td.backends.route: unknown route {op}={name!r}; "
                             f"the routes are {ROUTES.get(op, ROUTES)}")
    previous = _local.forced
    _local.forced = {**previous, **routes}
    try:
        yield
    finally:
        _local.forced = previous


def forced_route(op):
    """The route forced for ``op`` in this thread, or None."""
    return _local.forced.get(op)


@contextlib.contextmanager
def record_routes():
    """Collects ``(op, route)`` for every dispatched call in the block (this thread)."""
    taken = []
    recorders = _local.recorders
    _local.recorders = recorders + (taken,)
    try:
        yield taken
    finally:
        _local.recorders = recorders


def note_route(op, name):
    """Called by the dispatchers: tell the open ``record_routes`` blocks."""
    for taken in _local.recorders:
        taken.append((op, name))


from . import cpu, cudnn  # noqa: E402  (td.backends.cpu.tune, td.backends.cudnn.enabled)
