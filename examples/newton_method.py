"""Newton's method with a Hessian from double backward, against gradient descent.

L2-regularised logistic regression on a small synthetic data set,

    L(w) = mean_i log(1 + exp(-y_i x_i . w)) + lambda/2 |w|^2,      y_i in {-1, +1},

is smooth and strictly convex. Gradient descent with the safe step 1/L_max (L_max bounds
the Hessian's largest eigenvalue) needs hundreds of steps on it, the more the worse the
features are scaled; Newton's step w <- w - H^-1 g, with H the Hessian that autograd
gives by differentiating the gradient (``create_graph=True``), needs a handful: near the
minimum the number of correct digits doubles at every step.

Two ways to get the step:
  --solver direct   the full Hessian, one double backward per column, then a linear solve;
  --solver cg       never forms H: conjugate gradients on H p = g, each product H p one
                    Hessian-vector product (the way to go with many parameters).

The Hessian is checked against its closed form X^T diag(s (1 - s)) X / n + lambda I,
and the minimum against PyTorch's L-BFGS (when torch is installed).

    python examples/newton_method.py                    # ~2 s on a CPU
    python examples/newton_method.py --solver cg --device cuda
"""
import argparse
import pathlib
import sys

import numpy as np

# the sibling example holds hvp() and hessian()
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from hessian_vector_product import hessian, hvp  # noqa: E402

import tinydl as td  # noqa: E402
import tinydl.nn.functional as F  # noqa: E402
from tinydl.backend import get_array_module, to_host  # noqa: E402

try:                               # the oracle, optional
    import torch
except ImportError:                # pragma: no cover - torch is in the [dev] extra
    torch = None


def make_data(n, d, seed, scale=3.0):
    """(X (n, d+1) with a column of ones, y in {-1, 1}); features scaled 1..scale apart."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.linspace(1.0, scale, d)
    true_w = rng.standard_normal(d)
    logits = x @ true_w / scale + 0.5
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logits)), 1.0, -1.0)
    return np.hstack([x, np.ones((n, 1))]), y


def logistic_loss(w, x, y, lam):
    """mean log(1 + exp(-y x.w)) + lambda/2 |w|^2."""
    margins = (x @ w) * y
    return F.softplus(-margins).mean() + 0.5 * lam * (w * w).sum()


def closed_form_hessian(w, x, y, lam):
    """X^T diag(s (1 - s)) X / n + lambda I, s = sigmoid(x . w) (NumPy)."""
    s = 1 / (1 + np.exp(-(x @ w)))
    return (x.T * (s * (1 - s))) @ x / len(x) + lam * np.eye(len(w))


def conjugate_gradient(matvec, b, tol=1e-12, max_iter=None):
    """Solve A p = b for a symmetric positive definite A given only p -> A p (Tensors)."""
    p = td.zeros_like(b)
    r, d = b.clone(), b.clone()
    rr = (r * r).sum().item()
    for _ in range(max_iter or 2 * b.numel()):
        if rr ** 0.5 < tol:
            break
        ad = matvec(d)
        step = rr / (d * ad).sum().item()
        p, r = p + step * d, r - step * ad
        rr, rr_old = (r * r).sum().item(), rr
        d = r + (rr / rr_old) * d
    return p


def newton(x, y, lam, w0, solver="direct", tol=1e-10, max_iter=50, log=print):
    """Newton's method from ``w0``; returns (w, iterations, loss, gradient norm, first Hessian)."""
    w = w0.clone().requires_grad_(True)
    (g,) = td.autograd.grad(logistic_loss(w, x, y, lam), w)
    first_hessian = None
    for it in range(1, max_iter + 1):
        def loss_fn(w=w):
            return logistic_loss(w, x, y, lam)
        if solver == "direct":
            h = hessian(loss_fn, w)
            first_hessian = h if first_hessian is None else first_hessian
            xp = get_array_module(h.array)
            step = td.tensor(xp.linalg.solve(h.array, g.array))
        else:
            step = conjugate_gradient(lambda v: hvp(loss_fn, [w], [v])[0], g)
        w = (w.detach() - step).requires_grad_(True)
        loss = logistic_loss(w, x, y, lam)
        (g,) = td.autograd.grad(loss, w)              # the next iteration's gradient too
        g_norm = float(np.linalg.norm(to_host(g.array)))
        log(f"  newton {it:2d}: loss {loss.item():.15f}  |grad| {g_norm:.2e}")
        if g_norm < tol:
            break
    return w.detach(), it, loss.item(), g_norm, first_hessian


