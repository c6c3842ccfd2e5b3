"""nn.Embedding / F.embedding beyond the op table: max_norm's in-place renorm, the module's
init, repr, from_pretrained and errors, compared with PyTorch."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5])
def test_max_norm_renormalises_used_rows_in_place_as_torch(norm_type):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 5)) * 2
    ids = np.array([[0, 3, 3], [5, 0, 1]])
    gy = rng.standard_normal((2, 3, 5))
    wt = torch.tensor(w, requires_grad=True)
    ref = torch.nn.functional.embedding(torch.tensor(ids), wt, max_norm=1.5, norm_type=norm_type)
    ref.backward(torch.tensor(gy))
    wd = td.tensor(w, requires_grad=True)
    out = F.embedding(td.tensor(ids), wd, max_norm=1.5, norm_type=norm_type)
    out.backward(td.tensor(gy))
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(wd.detach().numpy(), wt.detach().numpy(), rtol=1e-12)   # rows 0,1,3,5 only
    np.testing.assert_array_equal(wd.detach().numpy()[[2, 4, 6, 7]], w[[2, 4, 6, 7]])
    np.testing.assert_allclose(wd.grad.numpy(), wt.grad.numpy(), rtol=1e-12)


def test_module_matches_torch_and_padding_row_stays_zero():
    td.manual_seed(0)
    ours = nn.Embedding(10, 4, padding_idx=-1)
    theirs = torch.nn.Embedding(10, 4, padding_idx=-1)
    assert ours.padding_idx == theirs.padding_idx == 9
    assert repr(ours) == repr(theirs) == "Embedding(10, 4, padding_idx=9)"
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    np.testing.assert_array_equal(ours.weight.detach().numpy()[9], 0)
    assert abs(ours.weight.detach().numpy()[:9].std() - 1) < 0.3      # N(0, 1), as PyTorch
    ours.load_state_dict({"weight": theirs.weight.detach().numpy()})
    ids = np.array([[1, 9, 4], [4, 4, 0]])
    gy = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    out, ref = ours(td.tensor(ids)), theirs(torch.tensor(ids))
    out.backward(td.tensor(gy))
    ref.backward(torch.tensor(gy))
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy())
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6)
    assert ours.weight.grad.dtype == np.float32
    np.testing.assert_array_equal(ours.weight.grad.numpy()[[2, 3, 5, 6, 7, 8, 9]], 0)


def test_from_pretrained_shares_and_freezes():
    table = td.tensor(np.arange(12.0).reshape(4, 3))
    e = nn.Embedding.from_pretrained(table)
    assert not e.weight.requires_grad and e.weight.array is table.array
    np.testing.assert_array_equal(e(td.tensor([3, 0])).numpy(), [[9, 10, 11], [0, 1, 2]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    assert repr(nn.Embedding.from_pretrained(table, max_norm=1.0)) == "Embedding(4, 3, max_norm=1.0)"


def test_errors_name_the_op_and_the_values():
    w = td.randn(5, 2)
    with pytest.raises(IndexError, match="embedding: index 5 is out of bounds .* 5 embeddings"):
        F.embedding(td.tensor([0, 5]), w)
    with pytest.raises(IndexError, match="index -1"):
        F.embedding(td.tensor([-1]), w)
    with pytest.raises(TypeError, match="embedding: input must hold integer ids.*float"):
        F.embedding(td.tensor([0.0, 1.0]), w)
    with pytest.raises(ValueError, match="weight must be a 2-D tensor"):
        F.embedding(td.tensor([0]), td.randn(5))
    with pytest.raises(NotImplementedError, match="sparse"):
        F.embedding(td.tensor([0]), w, sparse=True)
    with pytest.raises(ValueError, match="padding_idx 7"):
        nn.Embedding(5, 2, padding_idx=7)
