"""WGAN-GP on the 8-Gaussians ring: a gradient penalty needs the gradient of a gradient.

The critic D of a Wasserstein GAN should be 1-Lipschitz. WGAN-GP (Gulrajani et al.
2017) asks for it softly: on points x_hat drawn uniformly on segments between real and
generated samples, the penalty

    lambda * mean((|d D(x_hat) / d x_hat|_2 - 1)^2)

is added to the critic's loss E[D(fake)] - E[D(real)]. The penalty contains a gradient,
so minimising it differentiates through that gradient: ``td.autograd.grad(...,
create_graph=True)`` records d D / d x_hat as a computation, and ``loss.backward()``
then reaches the critic's weights through it (second derivatives of D, mixed in x and
the weights).

The script trains a small critic and generator (MLPs) on 2-D points from eight Gaussians
on a ring, and prints the mean gradient norm of the critic on the interpolates (it goes
to 1) and the Wasserstein estimate E[D(real)] - E[D(fake)] as training goes. When torch
is installed it first checks one penalty and its gradient against PyTorch's.

    python examples/gradient_penalty.py                      # 300 steps, ~15 s on a CPU
    python examples/gradient_penalty.py --out runs/wgan_gp   # and a figure (matplotlib)
    python examples/gradient_penalty.py --device cuda
"""
import argparse
import pathlib

import numpy as np

import tinydl as td
import tinydl.nn as nn
from tinydl.backend import to_host

try:                               # the oracle, optional
    import torch
except ImportError:                # pragma: no cover - torch is in the [dev] extra
    torch = None


def eight_gaussians(n, rng, radius=2.0, std=0.02):
    """n points from eight Gaussians on a circle of ``radius`` (float32, (n, 2))."""
    angles = rng.integers(0, 8, n) * (np.pi / 4)
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centres + std * radius * rng.standard_normal((n, 2))).astype(np.float32)


def mlp(n_in, n_out, hidden):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def gradient_penalty(critic, real, fake, alpha):
    """(mean((|grad_x D(x_hat)|_2 - 1)^2), the norms) on x_hat = alpha real + (1 - alpha) fake."""
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    (grad,) = td.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = (grad * grad).sum(1).sqrt()
    return ((norms - 1) ** 2).mean(), norms


def torch_penalty_gradients(critic, real, fake, alpha):
    """The same penalty and its gradients with respect to the critic's weights, in PyTorch."""
    params = [torch.tensor(to_host(p.array), requires_grad=True) for p in critic.parameters()]
    x_hat = torch.tensor(to_host((alpha * real + (1 - alpha) * fake).array), requires_grad=True)
    h = x_hat
    for i, (w, b) in enumerate(zip(params[::2], params[1::2])):
        h = torch.nn.functional.linear(h, w, b)
        h = h.relu() if i < len(params) // 2 - 1 else h
    (grad,) = torch.autograd.grad(h.sum(), x_hat, create_graph=True)
    penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
    penalty.backward()
    # the last bias moves D, not its slope: no gradient reaches it (None), i.e. zero
    return penalty.item(), [np.zeros(p.shape) if p.grad is None else p.grad.numpy() for p in params]


def compare_with_torch(critic, real, fake, alpha):
    """(|our penalty - PyTorch's|, the largest difference of its weight gradients relative to PyTorch's)."""
    critic.zero_grad()
    penalty, _ = gradient_penalty(critic, real, fake, alpha)
    penalty.backward()
    theirs_value, theirs = torch_penalty_gradients(critic, real, fake, alpha)
    ours = [np.zeros(p.shape) if p.grad is None else to_host(p.grad.array) for p in critic.parameters()]
    critic.zero_grad()
    worst = max(np.abs(a - b).max() for a, b in zip(ours, theirs)) / max(np.abs(b).max() for b in theirs)
    return abs(penalty.item() - theirs_value), worst


