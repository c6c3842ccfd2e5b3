"""cupyx for the NumPy stand-in for CuPy: everything in it needs a real GPU."""
