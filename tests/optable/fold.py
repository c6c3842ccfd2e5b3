"""Op table rows: unfold / fold (im2col / col2im as user-facing ops), with stride, padding
and dilation, overlapping and gapped windows, batched and unbatched."""
import numpy as np
import torch
import torch.nn.functional as TF

import tinydl.nn.functional as F
from optable import OpCase


def image(*shape):
    return lambda rng: [rng.standard_normal(shape)]


def columns(n, c, output_size, kernel, dilation=1, padding=0, stride=1, batched=True):
    """Random columns of the shape unfold gives for an image of ``output_size``."""
    def make(rng):
        probe = np.zeros((n, c) + tuple(output_size))
        cols = TF.unfold(torch.tensor(probe), kernel, dilation, padding, stride)
        shape = tuple(cols.shape) if batched else tuple(cols.shape[1:])
        return [rng.standard_normal(shape)]
    return make


def unf(*args, **kw):
    return lambda x: F.unfold(x, *args, **kw), lambda x: TF.unfold(x, *args, **kw)


def fld(*args, **kw):
    return lambda c: F.fold(c, *args, **kw), lambda c: TF.fold(c, *args, **kw)


CASES = [
    OpCase("unfold/3x3", *unf(3), image(2, 3, 5, 6)),
    OpCase("unfold/stride2_pad1", *unf(3, padding=1, stride=2), image(2, 2, 7, 6)),
    OpCase("unfold/dilation2_rect", *unf((2, 3), dilation=2, padding=(1, 0), stride=(1, 2)), image(1, 2, 6, 9)),
    OpCase("unfold/gapped_stride3", *unf(2, stride=3), image(2, 1, 8, 8)),
    OpCase("unfold/unbatched", *unf(2, padding=1), image(3, 4, 4)),
    OpCase("fold/3x3", *fld((5, 6), 3), columns(2, 3, (5, 6), 3)),
    OpCase("fold/stride2_pad1", *fld((7, 6), 3, padding=1, stride=2), columns(2, 2, (7, 6), 3, 1, 1, 2)),
    OpCase("fold/dilation2_rect", *fld((6, 9), (2, 3), dilation=2, padding=(1, 0), stride=(1, 2)),
           columns(1, 2, (6, 9), (2, 3), 2, (1, 0), (1, 2))),
    OpCase("fold/gapped_stride3", *fld((8, 8), 2, stride=3), columns(2, 1, (8, 8), 2, stride=3)),
    OpCase("fold/unbatched", *fld((4, 4), 2, padding=1), columns(1, 3, (4, 4), 2, padding=1, batched=False)),
]