def train(steps=300, batch=64, hidden=64, n_critic=5, lam=10.0, lr=2e-4, seed=0, device="cpu",
          log_every=50, log=print):
    """Train; returns (critic, generator, history): one row per ``log_every`` generator steps,
    with the critic's means over those steps (row 0: the untrained critic, on one batch)."""
    td.manual_seed(seed)
    rng = np.random.default_rng(seed)
    critic, generator = mlp(2, 1, hidden).to(device), mlp(2, 2, hidden).to(device)
    opt_d = td.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_g = td.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.9))

    def critic_step(update=True):
        real = td.tensor(eight_gaussians(batch, rng), device=device)
        with td.no_grad():
            fake = generator(td.randn(batch, 2, device=device))
        penalty, norms = gradient_penalty(critic, real, fake, td.rand(batch, 1, device=device))
        wasserstein = critic(real).mean() - critic(fake).mean()
        if update:
            opt_d.zero_grad()
            (-wasserstein + lam * penalty).backward()
            opt_d.step()
        return [norms.mean().item(), penalty.item(), wasserstein.item()]

    def record(step, window):
        norm, penalty, wasserstein = np.mean(window, 0)
        history.append(dict(step=step, grad_norm=norm, penalty=penalty, wasserstein=wasserstein))
        log(f"step {step:4d}  mean |grad D| on interpolates {norm:.3f}  penalty {penalty:.4f}  "
            f"W estimate {wasserstein:.4f}")

    history, window = [], []
    record(0, [critic_step(update=False)])
    for step in range(1, steps + 1):
        window += [critic_step() for _ in range(n_critic)]
        loss_g = -critic(generator(td.randn(batch, 2, device=device))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if step % log_every == 0 or step == steps:
            record(step, window)
            window = []
    return critic, generator, history


def plot(generator, history, out, device, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(seed + 1)
    real = eight_gaussians(1000, rng)
    with td.no_grad():
        fake = to_host(generator(td.randn(1000, 2, device=device)).array)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.scatter(real[:, 0], real[:, 1], s=3, label="real")
    left.scatter(fake[:, 0], fake[:, 1], s=3, label="generated")
    left.set_aspect("equal")
    left.legend()
    steps = [r["step"] for r in history]
    right.plot(steps, [r["grad_norm"] for r in history], label="mean |grad D| on interpolates")
    right.plot(steps, [r["wasserstein"] for r in history], label="Wasserstein estimate")
    right.axhline(1.0, color="grey", lw=0.5)
    right.set_xlabel("generator step")
    right.legend()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "wgan_gp.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="generator steps")
    p.add_argument("--n-critic", type=int, default=5, help="critic steps per generator step")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lam", type=float, default=10.0, help="weight of the gradient penalty")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=None, help="folder for the figure (needs matplotlib)")
    args = p.parse_args(argv)

    result = {}
    if torch is not None:          # one penalty, in float64, against PyTorch's
        td.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        critic = mlp(2, 1, 8).to(args.device).double()
        real, fake = (td.tensor(eight_gaussians(6, rng).astype(np.float64), device=args.device) for _ in range(2))
        alpha = td.rand(6, 1, dtype=td.float64, device=args.device)
        result["penalty_vs_torch"], result["weight_grads_vs_torch"] = compare_with_torch(critic, real, fake, alpha)
        print(f"gradient penalty vs PyTorch: value differs by {result['penalty_vs_torch']:.1e}, its gradients "
              f"with respect to the critic's weights by {result['weight_grads_vs_torch']:.1e} (relative)")

    critic, generator, history = train(args.steps, args.batch, args.hidden, args.n_critic, args.lam, args.lr,
                                       args.seed, args.device, args.log_every)
    result["history"] = history
    if args.out is not None:
        print(f"figure: {plot(generator, history, args.out, args.device, args.seed)}")
    return result


if __name__ == "__main__":
    main()
