"""The differentiable ops, one family per module: forward and backward side by side."""
