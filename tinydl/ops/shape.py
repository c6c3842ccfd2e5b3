"""Shape and indexing ops: they move elements around, never change their values.

So every backward here is the same forward run the other way: a reshape is
undone by reshaping back, a permutation by the inverse permutation, a slice by
writing the gradient into a zero array at the slice, a concatenation by
splitting. The one subtle case is indexing with repeated indices,
``y = x[[0, 0, 1]]``: x[0] was used twice, so its gradient is the SUM of both
upstream gradients. ``g[idx] = gy`` would keep only one of them; the backward
uses a scatter-add (``kernels.scatter.scatter_add``) instead.
"""
import math

import numpy as np

from ..autograd import Function, constant, replay_view, unbroadcast
from ..kernels.scatter import scatter_add as add_at   # (the name scatter_add is torch.scatter_add, below)
from ..backend import get_array_module
from ..tensor import Tensor
from .math import promoted, raw, zero_where

__all__ = ["reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "expand",
           "cat", "stack", "split", "chunk", "narrow", "gather", "index_select", "flip", "roll",
           "repeat", "tile", "movedim", "tril", "triu", "nonzero", "masked_select", "scatter", "scatter_add",
           "index_add", "take_along_dim", "diagonal"]


# ---------------------------------------------------------------- helpers
def normalize_dim(dim, ndim, op, shape=None):
    """A dim in [-ndim, ndim) as a non-negative int, or a clear error.

    A 0-d tensor accepts dim 0 and -1, as in PyTorch.
    """
    n = max(ndim, 1)
    if isinstance(dim, Tensor):
        dim = int(dim)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -n <= dim < n:
        where = f"shape {tuple(shape)}" if shape is not None else f"{ndim} dims"
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {where} "
                         f"(expected a dim in [{-n}, {n - 1}])")
    return int(dim) % n


def _as_tensor(t, op, k):
    if isinstance(t, Tensor):
        return t
    if isinstance(t, np.ndarray) or type(t).__module__.startswith("cupy"):
        return Tensor(t)
    raise TypeError(f"{op}: expected a sequence of Tensors, got {type(t).__name__} at entry {k}")


def _one_dtype(tensors):
    """The tensors of cat/stack in one dtype (``math.promoted``), at no cost when they share one."""
    return tensors if all(t.dtype == tensors[0].dtype for t in tensors) else promoted(*tensors)


# ---------------------------------------------------------------- reshape family
class Reshape(Function):
    """y = x with a new shape (same elements, same order);  dL/dx = gy reshaped back.

    Also serves flatten, squeeze and unsqueeze, which are reshapes too.
    """

    double_backward = "operators"
    makes_views = True

    def forward(ctx, x, shape):
        ctx.x_shape = x.shape
        return x.reshape(shape)

    def backward(ctx, gy):
        return gy.reshape(ctx.x_shape)


