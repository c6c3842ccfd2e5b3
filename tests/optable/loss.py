"""Op table rows: losses. Integer class targets are int64 arrays (never differentiable);
float targets get gradients where PyTorch gives them (mse, l1, smooth_l1, huber, bce, kl,
cross_entropy with class probabilities). Class weights and BCE weights are not
differentiable in PyTorch, so their rows list ``grad`` explicitly."""
import numpy as np
import torch.nn.functional as TF

import tinydl.ops.loss as L
from optable import OpCase


def classification(shape, n_classes, ignore=0, ignore_index=-100, weight=False, scale=1.0, shift=0.0,
                   probabilities=False):
    """Logits of ``shape`` (classes on dim 1, or dim 0 if 1-d), integer targets (``ignore`` of
    them set to ``ignore_index``) or class probabilities, and optionally a (C,) weight."""
    def make(rng):
        x = rng.standard_normal(shape) * scale + shift
        if probabilities:
            t = rng.uniform(0.1, 1.0, shape)
            t = t / t.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
        else:
            t_shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
            t = rng.integers(0, n_classes, t_shape).astype(np.int64)
            if ignore:
                flat = t.reshape(-1)
                flat[rng.choice(flat.size, ignore, replace=False)] = ignore_index
        out = [x, t]
        if weight:
            out.append(rng.uniform(0.2, 2.0, n_classes))
        return out
    return make


def regression(shape, target_shape=None, weight=False, scale=1.0):
    def make(rng):
        out = [rng.standard_normal(shape) * scale, rng.standard_normal(target_shape or shape) * scale]
        if weight:
            out.append(rng.uniform(0.2, 2.0, shape))
        return out
    return make


def probabilities(shape, weight_shape=None, extremes=False):
    """BCE inputs: probabilities in (0.05, 0.95) (or with exact 0 and 1), soft targets in [0, 1]."""
    def make(rng):
        x = rng.uniform(0.05, 0.95, shape)
        if extremes:
            x.reshape(-1)[:2] = [0.0, 1.0]
        out = [x, rng.uniform(0, 1, shape)]
        if weight_shape:
            out.append(rng.uniform(0.2, 2.0, weight_shape))
        return out
    return make


def logits_targets(shape, scale=2.0, weight_shape=None, pos_weight_shape=None):
    def make(rng):
        out = [rng.standard_normal(shape) * scale, rng.uniform(0, 1, shape)]
        if weight_shape:
            out.append(rng.uniform(0.2, 2.0, weight_shape))
        if pos_weight_shape:
            out.append(rng.uniform(0.5, 3.0, pos_weight_shape))
        return out
    return make


def kl_inputs(shape, log_target=False):
    def make(rng):
        q = rng.uniform(0.1, 1, shape)
        p = rng.uniform(0.1, 1, shape)
        q, p = q / q.sum(-1, keepdims=True), p / p.sum(-1, keepdims=True)
        return [np.log(q), np.log(p) if log_target else p]
    return make


def ce(**kw):
    """(tinydl, torch) cross_entropy with the same keyword arguments; weight is the 3rd input."""
    return (lambda x, t, w=None: L.cross_entropy(x, t, weight=w, **kw),
            lambda x, t, w=None: TF.cross_entropy(x, t, weight=w, **kw))


def nll(**kw):
    return (lambda x, t, w=None: L.nll_loss(x, t, weight=w, **kw),
            lambda x, t, w=None: TF.nll_loss(x, t, weight=w, **kw))


def pair(name, **kw):
    """(tinydl, torch) for a loss f(input, target, **kw) with the same name in both."""
    return (lambda *a: getattr(L, name)(*a, **kw), lambda *a: getattr(TF, name)(*a, **kw))


def weighted(name, **kw):
    return (lambda x, t, w: getattr(L, name)(x, t, weight=w, **kw),
            lambda x, t, w: getattr(TF, name)(x, t, weight=w, **kw))


def bce_logits(weight=False, pos_weight=False, **kw):
    def make(lib):
        def f(x, t, *rest):
            rest = list(rest)
            w = rest.pop(0) if weight else None
            pw = rest.pop(0) if pos_weight else None
            return lib.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, **kw)
        return f
    return make(L), make(TF)


NC = (6, 5)
SUPERPOINT = (2, 65, 2, 2)      # SuperPoint's 64 cells + dustbin, on a tiny 2x2 cell grid

