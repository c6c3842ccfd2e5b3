"""``td.cuda``: is a GPU usable, how much of its memory is in use, and CUDA graphs.

tinydl runs on an NVIDIA GPU through CuPy (``pip install 'tinydl[gpu]'``).
"""
import contextlib
import gc

from . import backend, backends


def is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cuda_is_available()


def device_count():
    return backend.cupy_module().cuda.runtime.getDeviceCount() if is_available() else 0


def synchronize():
    """Wait for the GPU to finish queued work (for timing)."""
    if is_available():
        backend.cupy_module().cuda.get_current_stream().synchronize()


def memory_allocated():
    """Bytes held by live arrays in CuPy's memory pool (0 without a GPU)."""
    return backend.cupy_module().get_default_memory_pool().used_bytes() if is_available() else 0


def memory_reserved():
    """Bytes CuPy's memory pool has taken from the driver (0 without a GPU)."""
    return backend.cupy_module().get_default_memory_pool().total_bytes() if is_available() else 0


# ---------------------------------------------------------------- CUDA graphs
class CUDAGraph:
    """GPU work captured once and replayed with one launch, as ``torch.cuda.CUDAGraph``.

    A step of a small network launches about a thousand kernels, each costing some
    microseconds of Python and CuPy on the host, often more than the kernel itself takes on
    the GPU. A graph records the launches once (``with td.cuda.graph(g): ...``) and
    ``g.replay()`` runs them all with one call, no Python in between.

    A replay runs the captured kernels on the arrays they touched at capture: the same
    addresses, new contents. So the inputs are copied into the arrays the capture read, the
    results are read from the arrays it wrote, and an array the graph reads must be updated
    in place, never replaced (a parameter, a momentum buffer, a running mean). What the
    captured code allocated comes from the graph's own memory pool, which no other code
    allocates from, so its temporaries stay the graph's for as long as it lives.
    """

    def __init__(self):
        self._graph = self._pool = self._stream = None

    def replay(self):
        """Run the captured work on the current stream (queued, as any kernel)."""
        if self._graph is None:
            raise RuntimeError("CUDAGraph.replay: nothing was captured (capture with `with td.cuda.graph(g):`)")
        self._graph.launch(backend.cupy_module().cuda.get_current_stream())

    def reset(self):
        """Let go of the graph (its pool lives on while arrays the capture made are in use)."""
        self._graph = self._pool = self._stream = None


class GraphCaptureError(RuntimeError):
    """The captured code did something a CUDA graph cannot hold (``td.cuda.graph``)."""


#: the pools of graphs, kept while arrays the captures made (gradients, outputs) use them:
#: CuPy before 14.1 frees a pool's memory with the pool, even under arrays still using it
_pools = []


@contextlib.contextmanager
def graph(cuda_graph, stream=None):
    """``with td.cuda.graph(g):`` captures the GPU work of the block into ``g``; the block's
    kernels are recorded, not run (``g.replay()`` runs them), as ``torch.cuda.graph``.

    The capture runs on a stream of its own (``stream``), after the work already queued, with
    a new memory pool as CuPy's allocator. The matrix products take tinydl's own cuBLAS
    handle (kernels/cublas_handle.py: CuPy's refuses a capture). Run the block once or twice
    first without capture, under ``td.backends.route(matmul='own_cublas')``: CuPy compiles
    its kernels, cuBLAS loads its own and tinydl fills its caches on first use, which must not
    happen inside a capture. The capture must not run out of GPU memory: CuPy would then
    free the pool's idle blocks, which the graph may already use.

    What a capture cannot hold raises GraphCaptureError, with the capture ended: a copy to
    the host (``.item()``, ``float(t)``, printing a value, a check that reads a value on the
    host), a size that depends on the data (``nonzero``, boolean-mask indexing), CuPy's random
    numbers (cuRAND: ``td.rand`` on 'cuda'; dropout draws from its own counter, which can be
    captured) and CuPy's own cuBLAS calls. Other errors pass as they are.
    """
    cupy = backend.cupy_module()
    if backend.capture.active:
        raise GraphCaptureError("td.cuda.graph: this thread is already capturing a graph")
    from .kernels import cublas_handle, cudnn
    stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
    pool = cupy.cuda.MemoryPool()
    _pools[:] = [p for p in _pools if p.used_bytes()] + [pool]
    gc.collect()                                    # no collection of older garbage mid-capture
    cupy.cuda.get_current_stream().synchronize()    # the capture reads what earlier work wrote
    cublas_handle.library.prepare(stream.ptr)       # its handle, stream and workspace: made now
    if cudnn.available() and backends.cudnn.enabled:
        cudnn.prepare()                             # cuDNN's handle too, where convolutions use it
    refused = (NotImplementedError, cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError)
    with stream, cupy.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        backend.capture.active = True
        try:
            yield cuda_graph
        except BaseException as exc:    # Ctrl-C too: the stream must not stay capturing
            try:
                stream.end_capture()
            except Exception:           # an invalidated capture ends with an error too
                pass
            if isinstance(exc, refused):
                raise _capture_error(exc) from exc
            raise
        finally:
            backend.capture.active = False
        try:                            # something that invalidated the capture without raising
            captured = stream.end_capture()
        except refused as exc:
            raise _capture_error(exc) from exc
    cuda_graph._graph, cuda_graph._pool, cuda_graph._stream = captured, pool, stream
    captured.upload(stream)            # instantiate it now, not at the first replay


