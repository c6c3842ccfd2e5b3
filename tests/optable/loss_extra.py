"""Op table rows: the likelihood and margin losses (poisson_nll, gaussian_nll, soft_margin,
multilabel_soft_margin, margin_ranking, hinge_embedding). Labels +-1 and 0/1 are float
arrays, as PyTorch takes them; rows list ``grad`` where PyTorch does not differentiate the
labels. Inputs keep away from the hinges' kinks."""
import numpy as np
import torch.nn.functional as TF

import tinydl.ops.loss as L
from optable import OpCase

NC = (6, 4)


def signs(rng, shape):
    return np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)


def counts(shape, log_input=True):
    def make(rng):
        x = rng.standard_normal(shape) if log_input else rng.uniform(0.5, 3.0, shape)
        t = rng.uniform(0, 5, shape)
        t[np.abs(t - 1) < 0.05] = 1.5      # off the Stirling term's switch at t = 1
        return [x, t]
    return make


def gaussian(shape, var_shape):
    return lambda rng: [rng.standard_normal(shape), rng.standard_normal(shape), rng.uniform(0.2, 2.0, var_shape)]


def with_signs(shape, scale=1.0):
    return lambda rng: [rng.standard_normal(shape) * scale, signs(rng, shape)]


def multilabel(shape, weight=False):
    def make(rng):
        out = [rng.standard_normal(shape) * 2, (rng.uniform(size=shape) < 0.4).astype(np.float64)]
        if weight:
            out.append(rng.uniform(0.2, 2.0, shape[-1]))
        return out
    return make


def ranking(shape, margin):
    def make(rng):
        x1, x2, y = rng.standard_normal(shape), rng.standard_normal(shape), signs(rng, shape)
        near = np.abs(margin - y * (x1 - x2)) < 1e-2
        x1[near] += 0.1 * y[near]          # off the hinge
        return [x1, x2, y]
    return make


def hinge(shape, margin):
    def make(rng):
        x, y = rng.uniform(-0.5, 2.5, shape), signs(rng, shape)
        x[np.abs(margin - x) < 1e-2] += 0.1
        return [x, y]
    return make


def pair(name, **kw):
    return (lambda *a: getattr(L, name)(*a, **kw), lambda *a: getattr(TF, name)(*a, **kw))


def mlsm(**kw):
    return (lambda x, y, w=None: L.multilabel_soft_margin_loss(x, y, weight=w, **kw),
            lambda x, y, w=None: TF.multilabel_soft_margin_loss(x, y, weight=w, **kw))


CASES = [
    OpCase("poisson_nll/log_input", *pair("poisson_nll_loss"), counts(NC)),
    OpCase("poisson_nll/rates_sum", *pair("poisson_nll_loss", log_input=False, reduction="sum"),
           counts(NC, log_input=False)),
    OpCase("poisson_nll/full_none", *pair("poisson_nll_loss", full=True, reduction="none"), counts(NC)),
    OpCase("gaussian_nll/mean", *pair("gaussian_nll_loss"), gaussian(NC, NC)),
    OpCase("gaussian_nll/full_sum", *pair("gaussian_nll_loss", full=True, reduction="sum"), gaussian(NC, NC)),
    OpCase("gaussian_nll/per_sample_var", *pair("gaussian_nll_loss", reduction="none"), gaussian(NC, (6,))),
    OpCase("gaussian_nll/per_sample_var_col", *pair("gaussian_nll_loss"), gaussian(NC, (6, 1))),
    OpCase("soft_margin/mean", *pair("soft_margin_loss"), with_signs(NC, 3), grad=[0]),
    OpCase("soft_margin/none", *pair("soft_margin_loss", reduction="none"), with_signs((3, 2, 4), 3), grad=[0]),
    OpCase("multilabel_soft_margin/mean", *mlsm(), multilabel(NC)),
    OpCase("multilabel_soft_margin/weight_none", *mlsm(reduction="none"), multilabel(NC, weight=True),
           grad=[0, 1]),
    OpCase("multilabel_soft_margin/1d_sum", *mlsm(reduction="sum"), multilabel((5,))),
    OpCase("margin_ranking/margin0", *pair("margin_ranking_loss"), ranking((8,), 0.0)),
    OpCase("margin_ranking/margin0.5_none", *pair("margin_ranking_loss", margin=0.5, reduction="none"),
           ranking((3, 5), 0.5)),
    OpCase("hinge_embedding/mean", *pair("hinge_embedding_loss"), hinge(NC, 1.0), grad=[0]),
    OpCase("hinge_embedding/margin2_sum", *pair("hinge_embedding_loss", margin=2.0, reduction="sum"),
           hinge(NC, 2.0), grad=[0]),
]