CASES = [
    # ------------------------------------------------------------ cross_entropy, class indices
    OpCase("cross_entropy/mean", *ce(), classification(NC, 5)),
    OpCase("cross_entropy/sum", *ce(reduction="sum"), classification(NC, 5)),
    OpCase("cross_entropy/none", *ce(reduction="none"), classification(NC, 5)),
    OpCase("cross_entropy/weight_mean", *ce(), classification(NC, 5, weight=True), grad=[0]),
    OpCase("cross_entropy/weight_sum", *ce(reduction="sum"), classification(NC, 5, weight=True), grad=[0]),
    OpCase("cross_entropy/weight_none", *ce(reduction="none"), classification(NC, 5, weight=True), grad=[0]),
    OpCase("cross_entropy/ignore_default", *ce(), classification(NC, 5, ignore=2)),
    OpCase("cross_entropy/ignore_index2_none", *ce(ignore_index=2, reduction="none"),
           classification(NC, 5, ignore=2, ignore_index=2)),
    OpCase("cross_entropy/ignore_weight_mean", *ce(), classification(NC, 5, ignore=2, weight=True), grad=[0]),
    OpCase("cross_entropy/all_ignored_mean_nan", *ce(), classification((3, 4), 4, ignore=3), gradcheck=False),
    OpCase("cross_entropy/all_ignored_sum", *ce(reduction="sum"), classification((3, 4), 4, ignore=3)),
    OpCase("cross_entropy/all_ignored_weight_mean_nan", *ce(), classification((3, 4), 4, ignore=3, weight=True),
           grad=[0], gradcheck=False),
    OpCase("cross_entropy/smoothing_mean", *ce(label_smoothing=0.1), classification(NC, 5)),
    OpCase("cross_entropy/smoothing_sum", *ce(label_smoothing=0.25, reduction="sum"), classification(NC, 5)),
    OpCase("cross_entropy/smoothing_weight_mean", *ce(label_smoothing=0.1),
           classification(NC, 5, weight=True), grad=[0]),
    OpCase("cross_entropy/smoothing_weight_ignore_mean", *ce(label_smoothing=0.2),
           classification(NC, 5, ignore=2, weight=True), grad=[0]),
    OpCase("cross_entropy/smoothing_weight_ignore_none", *ce(label_smoothing=0.2, reduction="none"),
           classification(NC, 5, ignore=2, weight=True), grad=[0]),
    OpCase("cross_entropy/smoothing_ignore_sum", *ce(label_smoothing=0.3, reduction="sum"),
           classification(NC, 5, ignore=1)),
    OpCase("cross_entropy/smoothing_all_ignored_sum", *ce(label_smoothing=0.1, reduction="sum"),
           classification((3, 4), 4, ignore=3)),
    OpCase("cross_entropy/smoothing_1.0", *ce(label_smoothing=1.0), classification(NC, 5)),
    OpCase("cross_entropy/3d_NCL", *ce(), classification((2, 4, 3), 4)),
    OpCase("cross_entropy/superpoint_65", *ce(), classification(SUPERPOINT, 65)),
    OpCase("cross_entropy/superpoint_65_weight_ignore_smoothing", *ce(label_smoothing=0.05),
           classification(SUPERPOINT, 65, ignore=5, weight=True), grad=[0]),
    OpCase("cross_entropy/superpoint_65_none", *ce(reduction="none"), classification(SUPERPOINT, 65)),
    OpCase("cross_entropy/unbatched", *ce(), classification((7,), 7)),
    OpCase("cross_entropy/unbatched_none_weight_smoothing", *ce(reduction="none", label_smoothing=0.1),
           classification((7,), 7, weight=True), grad=[0]),
    OpCase("cross_entropy/logits_1e3", *ce(), classification(NC, 5, scale=1e3)),
    OpCase("cross_entropy/logits_shift_1e3_smoothing", *ce(label_smoothing=0.1),
           classification(NC, 5, shift=1e3)),
    OpCase("cross_entropy/legacy_size_average_false", *ce(size_average=False), classification(NC, 5)),
    # ------------------------------------------------------------ cross_entropy, class probabilities
    OpCase("cross_entropy/probs_mean", *ce(), classification(NC, 5, probabilities=True)),
    OpCase("cross_entropy/probs_none", *ce(reduction="none"), classification(NC, 5, probabilities=True)),
    OpCase("cross_entropy/probs_weight_sum", *ce(reduction="sum"),
           classification(NC, 5, probabilities=True, weight=True), grad=[0, 1]),
    OpCase("cross_entropy/probs_weight_smoothing_mean", *ce(label_smoothing=0.2),
           classification(NC, 5, probabilities=True, weight=True), grad=[0, 1]),
    OpCase("cross_entropy/probs_nchw", *ce(), classification((2, 4, 3, 2), 4, probabilities=True)),
    OpCase("cross_entropy/probs_unbatched", *ce(), classification((5,), 5, probabilities=True)),
    OpCase("cross_entropy/probs_logits_1e3", *ce(), classification(NC, 5, probabilities=True, scale=1e3)),
    # ------------------------------------------------------------ nll_loss
    OpCase("nll_loss/mean", *nll(), classification(NC, 5)),
    OpCase("nll_loss/sum", *nll(reduction="sum"), classification(NC, 5)),
    OpCase("nll_loss/none_ignore", *nll(reduction="none"), classification(NC, 5, ignore=2)),
    OpCase("nll_loss/weight_ignore_mean", *nll(), classification(NC, 5, ignore=2, weight=True), grad=[0]),
    OpCase("nll_loss/ignore_index0", *nll(ignore_index=0), classification(NC, 5, ignore=2, ignore_index=0)),
    OpCase("nll_loss/all_ignored_mean_nan", *nll(), classification((3, 4), 4, ignore=3), gradcheck=False),
    OpCase("nll_loss/superpoint_65_weight", *nll(), classification(SUPERPOINT, 65, weight=True), grad=[0]),
    OpCase("nll_loss/unbatched", *nll(), classification((6,), 6)),
    # ------------------------------------------------------------ regression
    OpCase("mse_loss/mean", *pair("mse_loss"), regression((3, 4))),
    OpCase("mse_loss/sum", *pair("mse_loss", reduction="sum"), regression((3, 4))),
    OpCase("mse_loss/none", *pair("mse_loss", reduction="none"), regression((2, 3, 4))),
    OpCase("mse_loss/weight_mean", *weighted("mse_loss"), regression((3, 4), weight=True)),
    OpCase("mse_loss/weight_none", *weighted("mse_loss", reduction="none"), regression((3, 4), weight=True)),
    OpCase("mse_loss/legacy_reduce_false", *pair("mse_loss", reduce=False), regression((3, 4))),
    OpCase("l1_loss/mean", *pair("l1_loss"), regression((3, 4))),
    OpCase("l1_loss/sum", *pair("l1_loss", reduction="sum"), regression((3, 4))),
    OpCase("l1_loss/none", *pair("l1_loss", reduction="none"), regression((3, 4))),
    OpCase("l1_loss/weight_mean", *weighted("l1_loss"), regression((3, 4), weight=True)),
    OpCase("l1_loss/weight_sum", *weighted("l1_loss", reduction="sum"), regression((3, 4), weight=True)),
    OpCase("smooth_l1_loss/mean", *pair("smooth_l1_loss"), regression((4, 5))),
    OpCase("smooth_l1_loss/beta0.5_sum", *pair("smooth_l1_loss", beta=0.5, reduction="sum"), regression((4, 5))),
    OpCase("smooth_l1_loss/beta0_is_l1", *pair("smooth_l1_loss", beta=0.0), regression((4, 5))),
    OpCase("smooth_l1_loss/none_boxes", *pair("smooth_l1_loss", reduction="none", beta=1 / 9),
           regression((6, 4), scale=0.5)),
    OpCase("huber_loss/mean", *pair("huber_loss"), regression((4, 5), scale=1.5)),
    OpCase("huber_loss/delta2_none", *pair("huber_loss", delta=2.0, reduction="none"), regression((4, 5), scale=2)),
    OpCase("huber_loss/weight_mean", *weighted("huber_loss", delta=0.5), regression((4, 5), weight=True)),
    # ------------------------------------------------------------ binary cross-entropy
    OpCase("binary_cross_entropy/mean", *pair("binary_cross_entropy"), probabilities((4, 5))),
    OpCase("binary_cross_entropy/sum", *pair("binary_cross_entropy", reduction="sum"), probabilities((4, 5))),
    OpCase("binary_cross_entropy/none", *pair("binary_cross_entropy", reduction="none"), probabilities((4, 5))),
    OpCase("binary_cross_entropy/weight_broadcast", *weighted("binary_cross_entropy"),
           probabilities((4, 5), weight_shape=(5,)), grad=[0, 1]),
    OpCase("binary_cross_entropy/clamped_log_at_0_and_1", *pair("binary_cross_entropy", reduction="none"),
           probabilities((3, 4), extremes=True), grad=[0], gradcheck=False, rtol=1e-3),
    OpCase("bce_with_logits/mean", *bce_logits(), logits_targets((4, 5))),
    OpCase("bce_with_logits/none", *bce_logits(reduction="none"), logits_targets((4, 5))),
    OpCase("bce_with_logits/large_logits", *bce_logits(reduction="sum"), logits_targets((4, 5), scale=200)),
    OpCase("bce_with_logits/weight", *bce_logits(weight=True), logits_targets((4, 5), weight_shape=(4, 1)),
           grad=[0, 1]),
    OpCase("bce_with_logits/pos_weight", *bce_logits(pos_weight=True, reduction="sum"),
           logits_targets((4, 5), pos_weight_shape=(5,)), grad=[0, 1]),
    OpCase("bce_with_logits/weight_pos_weight_none", *bce_logits(weight=True, pos_weight=True, reduction="none"),
           logits_targets((2, 3, 5), weight_shape=(3, 5), pos_weight_shape=(5,)), grad=[0, 1]),
    # ------------------------------------------------------------ kl_div
    OpCase("kl_div/batchmean", *pair("kl_div", reduction="batchmean"), kl_inputs((4, 5))),
    OpCase("kl_div/sum", *pair("kl_div", reduction="sum"), kl_inputs((4, 5))),
    OpCase("kl_div/none", *pair("kl_div", reduction="none"), kl_inputs((4, 5))),
    OpCase("kl_div/log_target_batchmean", *pair("kl_div", reduction="batchmean", log_target=True),
           kl_inputs((4, 5), log_target=True)),
]
