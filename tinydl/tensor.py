"""The Tensor: an array (numpy on 'cpu', cupy on 'cuda') plus what autograd needs.

A Tensor holds
  ``array``          the array itself (``t.data`` is PyTorch's: a Tensor over the same
                     array that autograd does not see);
  ``requires_grad``  whether gradients should flow to it;
  ``grad``           a Tensor of the same shape once backward() reached it (leaves);
  ``grad_fn``        the Function node that produced it (None for leaves).

Arithmetic, indexing and the methods below only forward to the ops in
``tinydl/ops``; the Tensor itself knows no calculus.
"""
import math
import numbers

import numpy as np

from . import backend
from .backend import get_array_module, parse_device, device_of, to_device, array_module_for

# PyTorch's dtype names, as NumPy dtypes (x.dtype compares equal to td.float32).
float16 = np.dtype("float16")
float32 = float_ = np.dtype("float32")
float64 = double = np.dtype("float64")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
bool_ = np.dtype("bool")

_default_float = float32


def _normalize_dtype(dtype):
    """A dtype argument as a NumPy dtype: Python's ``bool``, ``int``, ``float`` as PyTorch
    reads them (bool, int64, float64)."""
    if dtype is None:
        return None
    if dtype is bool:
        return bool_
    if dtype is float:
        return float64
    if dtype is int:
        return int64
    return np.dtype(dtype)


class _VersionCounter:
    """How many times a storage was changed in place; shared by a tensor and its views
    (autograd compares it with the value seen at forward, see autograd.py)."""

    value = 0       # on the class until the first in-place change: cheap to make (one per saved tensor)
    #: how many recorded in-place changes (ops/inplace.py) this storage has had: a tensor over
    #: it whose history saw fewer (a view, or the tensor a view was changed through) has
    #: values its history does not explain (``Tensor._history_of``, ``Function.apply``)
    rebased = 0


