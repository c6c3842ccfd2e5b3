"""L-BFGS: a quasi-Newton method that builds its curvature model from the last few steps."""
import math

from .. import backend
from ..autograd import enable_grad
from ..tensor import Tensor
from .optimizer import Optimizer, _cast_state_value, _is_array

__all__ = ["LBFGS"]


class LBFGS(Optimizer):
    r"""Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, ch. 7) as PyTorch
    computes it (``torch.optim.LBFGS``). ``step(closure)`` runs up to ``max_iter`` iterations.

    All parameters are seen as one flat vector x, with gradient g (the parameters'
    ``.grad`` flattened and concatenated; zeros for a parameter without one). An
    iteration::

        y = g - g_prev;  s = t_prev * d_prev                  (what the last step did)
        if y.s > 1e-10: remember (s, y), dropping the oldest beyond history_size;
                        H0 = y.s / y.y                        (scale of the inverse Hessian)
        d = -H g       by the two-loop recursion over the remembered pairs (newest first):
              q = -g;  for i newest..oldest: a_i = (s_i.q) / (y_i.s_i);  q = q - a_i y_i
              r = H0 q;  for i oldest..newest: b_i = (y_i.r) / (y_i.s_i);  r = r + (a_i - b_i) s_i
              d = r    (H: the BFGS inverse Hessian built from H0 I and the pairs)
        t = lr  (the first iteration ever: min(1, 1 / sum|g|) * lr, as there is no curvature yet)
        stop if g.d > -tolerance_change                       (d is no descent direction)
        line_search_fn=None:          x = x + t d, then one closure() for the new loss and g
        line_search_fn='strong_wolfe': t from a line search along d, then x = x + t d

    It stops after max_iter iterations, max_eval closure calls, once max|g| <= tolerance_grad,
    max|t d| <= tolerance_change, or the loss changed by less than tolerance_change.
    The pairs stay in the state, so the next ``step`` goes on with the same curvature model.

    The strong-Wolfe search (N&W Algorithms 3.5 and 3.6) looks for a t with
    ``f(t) <= f(0) + c1 t f'(0)`` (enough decrease) and ``|f'(t)| <= c2 |f'(0)|`` (the slope
    has flattened), c1 = 1e-4, c2 = 0.9, within what is left of max_eval: first it extrapolates
    (a cubic fitted to the last two points, kept within [t + 0.01 (t - t_prev), 10 t]) until
    an interval brackets such a point, then shrinks the interval by the cubic's minimizer
    (moved to 10% of the width inside an end when it falls on or past that end, or within
    10% of one twice running), until the interval is under 1e-9 / max|d| wide (a fixed
    tolerance, not tolerance_change, as in PyTorch). Out of evaluations while extrapolating,
    it keeps the better of t = 0 and its last t: such an iteration may leave x where it was.

    One parameter group only (the curvature couples all parameters). The state lives in
    ``state[first parameter]``, with PyTorch's keys: ``func_evals``, ``n_iter`` (ints over all
    steps), ``d``, ``t``, ``old_dirs`` (the y_i), ``old_stps`` (the s_i), ``ro`` (1 / y_i.s_i),
    ``al`` (the a_i), ``H_diag`` (H0), ``prev_flat_grad``, ``prev_loss``; arrays on the
    parameters' device and of their dtype, scalars as Python numbers (PyTorch: 0-d tensors).
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups): it has one "
                             "group already, and its curvature model couples all parameters")
        super().add_param_group(param_group)

    def _check_group(self, group):
        if not float(group["lr"]) >= 0:
            raise ValueError(f"LBFGS: invalid learning rate lr={group['lr']} (must be >= 0)")
        if not int(group["history_size"]) >= 1:
            raise ValueError(f"LBFGS: invalid history_size={group['history_size']} (must be >= 1)")
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: invalid line_search_fn={group['line_search_fn']!r} "
                             f"(None or 'strong_wolfe')")

    # ------------------------------------------------------------ checkpoints
    def state_dict(self):
        """As Optimizer's, with the history lists copied: the next step appends to and
        drops from its own lists, not the saved ones."""
        sd = super().state_dict()
        for state in sd["state"].values():
            for key, value in state.items():
                if isinstance(value, list):
                    state[key] = list(value)
        return sd

    def load_state_dict(self, state_dict):
        """As Optimizer's; the arrays in the history lists go to the parameters' device and
        dtype too, and 0-d arrays (a checkpoint converted from PyTorch) become Python floats."""
        super().load_state_dict(state_dict)
        for p, state in self.state.items():
            if not isinstance(p, Tensor):
                continue
            for key, value in state.items():
                if isinstance(value, list):
                    state[key] = [_loaded_value(p, key, v) for v in value]
                elif _is_array(value) and value.ndim == 0:
                    state[key] = value.item()

    # ------------------------------------------------------------ the flat vector
    def _params(self):
        return self.param_groups[0]["params"]

    def _flat_grad(self):
        """A new array: every parameter's gradient, flattened and concatenated."""
        params = self._params()
        xp = backend.get_array_module(params[0].array)
        return xp.concatenate([xp.zeros(p.array.size, p.array.dtype) if p.grad is None else
                               p.grad.array.reshape(-1) for p in params])

    def _move(self, t, d):
        """x = x + t * d, d split back into the parameters' shapes."""
        offset = 0
        for p in self._params():
            n = p.array.size
            p.array += t * d[offset:offset + n].reshape(p.array.shape)
            p._bump_version()        # a graph that saved p before the move can no longer backward
            offset += n

    def _evaluate(self, closure):
        with enable_grad():
            return closure()

    def _trial(self, closure, x0, t, d):
        """The loss and gradient at x0 + t d; the parameters are put back at x0."""
        self._move(t, d)
        loss = float(self._evaluate(closure))
        flat_grad = self._flat_grad()
        for p, a in zip(self._params(), x0):
            p.array[...] = a
            p._bump_version()
        return loss, flat_grad

    # ------------------------------------------------------------ the step
    def step(self, closure=None):
        """Run up to ``max_iter`` L-BFGS iterations; return the loss ``closure()`` gave first.

        ``closure`` clears the gradients, computes the loss, calls ``backward()`` and
        returns the loss; it is called under ``enable_grad`` (also inside ``no_grad``).
        """
        if closure is None or not callable(closure):
            raise TypeError(f"LBFGS.step needs a closure (a function that clears the gradients, "
                            f"computes the loss, calls backward() and returns the loss), got {closure!r}")
        group = self.param_groups[0]
        lr, max_iter, max_eval = float(group["lr"]), int(group["max_iter"]), group["max_eval"]
        tolerance_grad, tolerance_change = float(group["tolerance_grad"]), float(group["tolerance_change"])
        history_size = int(group["history_size"])
        xp = backend.get_array_module(self._params()[0].array)

        state = self.state[self._params()[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = self._evaluate(closure)
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if float(xp.abs(flat_grad).max()) <= tolerance_grad:     # already at a stationary point
            self._step_count += 1
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            if state["n_iter"] == 1:              # no curvature known: steepest descent
                d = -flat_grad
                old_dirs, old_stps, ro, h_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(xp.dot(y, s))
                if ys > 1e-10:                    # keep H positive definite: only pairs of positive curvature
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(xp.dot(y, y))
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                # two-loop recursion: d = -H g
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(xp.dot(old_stps[i], q)) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = q * h_diag
                for i in range(len(old_dirs)):
                    be_i = float(xp.dot(old_dirs[i], d)) * ro[i]
                    d += (al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # the first step ever is scaled down by |g|: without curvature, d = -g has g's size
            t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(xp.dot(flat_grad, d))
            if gtd > -tolerance_change:
                break

            ls_evals = 0
            if group["line_search_fn"] == "strong_wolfe":
                x0 = [p.array.copy() for p in self._params()]
                # the search may spend what is left of max_eval
                loss, flat_grad, t, ls_evals = _strong_wolfe(
                    lambda step: self._trial(closure, x0, step, d), d, t, loss, flat_grad, gtd,
                    max_ls=max_eval - evals)
                self._move(t, d)
                opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._move(t, d)
                opt_cond = False
                if n_iter != max_iter:            # the last iteration's loss is not needed
                    loss = float(self._evaluate(closure))
                    flat_grad = self._flat_grad()
                    opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tolerance_change:     # the step no longer moves x
                break
            if abs(loss - prev_loss) < tolerance_change:                   # nor the loss
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        self._step_count += 1
        return orig_loss


def _loaded_value(p, key, value):
    """One entry of a loaded history list: an array on p's device and dtype, a Python number
    for a 0-d array, anything else as it is."""
    if _is_array(value):
        return value.item() if value.ndim == 0 else _cast_state_value(p, key, value)
    return value


def _cubic_minimizer(t1, f1, g1, t2, f2, g2, bounds=None):
    """The minimizer of the cubic through (t1, f1) with slope g1 and (t2, f2) with slope g2
    (N&W eq. 3.59), clipped to ``bounds`` (default: between t1 and t2); the middle of the
    bounds if the cubic has no local minimum."""
    lo, hi = bounds if bounds is not None else (min(t1, t2), max(t1, t2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (lo + hi) / 2
    d2 = math.sqrt(disc)
    if t1 <= t2:
        t = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        t = t1 - (t1 - t2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(t, lo), hi)


def _strong_wolfe(trial, d, t, f0, g0, gtd0, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step t along d meeting the strong Wolfe conditions (N&W Algorithms 3.5 and 3.6).

    ``trial(t)`` returns the loss and flat gradient at x + t d; f0, g0, gtd0 are the
    loss, gradient and slope g0.d at t = 0. At most ``max_ls`` evaluations after the first
    (LBFGS passes what is left of its max_eval). Returns (loss, gradient, t, evaluations)
    at the best point found. A point is (t, f, g, slope).
    """
    xp = backend.get_array_module(d)
    d_norm = float(xp.abs(d).max())
    evals, n = 0, 0

    def at(step):
        nonlocal evals
        f, g = trial(step)
        evals += 1
        return step, f, g, float(xp.dot(g, d))

    def armijo_fails(point):
        return point[1] > f0 + c1 * point[0] * gtd0

    # Algorithm 3.5: grow t until [prev, new] brackets a point that satisfies both conditions
    prev, new = (0.0, f0, g0, gtd0), at(t)
    bracket, done = None, False
    while n < max_ls:
        if armijo_fails(new) or (n > 1 and new[1] >= prev[1]):
            bracket = [prev, new]            # too far: the minimum lies between
            break
        if abs(new[3]) <= -c2 * gtd0:
            bracket, done = [new], True      # both conditions hold
            break
        if new[3] >= 0:
            bracket = [prev, new]            # the slope turned up: a minimum lies between
            break
        # still going down: extrapolate, at least a little past t, at most 10 t
        step = _cubic_minimizer(prev[0], prev[1], prev[3], new[0], new[1], new[3],
                                bounds=(new[0] + 0.01 * (new[0] - prev[0]), new[0] * 10))
        prev, new = new, at(step)
        n += 1
    if bracket is None:                      # out of evaluations: the better of t = 0 and the last t
        bracket = [(0.0, f0, g0, gtd0), new]

    # Algorithm 3.6 (zoom): shrink the bracket; low is its end with the lower loss
    low, high = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
    stalled = False
    while not done and n < max_ls:
        if abs(bracket[1][0] - bracket[0][0]) * d_norm < tolerance_change:
            break                            # the bracket no longer moves x
        step = _cubic_minimizer(*bracket[0][:2], bracket[0][3], *bracket[1][:2], bracket[1][3])
        # keep away from the ends: a trial at an end teaches nothing new
        left, right = min(bracket[0][0], bracket[1][0]), max(bracket[0][0], bracket[1][0])
        margin = 0.1 * (right - left)
        if min(right - step, step - left) < margin:
            if stalled or step >= right or step <= left:
                step = right - margin if abs(step - right) < abs(step - left) else left + margin
                stalled = False
            else:
                stalled = True               # near an end once: allowed, but not twice running
        else:
            stalled = False
        new = at(step)
        n += 1
        if armijo_fails(new) or new[1] >= bracket[low][1]:
            bracket[high] = new              # not lower than low: it closes the bracket from high's side
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(new[3]) <= -c2 * gtd0:
                done = True
            elif new[3] * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = bracket[low]     # the slope points away from high: low becomes high
            bracket[low] = new
    t, f, g, _ = bracket[low]
    return f, g, t, evals