def reshape(x, shape):
    """``x.reshape(shape)``; one entry may be -1 (inferred). A view when NumPy can make one."""
    shape = tuple(int(s) for s in shape)
    known = math.prod(s for s in shape if s != -1)
    n_unknown = shape.count(-1)
    ok = (n_unknown == 0 and known == x.numel()) or \
         (n_unknown == 1 and known != 0 and x.numel() % known == 0)
    if n_unknown > 1 or not ok or any(s < -1 for s in shape):
        raise RuntimeError(f"reshape: shape {list(shape)} is invalid for input of size {x.numel()} "
                           f"(shape {x.shape})")
    return Reshape.apply(x, shape=shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one. A 0-d tensor becomes shape (1,) as in PyTorch."""
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,))
    s = normalize_dim(start_dim, x.ndim, "flatten", x.shape)
    e = normalize_dim(end_dim, x.ndim, "flatten", x.shape)
    if s > e:
        raise RuntimeError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return Reshape.apply(x, shape=shape)


def squeeze(x, dim=None):
    """Drop dims of size 1: all of them (dim=None) or those listed in ``dim`` (int or tuple).
    Naming a dim whose size is not 1 is not an error, it stays (PyTorch's rule)."""
    if dim is None:
        dims = range(x.ndim)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = [normalize_dim(d, x.ndim, "squeeze", x.shape) for d in dims]
    drop = {d for d in dims if d < x.ndim and x.shape[d] == 1}
    shape = tuple(n for d, n in enumerate(x.shape) if d not in drop)
    return Reshape.apply(x, shape=shape)


def unsqueeze(x, dim):
    """Insert a dim of size 1 at ``dim`` in [-ndim-1, ndim] (-1 appends)."""
    d = normalize_dim(dim, x.ndim + 1, "unsqueeze", x.shape)
    return Reshape.apply(x, shape=x.shape[:d] + (1,) + x.shape[d:])


# ---------------------------------------------------------------- permute / transpose
class Permute(Function):
    """y = x with its axes reordered: y.shape[i] = x.shape[dims[i]].

    dL/dx = gy with the inverse permutation (axis dims[i] of x is axis i of y).
    """

    double_backward = "linear"
    makes_views = True

    def forward(ctx, x, dims):
        ctx.dims = dims
        return get_array_module(x).transpose(x, dims)

    def backward(ctx, gy):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return get_array_module(gy).transpose(gy, inverse)


def permute(x, dims):
    dims = tuple(normalize_dim(d, x.ndim, "permute", x.shape) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise RuntimeError(f"permute: dims {dims} are not a permutation of the {x.ndim} dims "
                           f"of a tensor of shape {x.shape}")
    return Permute.apply(x, dims=dims)


def transpose(x, dim0, dim1):
    """Swap two dims (a permutation that exchanges dim0 and dim1)."""
    if x.ndim == 0:
        return Reshape.apply(x, shape=())
    dims = list(range(x.ndim))
    d0 = normalize_dim(dim0, x.ndim, "transpose", x.shape)
    d1 = normalize_dim(dim1, x.ndim, "transpose", x.shape)
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, dims=tuple(dims))


# ---------------------------------------------------------------- expand
class Expand(Function):
    """y = x broadcast to ``shape`` (a read-only view: no copy).

    Each x element is used once per copy, so dL/dx sums gy over the new leading
    axes and over the axes where x had size 1 (``unbroadcast``).
    """

    double_backward = "operators"
    makes_views = True

    def forward(ctx, x, shape):
        ctx.x_shape = x.shape
        return get_array_module(x).broadcast_to(x, shape)

    def backward(ctx, gy):
        return unbroadcast(gy, ctx.x_shape)


def expand(x, shape):
    """PyTorch's expand: -1 keeps a size; new dims may only be added in front."""
    shape = tuple(int(s) for s in shape)
    new = len(shape) - x.ndim
    if new < 0:
        raise RuntimeError(f"expand: the number of sizes ({len(shape)}) must be at least the "
                           f"number of dims ({x.ndim}) of the tensor of shape {x.shape}")
    out = []
    for i, s in enumerate(shape):
        if i < new:
            if s < 0:
                raise RuntimeError(f"expand: size {s} is not allowed for a new leading dim "
                                   f"(target sizes {list(shape)}, tensor shape {x.shape})")
            out.append(s)
            continue
        old = x.shape[i - new]
        if s == -1:
            s = old
        if s != old and old != 1:
            raise RuntimeError(f"expand: the expanded size ({s}) must match the existing size ({old}) "
                               f"at non-singleton dim {i}; target sizes {list(shape)}, tensor shape {x.shape}")
        out.append(s)
    return Expand.apply(x, shape=tuple(out))


# ---------------------------------------------------------------- cat / stack / split
class Cat(Function):
    """y = the inputs joined along ``dim``;  dL/dx_k = the slice of gy that x_k filled."""

    double_backward = "linear"

    def forward(ctx, *arrays, dim):
        xp = get_array_module(*arrays)
        ctx.dim, ctx.sizes = dim, [a.shape[dim] for a in arrays]
        return xp.concatenate(arrays, axis=dim)

    def backward(ctx, gy):
        grads, start = [], 0
        for size in ctx.sizes:
            index = (slice(None),) * ctx.dim + (slice(start, start + size),)
            grads.append(gy[index])
            start += size
        return tuple(grads)


def cat(tensors, dim=0):
    """Concatenate along an existing dim (torch.cat). Shapes must agree except along ``dim``;
    1-d empty tensors are left out, as by PyTorch (``out = td.tensor([]); out = td.cat([out, x])``)."""
    tensors = [_as_tensor(t, "cat", k) for k, t in enumerate(tensors)]
    if not tensors:
        raise RuntimeError("cat: expected a non-empty sequence of tensors")
    if any(t.shape == (0,) for t in tensors) and any(t.ndim != 1 for t in tensors):
        tensors = [t for t in tensors if t.shape != (0,)]      # (beside 1-d tensors: a plain join)
    ref = tensors[0]
    d = normalize_dim(dim, ref.ndim, "cat", ref.shape)
    for k, t in enumerate(tensors):
        if t.device != ref.device:
            raise RuntimeError(f"cat: expected all tensors on one device, but tensor 0 is on {ref.device} "
                               f"and tensor {k} on {t.device}")
        if t.ndim != ref.ndim or t.ndim == 0 or \
                any(a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d):
            raise RuntimeError(f"cat: sizes of tensors must match except in dim {d}: "
                               f"tensor 0 has shape {ref.shape}, tensor {k} has shape {t.shape}")
    return Cat.apply(*_one_dtype(tensors), dim=d)


class Stack(Function):
    """y = the inputs stacked along a new axis ``dim``;  dL/dx_k = gy taken at position k of that axis."""

    double_backward = "linear"

    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        return get_array_module(*arrays).stack(arrays, axis=dim)

    def backward(ctx, gy):
        n = gy.shape[ctx.dim]
        return tuple(gy[(slice(None),) * ctx.dim + (k,)] for k in range(n))


def stack(tensors, dim=0):
    """Join equally shaped tensors along a new dim (torch.stack)."""
    tensors = [_as_tensor(t, "stack", k) for k, t in enumerate(tensors)]
    if not tensors:
        raise RuntimeError("stack: expected a non-empty sequence of tensors")
    ref = tensors[0]
    for k, t in enumerate(tensors):
        if t.device != ref.device:
            raise RuntimeError(f"stack: expected all tensors on one device, but tensor 0 is on {ref.device} "
                               f"and tensor {k} on {t.device}")
        if t.shape != ref.shape:
            raise RuntimeError(f"stack: expects each tensor to be equal size, but tensor 0 has shape "
                               f"{ref.shape} and tensor {k} has shape {t.shape}")
    d = normalize_dim(dim, ref.ndim + 1, "stack", ref.shape)
    return Stack.apply(*_one_dtype(tensors), dim=d)


class Split(Function):
    """ys = consecutive slices of x along ``dim`` (views, no copy).

    dL/dx = the upstream gradients of the pieces joined back together (pieces
    that got no gradient contribute zeros).
    """

    double_backward = "linear"
    makes_views = True

    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        pieces, start = [], 0
        for size in sizes:
            pieces.append(x[(slice(None),) * dim + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def backward(ctx, *gys):
        return get_array_module(*gys).concatenate(gys, axis=ctx.dim)


def split(x, split_size_or_sections, dim=0):
    """torch.split: pieces of ``split_size`` (the last may be smaller), or of the listed sizes."""
    d = normalize_dim(dim, x.ndim, "split", x.shape)
    if x.ndim == 0:
        raise RuntimeError("split: cannot split a 0-d tensor")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(f"split: sizes {sizes} do not add up to the size {n} of dim {d} "
                               f"(tensor shape {x.shape})")
    else:
        size = int(split_size_or_sections)
        if size <= 0 and n > 0:
            raise RuntimeError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - start) for start in range(0, n, size)] if n else [0]
    return Split.apply(x, sizes=tuple(sizes), dim=d)


def chunk(x, chunks, dim=0):
    """torch.chunk: pieces of ceil(n / chunks) elements; may return fewer than ``chunks``."""
    if chunks <= 0:
        raise RuntimeError(f"chunk: chunks must be positive, got {chunks}")
    d = normalize_dim(dim, x.ndim, "chunk", x.shape)
    n = x.shape[d]
    if n == 0:
        return Split.apply(x, sizes=(0,) * chunks, dim=d)
    return split(x, -(-n // chunks), d)


def narrow(x, dim, start, length):
    """x restricted to ``start:start+length`` along ``dim`` (a view; torch.narrow)."""
    d = normalize_dim(dim, x.ndim, "narrow", x.shape)
    n = x.shape[d]
    start = start + n if start < 0 else start
    if not (0 <= start <= n and 0 <= length and start + length <= n):
        raise IndexError(f"narrow: start {start} + length {length} exceeds dim {d} of size {n} "
                         f"(tensor shape {x.shape})")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


# ---------------------------------------------------------------- indexing
def _is_array(p):
    return hasattr(p, "dtype") and hasattr(p, "ndim")


def _is_integer(p):
    """A Python/NumPy integer or a 0-d integer array: PyTorch treats both as a plain int."""
    if isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)):
        return True
    return _is_array(p) and p.ndim == 0 and p.dtype.kind in "iu"


def _raw_index(index, xp, shape, op):
    """The index as a tuple of array-module objects: Tensors unwrapped, lists as arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    out = []
    for p in parts:
        if isinstance(p, Tensor):
            p = p.array
        elif isinstance(p, list):
            p = xp.asarray(p) if p else xp.zeros(0, dtype=int)      # x[[]]: no element, an integer index
        elif isinstance(p, np.ndarray) and xp is not np:
            p = xp.asarray(p)
        if _is_array(p) and p.dtype.kind not in "iub":
            raise IndexError(f"{op}: tensors used as indices must be integer or bool, got dtype "
                             f"{p.dtype} (indexing a tensor of shape {tuple(shape)})")
        out.append(p)
    return tuple(out)


def _has_integer_array(index):
    """True if ``index`` has an integer array: then positions may repeat."""
    return any(_is_array(p) and p.dtype.kind in "iu" for p in index)


class GetItem(Function):
    """y = x[index]: basic (ints, slices with any step, None, ...) and advanced
    (integer / boolean arrays) indexing with NumPy's rules (``getitem`` below
    handles the one case where PyTorch's differ).

    Each y element is one x element, so dL/dx is gy written back where it came
    from, zeros elsewhere. Integer-array indices may name one x element several
    times; then its gradient is the sum, hence scatter-add instead of assignment.
    """

    double_backward = "linear"
    makes_views = True

    def forward(ctx, x, index):
        ctx.x_shape, ctx.index = x.shape, index
        y = x[index]
        if isinstance(y, np.generic):   # one element: NumPy copies it out, PyTorch gives a 0-d view
            y = x[(index if type(index) is tuple else (index,)) + (Ellipsis,)]     # (x[1, 2].add_(5))
        return y

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.x_shape, dtype=gy.dtype)
        if _has_integer_array(ctx.index):
            add_at(gx, ctx.index, gy)
        else:
            gx[ctx.index] = gy   # basic indices and masks never repeat an element
        return gx


def _split_integers_first(index):
    """PyTorch and NumPy differ on ``x[1, :, [4, 4, 0]]``: NumPy counts the int
    as an advanced index, so the two 'advanced' parts are separated by a slice
    and the result's advanced dim moves to the front (shape (3, 4)); PyTorch
    applies the int first, leaving ``x[1][:, [4, 4, 0]]`` (shape (4, 3)). We
    follow PyTorch by indexing twice: the ints (and the slices, Nones) first,
    then the arrays on what is left."""
    first, then = [], []
    for p in index:
        if _is_integer(p):
            first.append(p)
        elif _is_array(p):
            # a k-dim boolean mask covers k dims
            first.extend([slice(None)] * (p.ndim if p.dtype.kind == "b" else 1))
            then.append(p)
        elif p is Ellipsis:
            first.append(p)
            then.append(p)
        else:       # a slice, or None (a new dim of size 1 that ``then`` keeps)
            first.append(p)
            then.append(slice(None))
    return tuple(first), tuple(then)


def raw_torch_index(index, xp, shape, op="getitem"):
    """``index`` as NumPy indices applied one after the other with PyTorch's meaning: one
    step, or two where PyTorch's rule differs from NumPy's (``_split_integers_first``)."""
    index = _raw_index(index, xp, shape, op)
    if any(_is_array(p) and p.ndim > 0 for p in index) and any(_is_integer(p) for p in index):
        return _split_integers_first(index)
    return (index,)


def take(array, steps):
    """``array[index]`` for the steps of ``raw_torch_index``."""
    for step in steps:
        array = array[step]
    return array


def put(array, steps, value):
    """``array[index] = value`` for the steps of ``raw_torch_index`` (all but the last are
    basic indices, whose results are views of ``array``)."""
    take(array, steps[:-1])[steps[-1]] = value


def getitem(x, index):
    """``x[index]`` for a Tensor ``x`` (differentiable), with PyTorch's rules."""
    try:
        for step in raw_torch_index(index, x._xp, x.shape):
            x = GetItem.apply(x, index=step)
        return x
    except IndexError as exc:
        raise IndexError(f"getitem: {exc} (indexing a tensor of shape {x.shape})") from None


class IndexPut(Function):
    """y = x with y[index] = v (``x[index] = v`` while the graph is recorded: ``inplace.py``);
    v is broadcast to the indexed part and cast to x's dtype.

    The written elements of y are v's, the others x's, so
        dL/dx = gy with zeros where v was written,
        dL/dv = gy[index], summed over the axes v was broadcast along.
    ``index`` holds the steps of ``raw_torch_index``.
    """

    double_backward = "linear"

    def forward(ctx, x, v, index):
        ctx.index, ctx.v_shape, ctx.v_dtype = index, v.shape, v.dtype
        y = x.copy()
        put(y, index, v)
        return y

    def backward(ctx, gy):
        need_x, need_v = ctx.needs_input_grad
        gx = gv = None
        if need_x:
            gx = gy.copy()
            put(gx, ctx.index, 0)
        if need_v:
            gv = unbroadcast(take(gy, ctx.index), ctx.v_shape).astype(ctx.v_dtype, copy=False)
        return gx, gv


class CopySlices(Function):
    """base[view] = v, written into base's own array: how an in-place change of a view
    enters the graph while it is recorded (``v = x[0]; v.mul_(2)``: ``inplace.py``), as
    PyTorch's CopySlices. ``steps`` make the view from base (``autograd.replay_view``).

    The view's elements of the result are v's, the others base's, so
        dL/dbase = gy with zeros on the view,
        dL/dv = the view of gy.
    """

    double_backward = "operators"       # backward: a product and the view's ops, on Tensors too

    def forward(ctx, base, v, steps):
        ctx.steps, ctx.base_shape = steps, base.shape
        view = replay_view(base, steps)
        if view.base is None:           # the base's array was replaced (t.data = ...) since
            raise RuntimeError(f"in-place change of a view: its base (shape {base.shape}) no longer holds "
                               f"the memory the view was made from")
        view[...] = v                   # (where v is the view's own memory: the values it holds)
        return base

    def backward(ctx, gy):
        need_base, need_v = ctx.needs_input_grad
        gbase = gv = None
        if need_v:
            gv = replay_view(gy, ctx.steps)
        if need_base:                   # gy with zeros on the view (not gy * 0: inf * 0 is NaN);
            xp = get_array_module(raw(gy))      # its positions by replaying the view on their numbers
            n = math.prod(ctx.base_shape)
            on_view = xp.zeros(n, dtype=bool)
            on_view[replay_view(xp.arange(n).reshape(ctx.base_shape), ctx.steps).ravel()] = True
            gbase = zero_where(on_view.reshape(ctx.base_shape), gy)
        return gbase, gv


def _along_dim_index(index, dim):
    """The full advanced index that picks ``x[..., index[i,j,k], ...]`` along ``dim``:
    ``index`` itself at ``dim`` and a broadcast arange (i, j, k, ...) at every other dim."""
    xp = get_array_module(index)
    parts = []
    for d, n in enumerate(index.shape):
        if d == dim:
            parts.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = n
            parts.append(xp.arange(n).reshape(shape))
    return tuple(parts)


class Gather(Function):
    """y[i][j][k] = x[index[i][j][k]][j][k] for dim=0 (and likewise for other dims; torch.gather).

    dL/dx: each y element came from one x element, so gy is scatter-added back
    there (one x element may be gathered several times).
    """

    double_backward = "linear"

    def forward(ctx, x, index, dim):
        ctx.x_shape, ctx.index = x.shape, _along_dim_index(index, dim)
        return x[ctx.index]

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.x_shape, dtype=gy.dtype)
        return add_at(gx, ctx.index, gy), None


def _check_index_range(index, n, op, what):
    if index.size:
        lo, hi = int(index.min()), int(index.max())   # one small device-to-host copy on 'cuda'
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{op}: index {bad} is out of bounds for {what} with size {n}")


def gather(input, dim, index):
    """torch.gather: out has ``index``'s shape; out[...] = input[... index[...] at dim ...]."""
    d = normalize_dim(dim, input.ndim, "gather", input.shape)
    idx = index.array if isinstance(index, Tensor) else input._xp.asarray(index)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"gather: index must be an integer tensor, got dtype {idx.dtype}")
    if idx.ndim != input.ndim or input.ndim == 0:
        raise RuntimeError(f"gather: index has {idx.ndim} dims but input has {input.ndim} "
                           f"(index shape {tuple(idx.shape)}, input shape {input.shape})")
    for k in range(idx.ndim):
        if k != d and idx.shape[k] > input.shape[k]:
            raise RuntimeError(f"gather: index shape {tuple(idx.shape)} is larger than input shape "
                               f"{input.shape} in dim {k}")
    _check_index_range(idx, input.shape[d], "gather", f"dim {d}")
    return Gather.apply(input, idx, dim=d)


