"""Pretrained weights: models.create(name, weights=PATH) reads .npz state dicts, and
`tinydl convert-weights` turns PyTorch .pth files (read by torch, weights only) into them."""
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

import models
import tinydl as td
from tinydl import cli
from tinydl.data import DataLoader, TensorDataset
from tinydl.train import Trainer


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    """A torchvision-style resnet18 state dict saved by torch.save, built by hand from
    tinydl's names and shapes (torchvision is not installed): random values, int64
    num_batches_tracked, as torchvision's file has."""
    td.manual_seed(0)
    names = models.create("resnet18").state_dict()
    gen = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for k, v in names.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        else:
            state[k] = torch.randn(tuple(v.shape), generator=gen)
    path = tmp_path_factory.mktemp("w") / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path, state


def test_convert_then_create_loads_every_tensor(resnet18_pth, tmp_path, capsys):
    src, state = resnet18_pth
    dst = tmp_path / "resnet18.npz"
    assert cli.main(["convert-weights", str(src), str(dst)]) == 0
    assert f"wrote {dst}: {len(state)} tensors" in capsys.readouterr().out
    model = models.create("resnet18", weights=dst)
    got = model.state_dict()
    assert list(got) == list(state)
    for k, v in state.items():
        np.testing.assert_array_equal(np.asarray(got[k].numpy()), v.numpy(), err_msg=k)
    assert got["fc.weight"].dtype == np.float32 and got["bn1.num_batches_tracked"].dtype == np.int64


def test_npz_flavours(tmp_path):
    td.manual_seed(1)
    source = models.create("lenet5")
    expected = {k: v.numpy() for k, v in source.state_dict().items()}
    td.save(source.state_dict(), tmp_path / "td.npz")                    # td.save of a state dict
    np.savez(tmp_path / "plain.npz", **expected)                           # a plain npz of arrays
    loader = DataLoader(TensorDataset(np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.int64)), batch_size=4)
    trainer = Trainer(source, td.optim.SGD(source.parameters(), lr=0.0), loader, out=tmp_path / "run",
                      log=None, progress=False, plot=False)
    trainer.fit(1)                                                         # a training checkpoint
    expected = {k: v.numpy() for k, v in source.state_dict().items()}
    for path in [tmp_path / "td.npz", tmp_path / "plain.npz", tmp_path / "run" / "checkpoint.npz"]:
        td.manual_seed(2)
        got = models.create("lenet5", weights=path).state_dict()
        for k, v in expected.items():
            np.testing.assert_array_equal(got[k].numpy(), v, err_msg=f"{path.name}: {k}")


def test_errors_say_what_to_do(resnet18_pth, tmp_path):
    src, _ = resnet18_pth
    with pytest.raises(ValueError, match=r"is not an .npz file .*tinydl convert-weights"):
        models.create("resnet18", weights=src)                              # a .pth straight in
    dst = tmp_path / "r18.npz"
    assert cli.main(["convert-weights", str(src), str(dst)]) == 0
    with pytest.raises(ValueError, match=r"(?s)the weights do not fit the model: .*fc.weight.*replace its head"):
        models.create("resnet18", weights=dst, num_classes=200)
    with pytest.raises(FileNotFoundError, match="weights: no file at"):
        models.create("resnet18", weights=tmp_path / "missing.npz")


class _Payload:
    """Unpickling this would create a file: weights_only must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cli_errors_are_one_line_and_nothing_is_unpickled(resnet18_pth, tmp_path, capsys):
    src, _ = resnet18_pth
    dst = tmp_path / "out.npz"
    dst.write_bytes(b"keep me")
    assert cli.main(["convert-weights", str(src), str(dst)]) == 2          # no overwrite without --force
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and len(err.strip().splitlines()) == 1 and dst.read_bytes() == b"keep me"
    assert cli.main(["convert-weights", str(src), str(dst), "--force"]) == 0
    assert cli.main(["convert-weights", str(tmp_path / "nope.pth"), str(tmp_path / "x.npz")]) == 2
    assert "no file at" in capsys.readouterr().err
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "x": _Payload(str(marker))}, evil)
    assert cli.main(["convert-weights", str(evil), str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "weights only" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not os.path.exists(tmp_path / "e.npz")


def test_a_bfloat16_checkpoint_converts_to_float32(tmp_path):
    """bfloat16 has no NumPy dtype: its values (all exact in float32) come over as float32."""
    from tinydl.utils.pretrained import convert_torch_weights
    lin = torch.nn.Linear(3, 2).bfloat16()
    torch.save(lin.state_dict(), tmp_path / "w.pth")
    convert_torch_weights(tmp_path / "w.pth", tmp_path / "w.npz")
    got = td.load(tmp_path / "w.npz")
    assert got["weight"].dtype == np.float32
    np.testing.assert_array_equal(got["weight"], lin.weight.float().detach().numpy())
