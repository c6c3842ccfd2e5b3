"""Argument normalisers shared by the ops, the layers, the kernels and the transforms
(one place for ``3 -> (3, 3)``). No tinydl imports: every layer of the engine may use it."""
import numbers

__all__ = ["ntuple", "pair", "single", "plain"]


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def ntuple(value, n, name="argument", op=None):
    """An int, or a sequence of n ints (or of 1, repeated) -> a tuple of n Python ints.
    The error names ``op`` and ``name``: "conv2d: stride must be an int or ..."."""
    if type(value) is tuple and len(value) == n and all([type(v) is int for v in value]):
        return value                                  # already normalised: every op call after the first
    if _is_int(value):
        return (int(value),) * n
    where = f"{op}: " if op else ""
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{where}{name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(_is_int(v) for v in values):
        raise ValueError(f"{where}{name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(int(v) for v in values)


def pair(value, name="argument", op=None):
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``."""
    return ntuple(value, 2, name, op)


def single(value, name="argument", op=None):
    """``3 -> 3``; ``(3,) -> 3``."""
    return ntuple(value, 1, name, op)[0]


def plain(*values):
    """Is every value an int, a str or a tuple of ints, of exactly those types? Such arguments
    can key a cache of checked calls: 2 and 2.0 (or True and 1) are equal keys, but only the
    int is a valid stride."""
    for v in values:
        if type(v) is tuple:
            for e in v:
                if type(e) is not int:
                    return False
        elif type(v) is not int and type(v) is not str:
            return False
    return True
