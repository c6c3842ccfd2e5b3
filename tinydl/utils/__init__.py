"""Tools around the engine: gradient checking, save/load, model summary."""
from .gradcheck import gradcheck, GradcheckError