class IndexSelect(Function):
    """y = x taken at the positions ``index`` (1-d) along ``dim``;  dL/dx = gy scatter-added back."""

    double_backward = "linear"

    def forward(ctx, x, index, dim):
        ctx.x_shape, ctx.index = x.shape, (slice(None),) * dim + (index,)
        return x[ctx.index]

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.x_shape, dtype=gy.dtype)
        return add_at(gx, ctx.index, gy), None


def index_select(input, dim, index):
    """torch.index_select: rows (or any dim's slices) picked by a 1-d integer index, repeats allowed."""
    d = normalize_dim(dim, input.ndim, "index_select", input.shape)
    idx = index.array if isinstance(index, Tensor) else input._xp.asarray(index)
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise RuntimeError(f"index_select: index must be a 1-d integer tensor, got dtype {idx.dtype} "
                           f"and shape {tuple(idx.shape)}")
    _check_index_range(idx, input.shape[d], "index_select", f"dim {d}")
    return IndexSelect.apply(input, idx.reshape(-1), dim=d)


class Flip(Function):
    """y = x reversed along ``dims``;  dL/dx = gy reversed along the same dims."""

    double_backward = "linear"

    def forward(ctx, x, dims):
        ctx.dims = dims
        return get_array_module(x).flip(x, axis=dims).copy()    # a copy, as PyTorch's (NumPy's is a view)

    def backward(ctx, gy):
        return get_array_module(gy).flip(gy, axis=ctx.dims)


