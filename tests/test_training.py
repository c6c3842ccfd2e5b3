"""End-to-end: the MLP learns MNIST; the main command runs; the IDX reader reads."""
import gzip
import struct

import numpy as np
import pytest

import tinydl as td
from tinydl.data import load_mnist, read_idx


def test_read_idx_roundtrip(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", *data.shape)
    (tmp_path / "a.idx").write_bytes(header + data.tobytes())
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(header + data.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), data)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), data)


def test_read_idx_rejects_truncated_file(tmp_path):
    header = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 3, 3)
    (tmp_path / "bad.idx").write_bytes(header + bytes(5))
    with pytest.raises(ValueError, match="shape"):
        read_idx(tmp_path / "bad.idx")


def test_missing_mnist_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, train=False)


def test_shared_mnist_test_split(mnist_dir):
    images, labels = load_mnist(mnist_dir, train=False)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.slow
def test_mlp_784_256_10_reaches_95_percent_on_mnist(mnist_dir):
    """SGD momentum on the first 8,000 test-set images, evaluated on the last 2,000."""
    import models
    from tinydl import optim
    from tinydl.train import fit
    images, labels = load_mnist(mnist_dir, train=False)
    td.manual_seed(0)
    model = models.create("mlp", hidden=256)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = fit(model, opt, (images[:8000], labels[:8000]), (images[8000:], labels[8000:]),
                  epochs=8, batch_size=64, log=None)
    assert history[-1]["test_acc"] >= 0.95, history[-1]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_main_command_trains_offline(capsys, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("cv2")
    from tinydl.cli import main
    monkeypatch.chdir(tmp_path)              # the run's files go to ./runs/mlp-digits
    assert main(["train", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy" in out
    accuracy = float(out.rsplit("final test accuracy:", 1)[1].strip().rstrip("%"))
    assert accuracy > 80.0
    assert sorted(p.name for p in (tmp_path / "runs" / "mlp-digits").iterdir()) == \
        ["checkpoint.npz", "curves.png", "log.csv", "log.json"]


def test_notes_mlp_has_622496_weights():
    import models
    model = models.create("mlp", bias=False)
    assert sum(p.numel() for p in model.parameters()) == 622_496
