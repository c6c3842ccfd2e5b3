"""``nn.Parameter``: a Tensor that a Module recognises as one of its weights.

A Parameter is an ordinary Tensor with two differences:
  * it requires grad unless told otherwise (weights are what we train);
  * assigning it as an attribute of a Module (``self.weight = Parameter(...)``)
    registers it, so ``module.parameters()`` and ``module.state_dict()`` find it.
"""
from ..tensor import Tensor, empty

__all__ = ["Parameter"]


class Parameter(Tensor):
    """Parameter(data=None, requires_grad=True), as ``torch.nn.Parameter``.

    ``data`` may be a Tensor (the Parameter shares its array, as in PyTorch) or
    an array; a Tensor that is part of a graph gives a new leaf over the same
    array. Only floating-point data can require grad.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = empty(0)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