def flip(input, dims):
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    dims = tuple(normalize_dim(d, input.ndim, "flip", input.shape) for d in dims)
    return Flip.apply(input, dims=dims)


class Roll(Function):
    """y = x shifted circularly by ``shifts`` along ``dims`` (all elements, flattened, if dims is
    None);  dL/dx = gy shifted back by -shifts."""

    double_backward = "linear"

    def forward(ctx, x, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return get_array_module(x).roll(x, shifts, axis=dims)

    def backward(ctx, gy):
        back = -ctx.shifts if ctx.dims is None else tuple(-s for s in ctx.shifts)
        return get_array_module(gy).roll(gy, back, axis=ctx.dims)


def roll(input, shifts, dims=None):
    """torch.roll (used for circular convolution on closed contours)."""
    if dims is None:   # roll the flattened tensor, then restore the shape
        return Roll.apply(input, shifts=int(shifts), dims=None)
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    dims = tuple(normalize_dim(d, input.ndim, "roll", input.shape) for d in dims)
    return Roll.apply(input, shifts=tuple(int(s) for s in shifts), dims=dims)


# ---------------------------------------------------------------- repeat / tile / movedim
class Repeat(Function):
    """y = x tiled ``repeats[k]`` times along each dim k (torch's repeat: x first gets leading
    dims of size 1 when there are more repeats than dims).

    Each x element appears once per tile, so dL/dx sums gy over the tiles: gy seen with
    shape (r0, n0, r1, n1, ...) summed over the r axes.
    """

    double_backward = "linear"

    def forward(ctx, x, repeats):
        padded = (1,) * (len(repeats) - x.ndim) + x.shape
        ctx.x_shape, ctx.padded, ctx.repeats = x.shape, padded, repeats
        return get_array_module(x).tile(x.reshape(padded), repeats)

    def backward(ctx, gy):
        tiles = [n for r_n in zip(ctx.repeats, ctx.padded) for n in r_n]
        return gy.reshape(tiles).sum(axis=tuple(range(0, len(tiles), 2))).reshape(ctx.x_shape)


def repeat(x, repeats):
    """torch's ``x.repeat(*sizes)``: as many sizes as dims at least; extra ones add leading dims."""
    repeats = tuple(int(r) for r in repeats)
    if len(repeats) < x.ndim:
        raise RuntimeError(f"repeat: the number of repeat dims ({len(repeats)}) can not be smaller than the "
                           f"number of dims ({x.ndim}) of the tensor of shape {x.shape}")
    if any(r < 0 for r in repeats):
        raise RuntimeError(f"repeat: repeats must be non-negative, got {list(repeats)}")
    return Repeat.apply(x, repeats=repeats)


def tile(x, dims):
    """torch.tile: ``repeat`` with 1s put in front of ``dims`` when it has fewer entries than x dims."""
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


def movedim(x, source, destination):
    """Move the dims ``source`` to the positions ``destination`` (ints or tuples); the other
    dims keep their order (torch.movedim: a permute)."""
    source = tuple(source) if isinstance(source, (tuple, list)) else (source,)
    destination = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
    if len(source) != len(destination):
        raise RuntimeError(f"movedim: source {source} and destination {destination} must have the same length")
    src = [normalize_dim(d, x.ndim, "movedim", x.shape) for d in source]
    dst = [normalize_dim(d, x.ndim, "movedim", x.shape) for d in destination]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError(f"movedim: repeated dim in source {source} or destination {destination}")
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(x.ndim) if d not in src)
    return permute(x, tuple(o if o is not None else next(rest) for o in order))


