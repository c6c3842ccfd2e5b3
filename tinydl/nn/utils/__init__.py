"""Helpers around a model's parameters and gradients, as ``torch.nn.utils``.

    clip_grad_norm_(model.parameters(), max_norm=1.0)   # between backward() and step()
    vec = parameters_to_vector(model.parameters())      # all weights as one 1-d Tensor
"""
from .clip_grad import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from .convert_parameters import parameters_to_vector, vector_to_parameters

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
           "parameters_to_vector", "vector_to_parameters"]
