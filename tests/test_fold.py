"""F.unfold / F.fold beyond the op table: the convolution as unfold + one matrix product,
the adjoint identity behind their backward passes, the modules, and the errors."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F


def test_conv2d_is_unfold_then_matmul():
    rng = np.random.default_rng(0)
    x, w = td.tensor(rng.standard_normal((2, 3, 7, 6))), td.tensor(rng.standard_normal((4, 3, 3, 2)))
    cols = F.unfold(x, (3, 2), dilation=(1, 2), padding=1, stride=(2, 1))      # (N, C*kh*kw, L)
    y = (w.reshape(4, -1) @ cols).reshape(2, 4, 4, 6)
    ref = F.conv2d(x, w, dilation=(1, 2), padding=1, stride=(2, 1))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=2, padding=1),
                                      dict(kernel_size=2, dilation=2, stride=3)])
def test_fold_is_the_adjoint_of_unfold(geometry):
    """<unfold(x), c> == <x, fold(c)>: why each one's backward is the other."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 7))
    u = F.unfold(td.tensor(x), **geometry).numpy()
    c = rng.standard_normal(u.shape)
    folded = F.fold(td.tensor(c), (8, 7), **geometry).numpy()
    assert np.isclose((u * c).sum(), (x * folded).sum(), rtol=1e-12)
    # fold(unfold(x)) multiplies each pixel by the number of windows covering it
    counts = F.fold(F.unfold(td.ones(1, 1, 8, 7), **geometry), (8, 7), **geometry).numpy()
    np.testing.assert_allclose(F.fold(td.tensor(u), (8, 7), **geometry).numpy(), x * counts, rtol=1e-12)


def test_modules_match_torch():
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 5)).astype(np.float32)
    ours, theirs = nn.Unfold(2, padding=1, stride=2), torch.nn.Unfold(2, padding=1, stride=2)
    assert repr(ours) == repr(theirs)
    cols = ours(td.tensor(x))
    np.testing.assert_allclose(cols.numpy(), theirs(torch.tensor(x)).numpy())
    assert cols.dtype == np.float32
    ours_f, theirs_f = nn.Fold((5, 5), 2, padding=1, stride=2), torch.nn.Fold((5, 5), 2, padding=1, stride=2)
    assert repr(ours_f) == repr(theirs_f)
    np.testing.assert_allclose(ours_f(cols).numpy(), theirs_f(torch.tensor(cols.numpy())).numpy())


def test_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"unfold: expected a 3-D .* got shape \(2, 3\)"):
        F.unfold(td.zeros(2, 3), 2)
    with pytest.raises(ValueError, match=r"unfold: a \(5, 5\) window .* does not fit .* \(4, 4\)"):
        F.unfold(td.zeros(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match=r"fold: output_size \(4, 4\) .* 3 \* 3 = 9 sliding blocks, .* is 10"):
        F.fold(td.zeros(1, 4, 10), (4, 4), 2)
    with pytest.raises(ValueError, match=r"fold: input's dimension 1 \(5\) must be divisible by .* 4"):
        F.fold(td.zeros(1, 5, 9), (4, 4), 2)
    with pytest.raises(ValueError, match="unfold: stride must be >= 1"):
        F.unfold(td.zeros(1, 1, 4, 4), 2, stride=0)