# ---------------------------------------------------------------- tril / triu / diagonal
class Triangle(Function):
    """y = x with the elements above (tril) or below (triu) the ``diagonal``-th diagonal of
    each matrix in its last two dims set to 0. Linear: dL/dx = the same triangle of gy."""

    double_backward = "linear"

    def forward(ctx, x, upper, diagonal):
        ctx.upper, ctx.diagonal = upper, diagonal
        xp = get_array_module(x)
        return (xp.triu if upper else xp.tril)(x, diagonal)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        return (xp.triu if ctx.upper else xp.tril)(gy, ctx.diagonal)


def _triangle(x, diagonal, upper):
    if x.ndim < 2:
        raise RuntimeError(f"{'triu' if upper else 'tril'}: input tensor must have at least 2 dimensions, got "
                           f"shape {x.shape}")
    return Triangle.apply(x, upper=upper, diagonal=int(diagonal))


def tril(input, diagonal=0):
    """The lower triangle (with the ``diagonal``-th diagonal: 0 the main one, 1 above it, -1 below)."""
    return _triangle(input, diagonal, False)


def triu(input, diagonal=0):
    return _triangle(input, diagonal, True)


def _diagonal_positions(n1, n2, offset, xp):
    """Rows and columns of the ``offset``-th diagonal of an (n1, n2) matrix (above the main one for offset > 0)."""
    r0, c0 = max(-offset, 0), max(offset, 0)
    length = max(0, min(n1 - r0, n2 - c0))
    return xp.arange(length) + r0, xp.arange(length) + c0