class Tensor:
    __array_priority__ = 1000   # numpy_array * tensor -> Tensor.__rmul__, not numpy's loop
    # Every tensor starts with these; they live on the class until set (every op makes one).
    _grad = None
    grad_fn = None
    _output_index = 0
    requires_grad = False
    _version_counter = None     # made by _counter() when first read or shared
    _freed_input = None         # a constant's data-free stand-in in the graph, once a node let go of it
    _kept_by_a_node = False     # a graph node holds this tensor itself (autograd._record)
    _history_of = 0             # the storage's ``rebased`` count that this tensor's history explains
    _view_of = None             # a view's (base, the ops that make it from base): autograd.replay_view
    _hooks = None               # a leaf's gradient hooks (register_hook)
    _backward_owned = False     # a .grad backward adds into in place (its own memory, or set by hand)

    def __init__(self, data, requires_grad=False):
        if type(data) is not np.ndarray:              # every op's output takes this one test
            if isinstance(data, Tensor):
                data = data.array
            if not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
                data = np.asarray(data)
        self.array = data
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------ attributes
    @property
    def grad(self):
        """The gradient backward() accumulated (None before the first), a Tensor of this shape."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:       # as PyTorch: a grad the optimizer would broadcast is refused here
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            a, b = value.array, self.array
            if a.shape != b.shape or a.dtype != b.dtype or type(a) is not type(b) or (
                    type(a) is not np.ndarray and a.device != b.device):
                raise RuntimeError(f"assigned grad (shape {tuple(value.shape)}, {value.dtype}, {value.device}) does "
                                   f"not match the tensor (shape {tuple(self.shape)}, {self.dtype}, {self.device})")
            if value is self:
                raise RuntimeError("can't assign a tensor as its own grad")
            if value.grad_fn is None:   # a plain tensor set by hand: backward adds into it, as PyTorch
                value._backward_owned = getattr(value.array.flags, "writeable", True)
        self._grad = value

    @property
    def _xp(self):
        return get_array_module(self.array)

    @property
    def shape(self):
        return self.array.shape           # a tuple on NumPy and CuPy alike

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return device_of(self.array)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def ndim(self):
        return self.array.ndim

    def dim(self):
        return self.array.ndim

    def numel(self):
        return int(self.array.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    @property
    def _version(self):
        """In-place changes so far (shared with views), as PyTorch's ``t._version``."""
        return self._counter().value

    def _counter(self):
        """The version counter, made on first use: most tensors are never saved nor changed
        (benchmarks/bench_alone.py's overhead rows)."""
        counter = self._version_counter
        if counter is None:     # setdefault: two threads saving it at once get one counter
            counter = self.__dict__.setdefault("_version_counter", _VersionCounter())
        return counter

    def _bump_version(self):
        """Record an in-place change of the data (every writer of ``self.array[...]`` calls this)."""
        self._counter().value += 1

    @property
    def is_leaf(self):
        return self.grad_fn is None

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind not in "fc":
            raise RuntimeError(f"only floating point tensors can require gradients, got dtype {self.dtype}")
        if self.grad_fn is not None and not flag:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep ``.grad`` of this non-leaf tensor after backward (leaves always keep it)."""
        from .autograd import retain_grad
        retain_grad(self)
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient in every backward; a Tensor it returns
        replaces the gradient. Returns a handle whose ``remove()`` takes the hook away."""
        from .autograd import register_hook
        return register_hook(self, hook)

    @property
    def retains_grad(self):
        """Whether backward fills ``.grad`` of this non-leaf tensor (``retain_grad()``)."""
        retained = self.grad_fn._retained if self.grad_fn is not None else None
        return bool(retained) and retained.get(self._output_index) is self

    def __repr__(self):
        body = np.array2string(self.numpy_view(), separator=", ", prefix="tensor(")
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __hash__ = object.__hash__  # __eq__ is elementwise, identity stays the hash

    # ------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        from .autograd import backward
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self):
        """Same data (and so the same version counter), cut from the graph."""
        out = Tensor(self.array)
        out._version_counter = self._counter()
        return out

    @property
    def data(self):
        """PyTorch's ``.data``: a new Tensor over the same array, outside the graph and
        not requiring grad. Unlike ``detach()`` it has its own version counter, so
        in-place changes through it are not seen by autograd (the old way to update
        weights: ``p.data.sub_(lr * p.grad.data)``); ``t.array`` is the array itself."""
        return Tensor(self.array)

    @data.setter
    def data(self, value):
        """``t.data = other`` makes ``t`` use ``other``'s array (same shape not required,
        as PyTorch); the graph and ``requires_grad`` stay as they are."""
        if not isinstance(value, Tensor):
            raise TypeError(f"t.data = value: value must be a Tensor, got {type(value).__name__}")
        self.array = value.array

    def detach_(self):
        if self._view_of is not None:   # as PyTorch: its base's history would still reach it
            raise RuntimeError(f"detach_: can't detach a view (shape {tuple(self.shape)}, made by "
                               "reshape/indexing/permute...) in place; use detach() instead")
        self.grad_fn, self.requires_grad = None, False
        return self

    # ------------------------------------------------------------ conversion
    def numpy_view(self):
        """The data as a NumPy array (a host copy for 'cuda'), for printing."""
        return backend.to_host(self.array)

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        if self.device.type != "cpu":
            raise TypeError(f"numpy() on a '{self.device}' tensor; use tensor.cpu().numpy() to copy it to the host")
        return self.array

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.array.reshape(()).item()  # one scalar device-to-host copy on 'cuda'

    def tolist(self):
        return self.numpy_view().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __index__(self):
        if self.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy_view()
        return a if dtype is None else a.astype(dtype)

    def to(self, *args, **kwargs):
        """``x.to('cuda')``, ``x.to(td.float64)``, ``x.to('cpu', td.float32)``, ``x.to(other)``;
        ``copy=True`` gives a copy even where nothing changes (``non_blocking`` is accepted)."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got an unexpected keyword argument {next(iter(kwargs))!r}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(_normalize_dtype(dtype)) != self.dtype:
            out = _math.cast(out, _normalize_dtype(dtype))
        if device is not None and parse_device(device) != self.device:
            out = _math.to_device(out, parse_device(device))
        return _math.clone(out) if copy and out is self else out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def long(self):
        return self.to(int64)

    def int(self):
        return self.to(int32)

    def bool(self):
        return self.to(bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def clone(self):
        return _math.clone(self)

    def contiguous(self):
        """self if its array is laid out in C order, else a copy that is (``.view`` needs one:
        ``x.transpose(1, 2).contiguous().view(n, -1)``)."""
        return self if self.array.flags.c_contiguous else _math.clone(self)

    # ------------------------------------------------------------ in-place
    def _check_inplace(self, op):
        from .autograd import is_grad_enabled
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op}: in-place change of a tensor that requires grad "
                               "(wrap it in td.no_grad() or use .data)")

    def __setitem__(self, index, value):
        """``x[index] = value`` (PyTorch's indexing; recorded in the graph where needed: ops/inplace.py)."""
        _inplace.setitem(self, index, value)

    # zero_, fill_ and copy_ are ``self[...] = value``: the same rules (and graph) as x[i] = v
    def zero_(self):
        _inplace.setitem(self, Ellipsis, 0)
        return self

    def fill_(self, value):
        _inplace.setitem(self, Ellipsis, value)
        return self

    def copy_(self, src):
        if isinstance(src, Tensor):
            src = src.to(self.device)
        else:
            src = to_device(src, self.device)
        _inplace.setitem(self, Ellipsis, src)
        return self

    # self <- self op other in self's own array (views and other names see it), recorded in
    # the graph while it is (ops/inplace.py): the hand-written update ``p -= lr * p.grad``
    def add_(self, other, alpha=1):
        """self += alpha * other in place, as torch's (``p.data.add_(g, alpha=-lr)``)."""
        return _inplace.update(self, _math.add, other if alpha == 1 else other * alpha, "add_")

    def sub_(self, other, alpha=1):
        return _inplace.update(self, _math.sub, other if alpha == 1 else other * alpha, "sub_")

    def mul_(self, other):
        return _inplace.update(self, _math.mul, other, "mul_")

    def div_(self, other):
        return _inplace.update(self, _math.div, other, "div_")

    def pow_(self, exponent):
        return _inplace.update(self, _math.pow, exponent, "pow_")

    def __ipow__(self, other):
        return _inplace.update(self, _math.pow, other, "**=")

    def __imod__(self, other):
        return _inplace.update(self, _math.remainder, other, "%=")

    def __ifloordiv__(self, other):
        return _inplace.update(self, _math.floor_divide, other, "//=")

    def __iand__(self, other):
        return _inplace.bitwise(self, "bitwise_and", other, "&=")

    def __ior__(self, other):
        return _inplace.bitwise(self, "bitwise_or", other, "|=")

    def __ixor__(self, other):
        return _inplace.bitwise(self, "bitwise_xor", other, "^=")

    def __iadd__(self, other):
        return _inplace.update(self, _math.add, other, "+=")

    def __isub__(self, other):
        return _inplace.update(self, _math.sub, other, "-=")

    def __imul__(self, other):
        return _inplace.update(self, _math.mul, other, "*=")

    def __itruediv__(self, other):
        return _inplace.update(self, _math.div, other, "/=")

    def uniform_(self, a=0.0, b=1.0):
        self._check_inplace("uniform_")
        self.array[...] = backend.rng_for(self._xp).uniform(a, b, self.shape)
        self._bump_version()
        return self

    def normal_(self, mean=0.0, std=1.0):
        self._check_inplace("normal_")
        self.array[...] = backend.rng_for(self._xp).normal(mean, std, self.shape)
        self._bump_version()
        return self

    # ------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return _math.add(self, other)

    def __radd__(self, other):
        return _math.add(other, self)

    def __sub__(self, other):
        return _math.sub(self, other)

    def __rsub__(self, other):
        return _math.sub(other, self)

    def __mul__(self, other):
        return _math.mul(self, other)

    def __rmul__(self, other):
        return _math.mul(other, self)

    def __truediv__(self, other):
        return _math.div(self, other)

    def __rtruediv__(self, other):
        return _math.div(other, self)

    def __floordiv__(self, other):
        return _math.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _math.floor_divide(other, self)

    def __mod__(self, other):
        return _math.remainder(self, other)

    def __rmod__(self, other):
        return _math.remainder(other, self)

    def __pow__(self, other):
        return _math.pow(self, other)

    def __rpow__(self, other):
        return _math.pow(other, self)

    def __neg__(self):
        return _math.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _math.abs(self)

    def __matmul__(self, other):
        return _math.matmul(self, other)

    def __rmatmul__(self, other):
        return _math.matmul(other, self)

    # comparisons: boolean results, never part of the graph
    def __lt__(self, other):
        return _math.compare(self, other, "less")

    def __le__(self, other):
        return _math.compare(self, other, "less_equal")

    def __gt__(self, other):
        return _math.compare(self, other, "greater")

    def __ge__(self, other):
        return _math.compare(self, other, "greater_equal")

    def __eq__(self, other):
        if other is None:           # ``t == None`` is plain False, as in PyTorch
            return False
        return _math.compare(self, other, "equal")

    def __ne__(self, other):
        if other is None:
            return True
        return _math.compare(self, other, "not_equal")

    def __invert__(self):
        return Tensor(~self.array)

    def __and__(self, other):
        return _math.bitwise(self, other, "bitwise_and")

    def __rand__(self, other):
        return _math.bitwise(other, self, "bitwise_and")

    def __or__(self, other):
        return _math.bitwise(self, other, "bitwise_or")

    def __ror__(self, other):
        return _math.bitwise(other, self, "bitwise_or")

    def __xor__(self, other):
        return _math.bitwise(self, other, "bitwise_xor")

    def __rxor__(self, other):
        return _math.bitwise(other, self, "bitwise_xor")

    def __lshift__(self, other):
        return _math.bitwise(self, other, "left_shift")

    def __rshift__(self, other):
        return _math.bitwise(self, other, "right_shift")

    def __rlshift__(self, other):
        return _math.bitwise(other, self, "left_shift")

    def __rrshift__(self, other):
        return _math.bitwise(other, self, "right_shift")

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other, rounding_mode=None):
        """self / other; ``rounding_mode`` 'floor' is ``//``, 'trunc' rounds toward zero (no gradient)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        if rounding_mode != "trunc":
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        floor = self // other
        if floor.dtype.kind == "f":
            quotient = (self / other).array
            return Tensor(get_array_module(quotient).trunc(quotient).astype(floor.dtype, copy=False))
        inexact = (self % other) != 0       # integers: floor and trunc differ where the signs do
        negative = (self < 0) ^ (other < 0)
        return floor + (inexact & negative).to(floor.dtype)

    def neg(self):
        return -self

    def exp(self):
        return _math.exp(self)

    def log(self):
        return _math.log(self)

    def sqrt(self):
        return _math.sqrt(self)

    def abs(self):
        return _math.abs(self)

    def clamp(self, min=None, max=None):
        return _math.clamp(self, min, max)

    clip = clamp

    def maximum(self, other):
        return _math.maximum(self, other)

    def minimum(self, other):
        return _math.minimum(self, other)

    def matmul(self, other):
        return _math.matmul(self, other)

    def relu(self):
        return _act.relu(self)

    def sigmoid(self):
        return _act.sigmoid(self)

    def tanh(self):
        return _act.tanh(self)

    def softmax(self, dim):
        return _act.softmax(self, dim)

    def pow(self, exponent):
        return _math.pow(self, exponent)

    def masked_fill(self, mask, value):
        """``value`` where ``mask`` holds, self elsewhere (self's dtype; differentiable in self)."""
        if mask.dtype != bool_:
            raise RuntimeError(f"masked_fill: expected a bool mask, got {mask.dtype} (shape {tuple(mask.shape)})")
        if isinstance(value, Tensor):
            value = value if value.dtype == self.dtype else _math.cast(value, self.dtype)
        else:
            value = self.dtype.type(value)
        return _math.where(mask, value, self)

    def gather(self, dim, index):
        return _shape.gather(self, dim, index)

    def index_select(self, dim, index):
        return _shape.index_select(self, dim, index)

    def flip(self, dims):
        return _shape.flip(self, dims)

    def roll(self, shifts, dims=None):
        return _shape.roll(self, shifts, dims)

    def narrow(self, dim, start, length):
        return _shape.narrow(self, dim, start, length)

    def unbind(self, dim=0):
        """The slices along ``dim``, that dim removed (differentiable)."""
        d = _shape.normalize_dim(dim, self.ndim, "unbind", self.shape)
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    # ------------------------------------------------------------ tests of values (outside the graph)
    def isnan(self):
        return Tensor(self._xp.isnan(self.array))

    def isinf(self):
        return Tensor(self._xp.isinf(self.array))

    def isfinite(self):
        return Tensor(self._xp.isfinite(self.array))

    def all(self, dim=None, keepdim=False):
        return self._logical("all", dim, keepdim)

    def any(self, dim=None, keepdim=False):
        return self._logical("any", dim, keepdim)

    def _logical(self, name, dim, keepdim):
        """all() / any(): bool, or uint8 for uint8 tensors, as PyTorch's."""
        xp = self._xp
        out = xp.asarray(getattr(xp, name)(self.array, axis=dim, keepdims=keepdim))
        return Tensor(out.astype(np.uint8) if self.dtype == np.uint8 else out)

    def is_floating_point(self):
        return self.dtype.kind == "f"

    def log_softmax(self, dim):
        return _act.log_softmax(self, dim)

    # ------------------------------------------------------------ shape
    def reshape(self, *shape):
        return _shape.reshape(self, _shape_arg(shape))

    def view(self, *shape):
        """The same memory seen with another shape; refused, as by PyTorch, where the layout
        cannot give it without a copy (``x.t().view(-1)``: use reshape, which copies)."""
        out = _shape.reshape(self, _shape_arg(shape))
        if out.array.size and not self._xp.may_share_memory(out.array, self.array):
            raise RuntimeError(f"view size is not compatible with input tensor's size and stride (shape "
                               f"{self.shape} to {out.shape} needs a copy of this layout); use .reshape(...) "
                               "instead")
        return out

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return _shape.reshape(self, other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _shape.flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        return _shape.permute(self, _shape_arg(dims))

    def transpose(self, dim0, dim1):
        return _shape.transpose(self, dim0, dim1)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim}")
        return self if self.ndim < 2 else _shape.transpose(self, 0, 1)

    @property
    def T(self):
        return _shape.permute(self, tuple(reversed(range(self.ndim))))

    def swapaxes(self, axis0, axis1):
        return _shape.transpose(self, axis0, axis1)

    @property
    def mT(self):
        """The last two dims swapped (a batch of matrices transposed), as ``torch.Tensor.mT``."""
        return _shape.transpose(self, -2, -1)

    def squeeze(self, dim=None):
        return _shape.squeeze(self, dim)

    def unsqueeze(self, dim):
        return _shape.unsqueeze(self, dim)

    def expand(self, *sizes):
        return _shape.expand(self, _shape_arg(sizes))

    def expand_as(self, other):
        return _shape.expand(self, other.shape)

    def split(self, split_size_or_sections, dim=0):
        return _shape.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return _shape.chunk(self, chunks, dim)

    def __getitem__(self, index):
        return _shape.getitem(self, index)

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, *, dtype=None):
        return _reduce.sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim=False, *, dtype=None):
        return _reduce.mean(self, dim, keepdim, dtype=dtype)

    def var(self, dim=None, unbiased=True, keepdim=False, correction=None):
        return _reduce.var(self, dim, unbiased, keepdim, correction)

    def std(self, dim=None, unbiased=True, keepdim=False, correction=None):
        return _reduce.std(self, dim, unbiased, keepdim, correction)

    def max(self, dim=None, keepdim=False):
        """Over everything: a 0-d tensor. Over ``dim``: (values, indices), as PyTorch."""
        return _reduce.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return _reduce.min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _reduce.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _reduce.argmin(self, dim, keepdim)

    def logsumexp(self, dim, keepdim=False):
        return _reduce.logsumexp(self, dim, keepdim)

    def prod(self, dim=None, keepdim=False, *, dtype=None):
        return _reduce.prod(self, dim, keepdim, dtype=dtype)

    def cumsum(self, dim, *, dtype=None):
        return _reduce.cumsum(self, dim, dtype=dtype)

    def cumprod(self, dim, *, dtype=None):
        return _reduce.cumprod(self, dim, dtype=dtype)

    def amax(self, dim=(), keepdim=False):
        return _reduce.amax(self, dim, keepdim)

    def amin(self, dim=(), keepdim=False):
        return _reduce.amin(self, dim, keepdim)

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        return _reduce.norm(self, p, dim, keepdim, dtype)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        return _reduce.topk(self, k, dim, largest, sorted)

    def sort(self, dim=-1, descending=False, *, stable=False):
        return _reduce.sort(self, dim, descending, stable=stable)

    def argsort(self, dim=-1, descending=False, stable=False):
        return _reduce.argsort(self, dim, descending, stable)

    def median(self, dim=None, keepdim=False):
        return _reduce.median(self, dim, keepdim)

    def kthvalue(self, k, dim=-1, keepdim=False):
        return _reduce.kthvalue(self, k, dim, keepdim)

    # ------------------------------------------------------------ elementwise functions
    def floor(self):
        return _math.floor(self)

    def ceil(self):
        return _math.ceil(self)

    def round(self, decimals=0):
        return _math.round(self, decimals=decimals)

    def trunc(self):
        return _math.trunc(self)

    def sign(self):
        return _math.sign(self)

    def sin(self):
        return _math.sin(self)

    def cos(self):
        return _math.cos(self)

    def log1p(self):
        return _math.log1p(self)

    def expm1(self):
        return _math.expm1(self)

    def log2(self):
        return _math.log2(self)

    def log10(self):
        return _math.log10(self)

    def square(self):
        return _math.square(self)

    def rsqrt(self):
        return _math.rsqrt(self)

    def reciprocal(self):
        return _math.reciprocal(self)

    def clamp_min(self, min):
        return _math.clamp_min(self, min)

    def clamp_max(self, max):
        return _math.clamp_max(self, max)

    def mm(self, mat2):
        return _math.mm(self, mat2)

    def bmm(self, mat2):
        return _math.bmm(self, mat2)

    def dot(self, other):
        return _math.dot(self, other)

    def mv(self, vec):
        return _math.mv(self, vec)

    def outer(self, vec2):
        return _math.outer(self, vec2)

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _math.allclose(self, other, rtol, atol, equal_nan)

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _math.isclose(self, other, rtol, atol, equal_nan)

    def equal(self, other):
        return _math.equal(self, other)

    def logical_and(self, other):
        return _math.logical_and(self, other)

    def logical_or(self, other):
        return _math.logical_or(self, other)

    def logical_xor(self, other):
        return _math.logical_xor(self, other)

    def logical_not(self):
        return _math.logical_not(self)

    # ------------------------------------------------------------ more shape and indexing
    def repeat(self, *sizes):
        if not sizes:
            raise TypeError("repeat() missing 1 required positional argument: 'repeats'")
        return _shape.repeat(self, _shape_arg(sizes))

    def tile(self, *dims):
        return _shape.tile(self, _shape_arg(dims))

    def movedim(self, source, destination):
        return _shape.movedim(self, source, destination)

    moveaxis = movedim

    def tril(self, diagonal=0):
        return _shape.tril(self, diagonal)

    def triu(self, diagonal=0):
        return _shape.triu(self, diagonal)

    def diagonal(self, offset=0, dim1=0, dim2=1):
        return _shape.diagonal(self, offset, dim1, dim2)

    def nonzero(self, *, as_tuple=False):
        return _shape.nonzero(self, as_tuple=as_tuple)

    def masked_select(self, mask):
        return _shape.masked_select(self, mask)

    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        return _shape.scatter(self, dim, index, src, value=value, reduce=reduce)

    def scatter_add(self, dim, index, src):
        return _shape.scatter_add(self, dim, index, src)

    def index_add(self, dim, index, source, *, alpha=1):
        return _shape.index_add(self, dim, index, source, alpha=alpha)

    def take_along_dim(self, indices, dim=None):
        return _shape.take_along_dim(self, indices, dim)

    # ------------------------------------------------------------ new tensors like this one
    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        """A tensor of zeros of ``size`` with this tensor's dtype and device unless given."""
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return empty(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        """A new leaf holding a copy of ``data``, in this tensor's dtype and device unless given."""
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    # ------------------------------------------------------------ in-place versions of ops
    def _in_place(self, op, fn, *others):
        """self <- fn(self) in self's own array, as PyTorch's ``x.clamp_()``, ``x.exp_()``
        (ops/inplace.py ``apply``: recorded in the graph while it is)."""
        return _inplace.apply(self, fn, op, others, instead=f"write x = x.{op[:-1]}(...)")

    def clamp_(self, min=None, max=None):
        return self._in_place("clamp_", lambda x: _math.clamp(x, min, max), min, max)

    clip_ = clamp_

    def clamp_min_(self, min):
        return self._in_place("clamp_min_", lambda x: _math.clamp(x, min=min), min)

    def clamp_max_(self, max):
        return self._in_place("clamp_max_", lambda x: _math.clamp(x, max=max), max)

    def exp_(self):
        return self._in_place("exp_", _math.exp)

    def log_(self):
        return self._in_place("log_", _math.log)

    def sqrt_(self):
        return self._in_place("sqrt_", _math.sqrt)

    def abs_(self):
        return self._in_place("abs_", _math.abs)

    def neg_(self):
        return self._in_place("neg_", _math.neg)

    def floor_(self):
        return self._in_place("floor_", _math.floor)

    def ceil_(self):
        return self._in_place("ceil_", _math.ceil)

    def round_(self, decimals=0):
        return self._in_place("round_", lambda x: _math.round(x, decimals=decimals))

    def trunc_(self):
        return self._in_place("trunc_", _math.trunc)

    def sign_(self):
        return self._in_place("sign_", _math.sign)

    def sin_(self):
        return self._in_place("sin_", _math.sin)

    def cos_(self):
        return self._in_place("cos_", _math.cos)

    def log1p_(self):
        return self._in_place("log1p_", _math.log1p)

    def expm1_(self):
        return self._in_place("expm1_", _math.expm1)

    def square_(self):
        return self._in_place("square_", _math.square)

    def rsqrt_(self):
        return self._in_place("rsqrt_", _math.rsqrt)

    def reciprocal_(self):
        return self._in_place("reciprocal_", _math.reciprocal)

    def sigmoid_(self):
        return self._in_place("sigmoid_", _act.sigmoid)

    def tanh_(self):
        return self._in_place("tanh_", _act.tanh)

    def tril_(self, diagonal=0):
        return self._in_place("tril_", lambda x: _shape.tril(x, diagonal))

    def triu_(self, diagonal=0):
        return self._in_place("triu_", lambda x: _shape.triu(x, diagonal))

    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        """In place ``scatter``: ``y.scatter_(1, labels[:, None], 1.0)`` makes one-hot rows."""
        return self._in_place("scatter_", lambda x: _shape.scatter(x, dim, index, src, value=value, reduce=reduce),
                              src)

    def scatter_add_(self, dim, index, src):
        return self._in_place("scatter_add_", lambda x: _shape.scatter_add(x, dim, index, src), src)

    def index_add_(self, dim, index, source, *, alpha=1):
        return self._in_place("index_add_", lambda x: _shape.index_add(x, dim, index, source, alpha=alpha), source)

    def masked_fill_(self, mask, value):
        """``value`` written where ``mask`` (broadcast to self's shape) holds: ``self[mask] = value``."""
        if mask.dtype != bool_:
            raise RuntimeError(f"masked_fill_: expected a bool mask, got {mask.dtype} (shape {tuple(mask.shape)})")
        if isinstance(value, Tensor) and value.ndim:
            raise RuntimeError(f"masked_fill_: only supports a 0-dimensional value tensor, got shape "
                               f"{tuple(value.shape)}")
        if mask.shape != self.shape:
            mask = _shape.expand(mask, self.shape)
        _inplace.setitem(self, mask.array, value)
        return self


def _shape_arg(args):
    """Accept both x.reshape(2, 3) and x.reshape((2, 3))."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


# ---------------------------------------------------------------- creation
def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (PyTorch's dtype rules:
    Python floats -> float32, Python ints -> int64, arrays keep their dtype)."""
    dtype = _normalize_dtype(dtype)
    if isinstance(data, Tensor):
        data = data.array
    if backend.is_cupy_array(data) or isinstance(data, np.ndarray):
        arr = data.astype(dtype or data.dtype, copy=True)
    else:
        arr = np.array(data)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            dtype = _default_float   # Python floats become float32 as in PyTorch
        if arr.dtype.kind == "O":
            raise TypeError(f"tensor(): cannot build a tensor from {type(data).__name__} elements")
        arr = arr.astype(dtype or arr.dtype, copy=False)
    if device is not None:
        arr = to_device(arr, device)
    return Tensor(arr, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a Tensor, sharing its memory where it can (a Tensor, a NumPy or CuPy
    array of the dtype and device asked for), as torch.as_tensor; a copy otherwise (of a
    Tensor: ``to``, in the graph)."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if dtype is not None or device is not None else data
    array = data
    if backend.is_cupy_array(array) or isinstance(array, np.ndarray):
        same_dtype = dtype is None or _normalize_dtype(dtype) == array.dtype
        same_device = device is None or parse_device(device) == device_of(array)
        if same_dtype and same_device:
            return Tensor(array)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    return Tensor(array)


def _sizes(size):
    return _shape_arg(size) if size else ()


def _filled(fill, size, dtype, device, requires_grad):
    xp = array_module_for(device or "cpu")
    dtype = _normalize_dtype(dtype) or _default_float
    with _on(device):
        data = fill(xp, _sizes(size), dtype)
    return Tensor(data, requires_grad=requires_grad)


def _on(device):
    """Allocate on the right GPU when device is 'cuda:k'."""
    import contextlib
    dev = parse_device(device or "cpu")
    if dev.type == "cuda":
        return backend.cupy_module().cuda.Device(dev.index or 0)
    return contextlib.nullcontext()


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.zeros(s, dtype=d), size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.ones(s, dtype=d), size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.empty(s, dtype=d), size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, bool):
        dtype = bool_
    elif dtype is None and isinstance(fill_value, numbers.Integral):
        dtype = int64
    return _filled(lambda xp, s, d: xp.full(s, fill_value, dtype=d), (tuple(size),), dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the backend's seeded generator (td.manual_seed)."""
    return _filled(lambda xp, s, d: backend.rng_for(xp).standard_normal(s).astype(d, copy=False),
                   size, dtype, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: backend.rng_for(xp).random(s).astype(d, copy=False),
                   size, dtype, device, requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None):
    """Integers in [low, high), as torch.randint: ``randint(high, size)`` or ``randint(low, high, size)``."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    size = () if size is None else size
    xp = array_module_for(device or "cpu")
    rng = backend.rng_for(xp)
    data = (rng.integers(low, high, size) if xp is np else rng.randint(low, high, size))
    return Tensor(data.astype(_normalize_dtype(dtype) or int64, copy=False))


def randperm(n, device=None):
    xp = array_module_for(device or "cpu")
    return Tensor(backend.rng_for(xp).permutation(n).astype(int64))


def _plain_number(v):
    """A 0-d Tensor or array as its Python number (``td.arange(lengths.max())``)."""
    if isinstance(v, Tensor) or hasattr(v, "ndim"):
        return (v.array if isinstance(v, Tensor) else v).item()
    return v


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """start, start + step, ... up to ``end`` (excluded), as torch.arange: int64 when all three
    are integers, else float32; each value start + i * step computed in float64."""
    start, end, step = (_plain_number(v) for v in (start, end, step))
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: upper bound ({end}) and lower bound ({start}) are inconsistent with the "
                           f"step sign ({step})")
    if dtype is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if is_int else _default_float
    dtype = _normalize_dtype(dtype)
    xp = array_module_for(device or "cpu")
    if np.dtype(dtype).kind in "iub":
        data = xp.arange(start, end, step, dtype=dtype)
    else:       # NumPy steps by step rounded to the dtype: the last float32 values drift by an ulp
        data = (start + xp.arange(math.ceil((end - start) / step), dtype=np.float64) * step).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` values from start to end, both included, as torch.linspace: the first half
    counted up from start, the second half down from end (so both ends are exact)."""
    start, end = _plain_number(start), _plain_number(end)
    dtype = np.dtype(_normalize_dtype(dtype) or _default_float)
    xp = array_module_for(device or "cpu")
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    compute = dtype if dtype.kind in "fc" else np.dtype(np.float64)
    step = compute.type((end - start) / max(steps - 1, 1))
    i = xp.arange(steps, dtype=compute)
    half = steps // 2 if steps > 1 else 1           # (one step: start, as PyTorch)
    data = xp.where(i < half, compute.type(start) + step * i, compute.type(end) - step * (steps - 1 - i))
    return Tensor(data.astype(dtype, copy=False), requires_grad=requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    xp = array_module_for(device or "cpu")
    return Tensor(xp.eye(n, m, dtype=_normalize_dtype(dtype) or _default_float), requires_grad=requires_grad)


def _like(fn, t, dtype, device, requires_grad, **kw):
    return fn(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad, **kw)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _like(empty, t, dtype, device, requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    return _like(randn, t, dtype, device, requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    return _like(rand, t, dtype, device, requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


# The ops import Tensor from this module, so they are imported after it exists.
from .ops import math as _math, shape as _shape, reduce as _reduce, activation as _act, inplace as _inplace  # noqa: E402,E501
