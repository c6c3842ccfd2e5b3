"""Tools around the engine: gradient checking, save/load, model summary, graph export and tracing,
and ZFNet's occlusion and invariance probes of a trained net."""
from .gradcheck import gradcheck, GradcheckError, gradcheck_module, ModuleGradcheck
from .summary import summary, Summary
from .graph import to_dot, save_dot, draw_graph
from .trace import trace_backward
from .sensitivity import occlusion_sensitivity, invariance_curve

__all__ = ["gradcheck", "GradcheckError", "gradcheck_module", "ModuleGradcheck", "summary", "Summary",
           "to_dot", "save_dot", "draw_graph", "trace_backward", "occlusion_sensitivity", "invariance_curve"]