class Diagonal(Function):
    """y[..., i] = x[..., r0 + i, c0 + i] on the plane of dims ``dim1``, ``dim2``, which are
    removed, the diagonal becoming the last dim (torch.diagonal: a view of x).

    dL/dx = zeros with gy written back on that diagonal.
    """

    double_backward = "linear"
    makes_views = True

    def forward(ctx, x, offset, dim1, dim2):
        xp = get_array_module(x)
        moved = xp.moveaxis(x, (dim1, dim2), (-2, -1))
        ctx.moved_shape, ctx.dims = moved.shape, (dim1, dim2)
        ctx.at = _diagonal_positions(moved.shape[-2], moved.shape[-1], offset, xp)
        y = xp.diagonal(moved, offset, -2, -1)
        if not getattr(y.flags, "writeable", True):     # NumPy's diagonal view is read-only by default;
            y.flags.writeable = getattr(x.flags, "writeable", True)     # writing through it is PyTorch's
        return y

    def backward(ctx, gy):
        xp = get_array_module(gy)
        g = xp.zeros(ctx.moved_shape, dtype=gy.dtype)
        g[(Ellipsis,) + ctx.at] = gy
        return xp.moveaxis(g, (-2, -1), ctx.dims)


def diagonal(input, offset=0, dim1=0, dim2=1):
    if input.ndim < 2:
        raise RuntimeError(f"diagonal: input must have at least 2 dimensions, got shape {input.shape}")
    d1 = normalize_dim(dim1, input.ndim, "diagonal", input.shape)
    d2 = normalize_dim(dim2, input.ndim, "diagonal", input.shape)
    if d1 == d2:
        raise RuntimeError(f"diagonal: dimensions cannot be identical ({dim1}, {dim2})")
    return Diagonal.apply(input, offset=int(offset), dim1=d1, dim2=d2)


