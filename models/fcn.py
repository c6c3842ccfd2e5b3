"""(being written)"""
from . import register  # noqa: F401
