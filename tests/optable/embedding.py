"""Op table rows: embedding. The ids are int64 arrays (never differentiable); the table
gets its gradient by scatter-add, so the ids repeat (rows looked up several times) and
leave rows unused (their gradient must stay 0). The padding row gets no gradient, and
scale_grad_by_freq rescales it, by definition rather than by calculus, so those rows skip
gradcheck (PyTorch parity covers them)."""
import numpy as np
import torch.nn.functional as TF

import tinydl.nn.functional as F
from optable import OpCase


def table_and_ids(rows, dim, id_shape, force=None):
    """A (rows, dim) table and ids of ``id_shape`` drawn from the first rows - 2 rows (so the
    last two are never used), with the first two ids set to ``force`` when given."""
    def make(rng):
        ids = rng.integers(0, rows - 2, id_shape).astype(np.int64)
        if force is not None:
            ids.reshape(-1)[:2] = force
        return [rng.standard_normal((rows, dim)), ids]
    return make


def emb(**kw):
    return (lambda w, i: F.embedding(i, w, **kw), lambda w, i: TF.embedding(i, w, **kw))


CASES = [
    OpCase("embedding/2d_ids", *emb(), table_and_ids(10, 4, (3, 5))),
    OpCase("embedding/1d_ids", *emb(), table_and_ids(7, 3, (6,))),
    OpCase("embedding/0d_id", *emb(), table_and_ids(5, 3, ())),
    OpCase("embedding/padding_idx", *emb(padding_idx=2), table_and_ids(10, 4, (4, 3), force=2),
           gradcheck=False),
    OpCase("embedding/padding_idx_negative", *emb(padding_idx=-3), table_and_ids(10, 4, (4, 3), force=7),
           gradcheck=False),
    OpCase("embedding/scale_grad_by_freq", *emb(scale_grad_by_freq=True), table_and_ids(6, 4, (5, 4)),
           gradcheck=False),
    OpCase("embedding/scale_grad_by_freq_padding", *emb(scale_grad_by_freq=True, padding_idx=0),
           table_and_ids(6, 2, (2, 3, 4), force=0), gradcheck=False),
]