# ---------------------------------------------------------------- nonzero / masked_select
def nonzero(input, *, as_tuple=False):
    """The int64 indices of the nonzero elements, outside the graph: an (n, ndim) tensor, or
    with ``as_tuple`` one 1-d tensor per dim (a 0-d input counts as 1-d there, as PyTorch's)."""
    xp, a = input._xp, input.array
    if as_tuple:
        return tuple(Tensor(i.astype(np.int64, copy=False)) for i in xp.nonzero(a.reshape(1) if a.ndim == 0 else a))
    if a.ndim == 0:
        return Tensor(xp.zeros((int(bool(a)), 0), dtype=np.int64))
    return Tensor(xp.argwhere(a).astype(np.int64, copy=False))


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` holds (both broadcast), as a 1-d tensor
    (differentiable: a boolean index of the broadcast input)."""
    if mask.dtype != np.bool_:
        raise RuntimeError(f"masked_select: expected a bool mask, got dtype {mask.dtype} (shape {mask.shape})")
    try:
        shape = np.broadcast_shapes(input.shape, mask.shape)
    except ValueError:
        raise RuntimeError(f"masked_select: shapes {input.shape} and {mask.shape} cannot be broadcast together") \
            from None
    x = input if input.shape == shape else expand(input, shape)
    m = mask.array if mask.shape == shape else input._xp.broadcast_to(mask.array, shape)
    return getitem(x, m)


# ---------------------------------------------------------------- scatter / index_add / take_along_dim
class Scatter(Function):
    """y = x with src written at ``index`` along ``dim``: for dim=0, y[index[i][j]][j] =
    src[i][j] (torch.scatter), or added there with ``add`` (torch.scatter_add; repeats add
    up). ``index`` may be smaller than src: the elements of src beyond it are not used.

        scatter:      dL/dx = gy with zeros where src was written (those x values are gone),
        scatter_add:  dL/dx = gy;
        both:         dL/dsrc = gy gathered at index (zeros beyond index's shape).
    ``src`` may be a number (``value``): then only x has a gradient.
    """

    double_backward = "linear"

    def forward(ctx, x, index, src, dim, add):
        ctx.where, ctx.add = _along_dim_index(index, dim), add
        ctx.region = tuple(slice(0, n) for n in index.shape)
        ctx.src_shape = getattr(src, "shape", ())
        values = src[ctx.region] if ctx.src_shape else src
        y = x.copy()
        if add:
            add_at(y, ctx.where, values)
        else:
            y[ctx.where] = values
        return y

    def backward(ctx, gy):
        need_x, _, need_src = ctx.needs_input_grad
        gx = gsrc = None
        if need_x:
            gx = gy.copy()
            if not ctx.add:
                gx[ctx.where] = 0
        if need_src:
            gsrc = get_array_module(gy).zeros(ctx.src_shape, dtype=gy.dtype)
            gsrc[ctx.region] = gy[ctx.where]
        return gx, None, gsrc


class ScatterValue(Scatter):
    """``scatter`` of a number: y = x * keep + (the number where written), affine in x, not
    linear, so create_graph differentiates that restatement (the linear rule would write
    the number into the gradient too)."""

    double_backward = "composite"

    def composite(ctx, x, index, src, dim, add):
        xp = x._xp
        keep = xp.ones(x.shape, dtype=x.dtype)
        written = xp.zeros(x.shape, dtype=x.dtype)
        if add:
            add_at(written, ctx.where, src)
        else:
            keep[ctx.where] = 0
            written[ctx.where] = src
        return x * constant(keep, x) + constant(written, x)


def _index_array(index, input, op):
    idx = index.array if isinstance(index, Tensor) else input._xp.asarray(index)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: index must be an integer tensor, got dtype {idx.dtype}")
    return idx


def _scatter(input, dim, index, src, op, add):
    d = normalize_dim(dim, input.ndim, op, input.shape)
    idx = _index_array(index, input, op)
    if idx.ndim != input.ndim:
        raise RuntimeError(f"{op}: index has {idx.ndim} dims but self has {input.ndim} (index shape "
                           f"{tuple(idx.shape)}, self shape {input.shape})")
    if isinstance(src, Tensor):
        if src.dtype != input.dtype:
            raise RuntimeError(f"{op}: expected self.dtype to be equal to src.dtype, got {input.dtype} and "
                               f"{src.dtype}")
        if src.ndim != input.ndim or any(i > s for i, s in zip(idx.shape, src.shape)):
            raise RuntimeError(f"{op}: index shape {tuple(idx.shape)} must not be larger than src shape "
                               f"{src.shape} in any dim")
    else:
        src = input.dtype.type(src)
    for k in range(idx.ndim):
        if k != d and idx.shape[k] > input.shape[k]:
            raise RuntimeError(f"{op}: index shape {tuple(idx.shape)} is larger than self shape {input.shape} "
                               f"in dim {k}")
    _check_index_range(idx, input.shape[d] if input.ndim else 1, op, f"dim {d}")
    if input.ndim == 0:     # a 0-d tensor: one element, at index 0
        out = _scatter(reshape(input, (1,)), 0, idx.reshape(1),
                       reshape(src, (1,)) if isinstance(src, Tensor) else src, op, add)
        return reshape(out, ())
    return (Scatter if isinstance(src, Tensor) else ScatterValue).apply(input, idx, src, dim=d, add=add)


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """torch.scatter: a copy of input with ``src`` (a tensor, or the number ``value``) written
    at ``index`` along ``dim``; ``reduce='add'`` adds instead (as scatter_add)."""
    if src is None:
        src = value
    if src is None:
        raise TypeError("scatter: expected src (a tensor or a number) or value")
    if reduce not in (None, "add"):
        raise NotImplementedError(f"scatter: reduce={reduce!r} is not supported (None or 'add')")
    return _scatter(input, dim, index, src, "scatter", reduce == "add")


def scatter_add(input, dim, index, src):
    """torch.scatter_add: a copy of input with ``src`` added at ``index`` along ``dim`` (repeats add up)."""
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_add: src must be a Tensor, got {type(src).__name__}")
    return _scatter(input, dim, index, src, "scatter_add", True)


class IndexAdd(Function):
    """y = x with y[..., index[i], ...] += alpha * source[..., i, ...] along ``dim`` (repeats
    add up; torch.index_add).  dL/dx = gy;  dL/dsource = alpha * gy taken at index along dim."""

    double_backward = "linear"

    def forward(ctx, x, index, source, dim, alpha):
        ctx.where, ctx.alpha = (slice(None),) * dim + (index,), alpha
        y = x.copy()
        add_at(y, ctx.where, source if alpha == 1 else source * alpha)
        return y

    def backward(ctx, gy):
        need_x, _, need_source = ctx.needs_input_grad
        gsource = None
        if need_source:
            gsource = gy[ctx.where] if ctx.alpha == 1 else gy[ctx.where] * ctx.alpha
        return (gy if need_x else None), None, gsource


def index_add(input, dim, index, source, *, alpha=1):
    d = normalize_dim(dim, input.ndim, "index_add", input.shape)
    idx = _index_array(index, input, "index_add")
    if idx.ndim > 1:
        raise RuntimeError(f"index_add: index must be 1-d, got shape {tuple(idx.shape)}")
    idx = idx.reshape(-1)
    if source.dtype != input.dtype:
        raise RuntimeError(f"index_add: self ({input.dtype}) and source ({source.dtype}) must have the same dtype")
    expected = input.shape[:d] + (idx.size,) + input.shape[d + 1:] if input.ndim else (idx.size,)
    if tuple(source.shape) != expected and not (input.ndim == 0 and source.numel() == idx.size):
        raise RuntimeError(f"index_add: source shape {source.shape} must be {expected} (self shape {input.shape}, "
                           f"{idx.size} indices along dim {d})")
    _check_index_range(idx, input.shape[d] if input.ndim else 1, "index_add", f"dim {d}")
    if input.ndim == 0:
        return reshape(IndexAdd.apply(reshape(input, (1,)), idx, reshape(source, (idx.size,)), dim=0,
                                      alpha=alpha), ())
    return IndexAdd.apply(input, idx, source, dim=d, alpha=alpha)


def take_along_dim(input, indices, dim=None):
    """torch.take_along_dim: ``gather`` with input and indices broadcast against each other
    except along ``dim``; without ``dim`` both are flattened first."""
    idx = _index_array(indices, input, "take_along_dim")
    if dim is None:
        return gather(reshape(input, (-1,)), 0, idx.reshape(-1))
    d = normalize_dim(dim, input.ndim, "take_along_dim", input.shape)
    if idx.ndim != input.ndim:
        raise RuntimeError(f"take_along_dim: input and indices should have the same number of dimensions, got "
                           f"shapes {input.shape} and {tuple(idx.shape)}")
    try:
        common = list(np.broadcast_shapes(*[tuple(1 if k == d else n for k, n in enumerate(s))
                                            for s in (input.shape, idx.shape)]))
    except ValueError:
        raise RuntimeError(f"take_along_dim: shapes {input.shape} and {tuple(idx.shape)} cannot be broadcast "
                           f"(except along dim {d})") from None
    x_shape = tuple(common[:d] + [input.shape[d]] + common[d + 1:])
    i_shape = tuple(common[:d] + [idx.shape[d]] + common[d + 1:])
    x = input if input.shape == x_shape else expand(input, x_shape)
    xp = get_array_module(idx)
    idx = xp.where(idx < 0, idx + input.shape[d], idx)         # -1: the last, as PyTorch's
    return gather(x, d, xp.broadcast_to(idx, i_shape))
