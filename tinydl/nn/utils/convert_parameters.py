"""All parameters as one flat vector, and back (``torch.nn.utils.parameters_to_vector``).

Useful for second-order methods, weight averaging or line searches that treat the
model's weights as a single point in R^n.
"""
from ...tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _check_same_device(parameters, fn):
    devices = {str(p.device) for p in parameters}
    if len(devices) > 1:
        raise TypeError(f"{fn}: found parameters on different devices {sorted(devices)}; "
                        "this is not supported")


def parameters_to_vector(parameters):
    """The parameters flattened and joined: a 1-d Tensor of sum(p.numel()) entries.

    Built with ``cat`` of the reshaped parameters, so it is part of the graph (a loss of
    the vector back-propagates into the parameters). Mixed dtypes promote, as cat does.
    """
    from ... import cat     # (the package's cat: imported late, tinydl imports nn first)
    parameters = list(parameters)
    _check_same_device(parameters, "parameters_to_vector")
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-d ``vec`` into the parameters, in place (returns None).

    Parameter i takes the next p_i.numel() entries, reshaped to its shape and cast to its
    dtype; each parameter's version is bumped (a graph that saved it will refuse to
    backward). Entries of ``vec`` past the last parameter are ignored, as in PyTorch; a
    ``vec`` too short is refused.
    """
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected a Tensor, got {type(vec).__name__}")
    parameters = list(parameters)
    _check_same_device(parameters + [vec], "vector_to_parameters")
    flat = vec.array.reshape(-1)
    start = 0
    for i, p in enumerate(parameters):
        n = p.array.size
        if start + n > flat.size:
            raise ValueError(f"vector_to_parameters: vec has {flat.size} entries, too few for parameter {i} "
                             f"of shape {tuple(p.shape)} (entries {start}..{start + n - 1} needed)")
        p.array[...] = flat[start:start + n].reshape(p.shape)
        p._bump_version()
        start += n
