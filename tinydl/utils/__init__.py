"""Tools around the engine: gradient checking, save/load, model summary, graph export."""
from .gradcheck import gradcheck, GradcheckError
from .summary import summary, Summary
from .graph import to_dot, save_dot

__all__ = ["gradcheck", "GradcheckError", "summary", "Summary", "to_dot", "save_dot"]
