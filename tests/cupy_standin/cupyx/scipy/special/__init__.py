from cupy import CannotRunHere


def __getattr__(name):
    raise CannotRunHere(f"cupyx.scipy.special.{name}")
