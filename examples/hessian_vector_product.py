"""Hessian-vector products by double backward, and a full Hessian column by column.

The gradient g(theta) = dL/dtheta of a loss is, with ``create_graph=True``, a recorded
computation like any other, so it can be differentiated again. For a fixed vector v,

    H v = d/dtheta <g(theta), v>

is one more backward pass: no n x n matrix is ever formed, and it costs about two
gradients (Pearlmutter's trick). This script takes the loss of a small network (conv,
tanh, linear, relu, cross entropy) on a random batch, in float64, and checks its H v

  * against central finite differences of the gradient, (g(theta + eps v) - g(theta - eps v)) / 2 eps;
  * against PyTorch's double backward on the same weights (when torch is installed).

Then the full Hessian of the Rosenbrock function in a few dimensions, built one column
at a time (column i is H e_i), against its closed form (and torch.autograd.functional.hessian).

    python examples/hessian_vector_product.py                  # ~1 s on a CPU
    python examples/hessian_vector_product.py --device cuda
"""
import argparse

import numpy as np

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.backend import to_host

try:                               # the oracle, optional
    import torch
except ImportError:                # pragma: no cover - torch is in the [dev] extra
    torch = None


def hvp(loss_fn, params, vector):
    """H v of the scalar ``loss_fn()`` with respect to ``params`` (a list of Tensors),
    ``vector`` a list of Tensors of the same shapes: the gradient of <grad L, v>."""
    grads = td.autograd.grad(loss_fn(), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector))
    return [h.detach() for h in td.autograd.grad(dot, params)]


def hessian(fn, x):
    """The full Hessian of the scalar ``fn(x)`` for a 1-D Tensor ``x``, one column per
    double backward: column i is H e_i. The gradient's graph is built once and kept."""
    (g,) = td.autograd.grad(fn(x), x, create_graph=True)
    n = x.shape[0]
    eye = td.eye(n, dtype=x.dtype, device=x.device)
    columns = [td.autograd.grad(g, x, grad_outputs=eye[i], retain_graph=True)[0].detach() for i in range(n)]
    return td.stack(columns, 1)


def gradients(loss_fn, params):
    return [g.detach() for g in td.autograd.grad(loss_fn(), params)]


def finite_difference_hvp(loss_fn, params, vector, eps=1e-5):
    """(g(theta + eps v) - g(theta - eps v)) / 2 eps, moving the parameters in place."""
    originals = [p.array.copy() for p in params]
    sides = []
    for sign in (1, -1):
        with td.no_grad():
            for p, base, v in zip(params, originals, vector):
                p.array[...] = base + sign * eps * v.array
        sides.append(gradients(loss_fn, params))
    with td.no_grad():
        for p, base in zip(params, originals):
            p.array[...] = base
    return [(plus - minus) / (2 * eps) for plus, minus in zip(*sides)]


def build_model(channels=4, hidden=16, classes=3, size=6):
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(channels * size * size, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def rosenbrock(x):
    """sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2."""
    head, tail = x[:-1], x[1:]
    return (100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2).sum()


def rosenbrock_hessian(x):
    """The closed form, x a NumPy vector."""
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 2 - 400 * (x[i + 1] - x[i] ** 2) + 800 * x[i] ** 2
        h[i, i + 1] += -400 * x[i]
        h[i + 1, i] += -400 * x[i]
        h[i + 1, i + 1] += 200
    return h


def torch_network_hvp(model, images, labels, vector):
    """The same H v with PyTorch's double backward, on the same weights."""
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, model[0].out_channels, 3, padding=1), torch.nn.Tanh(),
                             torch.nn.Flatten(), torch.nn.Linear(model[3].in_features, model[3].out_features),
                             torch.nn.ReLU(), torch.nn.Linear(model[5].in_features, model[5].out_features)).double()
    with torch.no_grad():
        for theirs, ours in zip(tm.parameters(), model.parameters()):
            theirs.copy_(torch.from_numpy(to_host(ours.array)))
    params = list(tm.parameters())
    loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(to_host(images.array))),
                                             torch.from_numpy(to_host(labels.array)).long())
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * torch.from_numpy(to_host(v.array))).sum() for g, v in zip(grads, vector))
    return [h.numpy() for h in torch.autograd.grad(dot, params)]


def relative_error(ours, theirs):
    """max |a - b| / max |b| over all the parameter tensors."""
    diff = max(np.abs(to_host(a) - b).max() for a, b in zip(ours, theirs))
    return diff / max(np.abs(b).max() for b in theirs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=6, help="images are size x size")
    p.add_argument("--dims", type=int, default=4, help="dimensions of the Rosenbrock function")
    p.add_argument("--eps", type=float, default=1e-5, help="finite-difference step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)

    td.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    classes = 3
    model = build_model(size=args.size, classes=classes).to(args.device).double()
    images = td.tensor(rng.standard_normal((args.batch, 1, args.size, args.size)), device=args.device)
    labels = td.tensor(rng.integers(0, classes, args.batch), device=args.device)
    params = list(model.parameters())
    vector = [td.tensor(rng.standard_normal(q.shape), device=args.device) for q in params]

    def loss_fn():
        return F.cross_entropy(model(images), labels)

    result = {}
    hv = [h.array for h in hvp(loss_fn, params, vector)]
    fd = [to_host(h.array) for h in finite_difference_hvp(loss_fn, params, vector, args.eps)]
    result["hvp_vs_finite_differences"] = relative_error(hv, fd)
    print(f"H v of the network's loss ({sum(q.numel() for q in params)} parameters): "
          f"|H v| = {np.sqrt(sum((to_host(h) ** 2).sum() for h in hv)):.6f}")
    print(f"  vs finite differences of the gradient (eps {args.eps:g}): relative error "
          f"{result['hvp_vs_finite_differences']:.2e}")
    if torch is not None:
        result["hvp_vs_torch"] = relative_error(hv, torch_network_hvp(model, images, labels, vector))
        print(f"  vs PyTorch's double backward: relative error {result['hvp_vs_torch']:.2e}")

    x0 = rng.uniform(-1.5, 1.5, args.dims)
    x = td.tensor(x0, requires_grad=True, device=args.device)
    h = to_host(hessian(rosenbrock, x).array)
    result["hessian"] = h
    result["hessian_vs_closed_form"] = np.abs(h - rosenbrock_hessian(x0)).max() / np.abs(h).max()
    print(f"Hessian of the {args.dims}-D Rosenbrock function at {np.round(x0, 3)}, column by column:")
    print(np.array2string(h, precision=3, suppress_small=True))
    print(f"  vs the closed form: relative error {result['hessian_vs_closed_form']:.2e}")
    if torch is not None:
        theirs = torch.autograd.functional.hessian(rosenbrock, torch.tensor(x0)).numpy()
        result["hessian_vs_torch"] = np.abs(h - theirs).max() / np.abs(theirs).max()
        print(f"  vs torch.autograd.functional.hessian: relative error {result['hessian_vs_torch']:.2e}")
    return result


if __name__ == "__main__":
    main()
