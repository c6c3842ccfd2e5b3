"""Op table rows: the likelihood, margin and metric losses (poisson_nll, gaussian_nll,
soft_margin, multilabel_soft_margin, margin_ranking, hinge_embedding, cosine_embedding,
triplet_margin, multi_margin) and the distances under them (cosine_similarity,
pairwise_distance). Labels +-1 and 0/1 are float
arrays, as PyTorch takes them; rows list ``grad`` where PyTorch does not differentiate the
labels. Inputs keep away from the hinges' kinks."""
import numpy as np
import torch.nn.functional as TF

import tinydl.ops.distance as Dist
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


def randn_n(shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


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


def pairs(shape, n=2, y=False, margin=None):
    """n float arrays (and +-1 labels per row); with ``margin``, rows whose cosine lies
    within 0.02 of it are labelled +1, where the hinge is not used."""
    def make(rng):
        out = [rng.standard_normal(shape) for _ in range(n)]
        if y:
            labels = signs(rng, shape[:-1])
            if margin is not None:
                a, b = out
                c = (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
                labels = np.where(np.abs(c - margin) < 0.02, 1.0, labels)
            out.append(labels)
        return out
    return make


def triplets(shape, margin, p=2.0, swap=False):
    """Anchor, positive, negative with margin + d(a, p) - d(a, n) off 0 (and the swap
    choice off a tie)."""
    def make(rng):
        while True:
            a, pos, neg = (rng.standard_normal(shape) for _ in range(3))
            dist = lambda u, v: (np.abs(u - v + 1e-6) ** p).sum(-1) ** (1 / p)
            d_neg = np.minimum(dist(a, neg), dist(pos, neg)) if swap else dist(a, neg)
            if (np.abs(margin + dist(a, pos) - d_neg).min() > 0.02
                    and np.abs(dist(a, neg) - dist(pos, neg)).min() > 0.02):
                return [a, pos, neg]
    return make


def scores(shape, margin, weight=False):
    """Scores (N, C) and class indices with every margin - x_y + x_i off 0."""
    def make(rng):
        while True:
            x = rng.standard_normal(shape)
            y = rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
            xy = np.take_along_axis(x.reshape(-1, shape[-1]), y.reshape(-1, 1), 1)
            if np.abs(margin - xy + x.reshape(-1, shape[-1])).min() > 0.02:
                break
        out = [x, y]
        if weight:
            out.append(rng.uniform(0.2, 2.0, shape[-1]))
        return out
    return make


def mm(**kw):
    return (lambda x, y, w=None: L.multi_margin_loss(x, y, weight=w, **kw),
            lambda x, y, w=None: TF.multi_margin_loss(x, y, weight=w, **kw))


def dist(name, **kw):
    return (lambda *a: getattr(Dist, name)(*a, **kw), lambda *a: getattr(TF, name)(*a, **kw))


CASES = [
    OpCase("cosine_similarity/dim1", *dist("cosine_similarity"), pairs((4, 5))),
    OpCase("cosine_similarity/dim-1_broadcast", *dist("cosine_similarity", dim=-1),
           lambda rng: [rng.standard_normal((3, 1, 4)), rng.standard_normal((2, 4))]),
    OpCase("cosine_similarity/dim0_3d", *dist("cosine_similarity", dim=0), pairs((3, 2, 4))),
    OpCase("pairwise_distance/p2", *dist("pairwise_distance"), pairs((4, 5))),
    OpCase("pairwise_distance/p1_keepdim", *dist("pairwise_distance", p=1.0, keepdim=True), pairs((3, 6))),
    OpCase("pairwise_distance/p3_broadcast", *dist("pairwise_distance", p=3.0),
           lambda rng: [rng.standard_normal((4, 3)), rng.standard_normal((3,))]),
    OpCase("cosine_embedding/margin0", *pair("cosine_embedding_loss"), pairs((6, 4), y=True, margin=0.0),
           grad=[0, 1]),
    OpCase("cosine_embedding/margin0.3_none", *pair("cosine_embedding_loss", margin=0.3, reduction="none"),
           pairs((6, 4), y=True, margin=0.3), grad=[0, 1]),
    OpCase("cosine_embedding/1d", *pair("cosine_embedding_loss"),
           lambda rng: [rng.standard_normal(5), rng.standard_normal(5), np.array(1.0)], grad=[0, 1]),
    OpCase("triplet_margin/default", *pair("triplet_margin_loss"), triplets((5, 4), 1.0)),
    OpCase("triplet_margin/p1_swap_sum", *pair("triplet_margin_loss", p=1.0, swap=True, reduction="sum"),
           triplets((6, 3), 1.0, p=1.0, swap=True)),
    OpCase("triplet_margin/margin0.2_none", *pair("triplet_margin_loss", margin=0.2, reduction="none"),
           triplets((5, 4), 0.2)),
    OpCase("multi_margin/default", *mm(), scores((5, 4), 1.0)),
    OpCase("multi_margin/p2_margin0.5_weight", *mm(p=2, margin=0.5), scores((5, 4), 0.5, weight=True), grad=[0]),
    OpCase("multi_margin/1d_none", *mm(reduction="none"), scores((6,), 1.0)),

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


def multilabel_targets(shape):
    """Scores and -1-terminated class lists (repeats and entries after the -1 included),
    with every 1 - x_j + x_i off 0."""
    def make(rng):
        n_classes = shape[-1]
        while True:
            x = rng.standard_normal(shape)
            t = rng.integers(0, n_classes, shape).astype(np.int64)
            flat = t.reshape(-1, n_classes)
            for row in flat:
                row[rng.integers(1, n_classes + 1):] = -1 if rng.uniform() < 0.8 else row[0]
            flat[0, 2:] = [-1] + [1] * (n_classes - 3)        # an entry after the -1 is ignored
            x2 = x.reshape(-1, n_classes)
            if np.abs(1 - x2[:, :, None] + x2[:, None, :]).min() > 0.02:
                return [x, t]
    return make


def triplet_dist(**kw):
    return (lambda a, p, n: L.triplet_margin_with_distance_loss(a, p, n, **kw),
            lambda a, p, n: TF.triplet_margin_with_distance_loss(a, p, n, **kw))


CASES += [
    OpCase("multilabel_margin/mean", *pair("multilabel_margin_loss"), multilabel_targets((4, 5))),
    OpCase("multilabel_margin/none", *pair("multilabel_margin_loss", reduction="none"), multilabel_targets((3, 4))),
    OpCase("multilabel_margin/1d_sum", *pair("multilabel_margin_loss", reduction="sum"), multilabel_targets((6,))),
    OpCase("triplet_with_distance/default", *triplet_dist(), triplets((5, 4), 1.0)),
    OpCase("triplet_with_distance/swap_sum", *triplet_dist(swap=True, reduction="sum"),
           triplets((6, 3), 1.0, swap=True)),
]


def ctc(targets, input_lengths, target_lengths, **kw):
    """(tinydl, torch) CTC of log_softmax(x) (the way CTC is fed: PyTorch's gradient
    assumes it) with fixed targets and lengths."""
    import torch
    import tinydl.ops.activation as A

    def ours(x):
        return L.ctc_loss(A.log_softmax(x, -1), np.asarray(targets), input_lengths, target_lengths, **kw)

    def theirs(x):
        return TF.ctc_loss(x.log_softmax(-1), torch.tensor(targets), torch.tensor(input_lengths),
                           torch.tensor(target_lengths), **kw)
    return ours, theirs


PADDED = [[1, 2, 2, 0], [3, 1, 0, 0], [4, 4, 4, 1]]     # repeats need a blank between them

CASES += [
    OpCase("ctc/padded_mean", *ctc(PADDED, (12, 10, 8), (3, 2, 4)), lambda rng: [rng.standard_normal((12, 3, 5))]),
    OpCase("ctc/concatenated_sum", *ctc([1, 2, 3, 3, 1], (7, 6), (2, 3), reduction="sum"),
           lambda rng: [rng.standard_normal((7, 2, 4))]),
    OpCase("ctc/none_empty_target", *ctc([[2, 1], [0, 0]], (5, 4), (2, 0), reduction="none"),
           lambda rng: [rng.standard_normal((5, 2, 3))]),
    OpCase("ctc/blank_last", *ctc([[0, 1, 1]], (6,), (3,), blank=3), lambda rng: [rng.standard_normal((6, 1, 4))]),
    # the second sample cannot be aligned (3 repeats need 5 frames, it has 3): loss 0, no gradient
    OpCase("ctc/zero_infinity", *ctc([[1, 2, 0], [2, 2, 2]], (6, 3), (2, 3), reduction="sum", zero_infinity=True),
           lambda rng: [rng.standard_normal((6, 2, 3))]),
    OpCase("ctc/unbatched", *ctc([1, 2], 5, 2), lambda rng: [rng.standard_normal((5, 3))]),
]


# ---------------------------------------------------------------- the functional parity hunt
def _norm(d, p):
    """||d||_p along the last dim, PyTorch's limits included (p = inf, -inf, 0)."""
    a = np.abs(d)
    if p == np.inf:
        return a.max(-1)
    if p == -np.inf:
        return a.min(-1)
    if p == 0:
        return (a != 0).sum(-1).astype(d.dtype)
    return (a ** p).sum(-1) ** (1 / p)


def distinct(shapes, gap=0.05):
    """Arrays of ``shapes`` whose differences x_i - x_j + 1e-6 (broadcast) along the last dim
    are off 0 and have a unique largest and smallest |entry| (p = +-inf: no tie to split,
    and no finite difference straddles a switch of the winner)."""
    def make(rng):
        while True:
            out = [rng.standard_normal(s) for s in shapes]
            ok = True
            for i in range(len(out)):
                for j in range(i + 1, len(out)):
                    a = np.sort(np.abs(out[i] - out[j] + 1e-6), axis=-1)
                    ok = ok and a[..., 0].min() > gap and np.diff(a, axis=-1).min() > gap
            if ok:
                return out
    return make


def triplets_p(shapes, margin, p, swap=False):
    """As ``triplets``, for any p (inf included) and broadcast shapes."""
    base = distinct(shapes)

    def make(rng):
        while True:
            a, pos, neg = base(rng)
            dist = lambda u, v: _norm(u - v + 1e-6, p)
            d_neg = np.minimum(dist(a, neg), dist(pos, neg)) if swap else dist(a, neg)
            if (np.abs(margin + dist(a, pos) - d_neg).min() > 0.02
                    and np.abs(dist(a, neg) - dist(pos, neg)).min() > 0.02):
                return [a, pos, neg]
    return make


INF = float("inf")

CASES += [
    OpCase("pairwise_distance/pinf", *dist("pairwise_distance", p=INF), distinct([(4, 5), (4, 5)])),
    OpCase("pairwise_distance/pinf_broadcast_keepdim", *dist("pairwise_distance", p=INF, keepdim=True),
           distinct([(2, 3, 4), (3, 4)])),
    OpCase("pairwise_distance/p-inf", *dist("pairwise_distance", p=-INF), distinct([(4, 5), (4, 5)])),
    # a count: its gradient is 0 (PyTorch: none), nothing for finite differences to check
    OpCase("pairwise_distance/p0", *dist("pairwise_distance", p=0), distinct([(4, 5), (4, 5)]), gradcheck=False),
    OpCase("pairwise_distance/p0.5", *dist("pairwise_distance", p=0.5), distinct([(4, 5), (4, 5)])),
    OpCase("pairwise_distance/p-1.5", *dist("pairwise_distance", p=-1.5), distinct([(4, 5), (4, 5)])),
    OpCase("triplet_margin/pinf", *pair("triplet_margin_loss", p=INF, margin=2.0),
           triplets_p([(6, 4)] * 3, 2.0, INF)),
    OpCase("triplet_margin/p-inf_swap_none", *pair("triplet_margin_loss", p=-INF, margin=0.5, swap=True,
                                                   reduction="none"),
           triplets_p([(6, 4)] * 3, 0.5, -INF, swap=True)),
    OpCase("triplet_margin/3d_none", *pair("triplet_margin_loss", margin=2.0, reduction="none"),
           triplets_p([(2, 3, 4)] * 3, 2.0, 2.0)),
    OpCase("triplet_margin/broadcast_swap", *pair("triplet_margin_loss", margin=3.0, swap=True),
           triplets_p([(2, 3, 4), (1, 3, 4), (2, 1, 4)], 3.0, 2.0, swap=True)),
    OpCase("gaussian_nll/float_var", lambda x, t: L.gaussian_nll_loss(x, t, 0.7),
           lambda x, t: TF.gaussian_nll_loss(x, t, 0.7), randn_n([(2, 3, 4)] * 2)),
    OpCase("gaussian_nll/var_size1_in_a_middle_dim", *pair("gaussian_nll_loss", reduction="none"),
           gaussian((2, 3, 4), (2, 1, 4))),
]