def gradient_descent(x, y, lam, w0, lr, tol=1e-10, max_iter=100_000):
    """Plain gradient descent with a fixed step; returns (w, iterations, loss, gradient norm)."""
    w = w0.clone().requires_grad_(True)
    for it in range(1, max_iter + 1):
        (g,) = td.autograd.grad(logistic_loss(w, x, y, lam), w)
        g_norm = float(np.linalg.norm(to_host(g.array)))
        if g_norm < tol:
            return w.detach(), it - 1, logistic_loss(w, x, y, lam).item(), g_norm
        w = (w.detach() - lr * g).requires_grad_(True)
    return w.detach(), max_iter, logistic_loss(w, x, y, lam).item(), g_norm


def torch_minimum(x, y, lam):
    """The minimum by PyTorch's L-BFGS with a strong-Wolfe line search."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=500, tolerance_grad=1e-13, tolerance_change=0,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(xt @ w) * yt).mean() + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach().numpy(), closure().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="data points")
    p.add_argument("--d", type=int, default=4, help="features (plus a bias)")
    p.add_argument("--lam", type=float, default=1e-2, help="L2 weight")
    p.add_argument("--solver", choices=("direct", "cg"), default="direct")
    p.add_argument("--tol", type=float, default=1e-10, help="stop when |grad| is below")
    p.add_argument("--max-gd", type=int, default=100_000, help="gradient descent's iteration cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)

    x_host, y_host = make_data(args.n, args.d, args.seed)
    x, y = td.tensor(x_host, device=args.device), td.tensor(y_host, device=args.device)
    w0 = td.zeros(x_host.shape[1], dtype=td.float64, device=args.device)
    print(f"logistic regression, {args.n} points, {args.d} features + bias, lambda {args.lam:g}")

    w_newton, it_newton, loss_newton, g_newton, h0 = newton(x, y, args.lam, w0, args.solver, args.tol)
    result = dict(newton_iterations=it_newton, newton_loss=loss_newton, newton_grad_norm=g_newton,
                  w_newton=to_host(w_newton.array))
    print(f"Newton ({args.solver}): {it_newton} iterations, loss {loss_newton:.15f}, |grad| {g_newton:.1e}")
    if h0 is not None:
        result["hessian_vs_closed_form"] = np.abs(to_host(h0.array) - closed_form_hessian(
            to_host(w0.array), x_host, y_host, args.lam)).max()
        print(f"  its first Hessian vs the closed form X^T diag(s(1-s)) X / n + lambda I: "
              f"max difference {result['hessian_vs_closed_form']:.1e}")

    # the step 1/L_max: the Hessian's eigenvalues are at most |X|_2^2 / 4n + lambda
    lr = 1 / (np.linalg.norm(x_host, 2) ** 2 / (4 * args.n) + args.lam)
    w_gd, it_gd, loss_gd, g_gd = gradient_descent(x, y, args.lam, w0, lr, args.tol, args.max_gd)
    result.update(gd_iterations=it_gd, gd_loss=loss_gd, gd_grad_norm=g_gd, w_gd=to_host(w_gd.array))
    print(f"gradient descent (step {lr:.3f}): {it_gd} iterations, loss {loss_gd:.15f}, |grad| {g_gd:.1e}")

    if torch is not None:
        w_torch, loss_torch = torch_minimum(x_host, y_host, args.lam)
        result.update(w_torch=w_torch, torch_loss=loss_torch,
                      newton_vs_torch=np.abs(result["w_newton"] - w_torch).max())
        print(f"PyTorch's L-BFGS: loss {loss_torch:.15f}; |w_newton - w_torch|_max {result['newton_vs_torch']:.1e}")
    return result


if __name__ == "__main__":
    main()