def _capture_error(exc):
    return GraphCaptureError(
        f"td.cuda.graph: the captured code did something a CUDA graph cannot hold ({type(exc).__name__}: "
        f"{exc}). A graph holds GPU kernels only: no copy to the host (.item(), float(t), a printed value), no "
        "size that depends on the data (nonzero, boolean masks), no CuPy random numbers (td.rand), no matrix "
        "product but those of kernels.matmul (Linear and the conv routes; not Tensor @, adaptive pooling to "
        "sizes above 1, the textbook conv route)")


class GraphedStep:
    """``step(*arrays)`` (a whole training step: zero_grad, forward, loss, backward, optimizer
    step) run eagerly for its first ``warmup`` calls, then captured as a CUDA graph at the
    first call with the same shapes and dtypes as the call before, and replayed for every
    later call with those; a call with others (an epoch's smaller last batch) runs eagerly.
    The eager calls take the products the graph takes (``route(matmul='own_cublas')``).

    Each call copies its arrays into the graph's input arrays and returns what the capture
    returned: the same objects every time, holding this step's values (copy what you keep).
    ``key()``, if given, names the values the capture baked in (the learning rates): when it
    changes, the next call captures again. ``params``: the Tensors whose ``.grad`` the step
    fills; after a replay their ``.grad`` is the graph's gradients again (an eager call in
    between, or ``zero_grad(set_to_none=False)``, gives them other arrays).
    """

    def __init__(self, step, warmup=2, key=None, params=()):
        if int(warmup) < 1:     # the first step makes state (momentum buffers) and compiles kernels
            raise ValueError(f"GraphedStep: warmup must be >= 1 eager step before the capture, got {warmup}")
        self.step, self.warmup, self.key, self.params = step, int(warmup), key, list(params)
        self.calls = self.captures = self.replays = 0
        self._graph = self._signature = self._previous = None

    def __call__(self, *arrays):
        self.calls += 1
        signature, previous = tuple((a.shape, a.dtype) for a in arrays), self._previous
        self._previous = signature
        if self.calls <= self.warmup or signature != (self._signature if self._graph is not None else previous):
            return self._eager(arrays)
        key = self.key() if self.key is not None else None
        if self._graph is None or key != self._key:
            self._capture(arrays, signature, key)
        for static, a in zip(self._inputs, arrays):
            static[...] = a
        self._graph.replay()
        for p, g, a in zip(self.params, self._grads, self._grad_arrays):
            p.grad = g
            if g is not None:
                g.array = a
        self.replays += 1
        return self._outputs

    def _eager(self, arrays):
        with backends.route(matmul="own_cublas"):
            return self.step(*arrays)

    def _capture(self, arrays, signature, key):
        self._graph = self._outputs = None      # the old graph goes first
        self._grads, self._grad_arrays = [], []
        self._inputs = [backend.get_array_module(a).empty_like(a) for a in arrays]
        graph_ = CUDAGraph()
        with graph(graph_):
            self._outputs = self.step(*self._inputs)
        self._grads = [p.grad for p in self.params]
        self._grad_arrays = [None if g is None else g.array for g in self._grads]
        self._graph, self._signature, self._key = graph_, signature, key
        self.captures += 1
