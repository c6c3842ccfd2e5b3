"""Data-parallel training: tinydl.distributed, DistributedDataParallel, SyncBatchNorm, DistributedSampler,
`tinydl train --distributed`.

The multi-process tests launch ``mpiexec -n 2`` as a subprocess (with a timeout that only
catches a hung job) and skip when mpiexec or mpi4py is missing (pip install -e ".[dist]").
The numerical checks run in one launch (tests/_dist_scripts/ddp_checks.py); each of its
checks is one test here.
"""
import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import tinydl as td
from tinydl import cli
from tinydl.data import DataLoader, DistributedSampler
from tinydl.train import evaluate_loader

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "_dist_scripts"


def _mpiexec():
    found = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(pathlib.Path(sys.executable).parent))
    if found is None:
        pytest.skip("mpiexec is not installed (pip install -e '.[dist]' brings MPICH's)")
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install -e '.[dist]')")
    return found


def run_mpi(n, args, timeout=240, env=None):
    """(exit status, stdout + stderr) of ``mpiexec -n n python args...`` run from the repository root."""
    command = [_mpiexec(), "-n", str(n), sys.executable, *map(str, args)]
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   **(env or {}))
    # stdin: none. Under pytest-xdist a worker's stdin is its channel to the controller, and
    # mpiexec forwards its stdin to rank 0 (it read the channel: "reading stdin too slowly")
    proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)             # mpiexec and every rank it started
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(map(str, args))} did not end within {timeout} s "
                    f"(a rank hanging in a collective?):\n{out[-3000:]}")
    return proc.returncode, out


# ================================================================ one launch, many checks
def _check_names():
    spec = importlib.util.spec_from_file_location("_ddp_checks", SCRIPTS / "ddp_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CHECKS)


@pytest.fixture(scope="module")
def ddp_checks():
    # One Numba thread per rank: two ranks share the two cores.
    code, out = run_mpi(2, ["-m", "mpi4py", SCRIPTS / "ddp_checks.py"], env={"NUMBA_NUM_THREADS": "1"})
    return code, out, {(m[0], int(m[1])): m[2] for m in re.findall(r"CHECK (\w+) (\d+) (PASS|FAIL)", out)}


@pytest.mark.parametrize("name", _check_names())
def test_two_ranks(ddp_checks, name):
    """collectives; DDP on 2 x half batches = 1 process on the whole batch (1e-10, float64, 3
    SGD-momentum steps, rank 1 starting from other weights, 1 or many buckets); no_sync;
    state_dict prefix; weight/buffer broadcast; shape mismatch error; unused parameters;
    SyncBatchNorm = BatchNorm on the whole batch (output, input grad, weight/bias grads,
    running stats); convert_sync_batchnorm."""
    code, out, results = ddp_checks
    for rank in (0, 1):
        status = results.get((name, rank))
        assert status == "PASS", f"check {name} on rank {rank}: {status or 'no result'}\n{out[-4000:]}"


# ================================================================ DistributedSampler (in process)
def test_sampler_covers_the_data_set_once_per_epoch_and_reshuffles():
    n, world = 30, 3
    samplers = [DistributedSampler(range(n), num_replicas=world, rank=r, seed=4) for r in range(world)]
    orders = []
    for epoch in range(3):
        shares = []
        for s in samplers:
            s.set_epoch(epoch)
            shares.append(list(s))
        assert [len(s) for s in shares] == [n // world] * world
        assert sorted(sum(shares, [])) == list(range(n))          # every index exactly once
        orders.append(sum(shares, []))
    assert orders[0] != orders[1] != orders[2]
    again = DistributedSampler(range(n), num_replicas=world, rank=1, seed=4)
    again.set_epoch(1)
    assert list(again) == list(samplers[1].indices(1))            # a pure function of (seed, epoch)


def test_sampler_pads_or_drops_like_pytorch():
    torch_sampler = pytest.importorskip("torch.utils.data").DistributedSampler
    for n, world, drop_last in ((10, 3, False), (10, 3, True), (2, 5, False), (7, 2, False), (12, 4, True)):
        for rank in range(world):
            mine = DistributedSampler(range(n), world, rank, shuffle=False, drop_last=drop_last)
            theirs = torch_sampler(range(n), world, rank, shuffle=False, drop_last=drop_last)
            assert list(mine) == list(theirs) and len(mine) == len(theirs), (n, world, rank, drop_last)
    shares = [list(DistributedSampler(range(10), 4, r, seed=1)) for r in range(4)]
    every = sum(shares, [])
    assert len(every) == 12 and set(every) == set(range(10))       # padded by repeating 2 indices


def test_sampler_errors():
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(range(5), num_replicas=3, rank=3)
    with pytest.raises(ValueError, match="no process group"):
        DistributedSampler(range(5))


def test_dataloader_takes_the_sampler_and_moves_its_epoch():
    data = td.data.TensorDataset(np.arange(16), np.arange(16))
    sampler = DistributedSampler(data, num_replicas=2, rank=1, seed=0)
    loader = DataLoader(data, batch_size=4, sampler=sampler)
    epochs = [np.concatenate([x.numpy() for x, _ in loader]) for _ in range(2)]
    assert len(loader) == 2 and [len(e) for e in epochs] == [8, 8]
    assert not np.array_equal(epochs[0], epochs[1])
    np.testing.assert_array_equal(epochs[1], sampler.indices(1))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(data, batch_size=4, sampler=sampler, shuffle=True)


# ================================================================ without a process group
def test_without_a_process_group():
    import tinydl.distributed as dist
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ValueError, match="init_process_group"):
        td.nn.parallel.DistributedDataParallel(td.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("gloo")
    # SyncBatchNorm is BatchNorm when there is no group
    x = td.randn(4, 3, 2, 2, dtype=td.float64)
    sync, bn = td.nn.SyncBatchNorm(3).double(), td.nn.BatchNorm2d(3).double()
    np.testing.assert_array_equal(sync(x).detach().numpy(), bn(x).detach().numpy())
    np.testing.assert_array_equal(sync.running_var.numpy(), bn.running_var.numpy())


def test_distributed_flag_without_mpiexec_is_one_line_exit_2(capsys, monkeypatch):
    import tinydl.distributed as dist
    for name in dist._LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["train", "--distributed", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mpiexec -n 2" in err


# ================================================================ the CLI on 2 ranks
TINY = ["--train-size", "64", "--test-size", "40", "--batch-size", "32", "--no-progress"]


def test_cli_distributed_run_reports_once_writes_one_checkpoint_and_resumes(tmp_path, capsys):
    pytest.importorskip("cv2")
    out_dir = tmp_path / "run"
    flags = ["train", "resnet20", "--dataset", "shapes", "--distributed", "--sync-bn", "--out", out_dir, *TINY]
    code, out = run_mpi(2, ["-m", "tinydl.cli", *flags, "--epochs", "1"])
    assert code == 0, out
    assert out.count("epoch   1/1") == 1 and out.count("final test accuracy") == 1, out
    assert "data-parallel on 2 processes (mpi), 1 thread(s) each; batch 32 = 2 x 16" in out, out
    assert sorted(p.name for p in out_dir.iterdir()) == ["checkpoint.npz", "curves.png", "log.csv", "log.json"]
    state = td.load(out_dir / "checkpoint.npz")
    assert state["world_size"] == 2 and not any(k.startswith("module.") for k in state["model"])

    # The printed accuracy is the whole test set's: the saved model, evaluated here in one process.
    args = cli.make_parser().parse_args([str(f) for f in flags])
    fit = cli.FitImages()
    _, test_set, classes, _ = cli._load_dataset(args, fit)
    test_set = cli._limit(test_set, 40)
    model, adapted, _ = cli.build_model("resnet20", np.asarray(test_set[0][0]).shape, classes)
    fit.size, fit.channels = adapted.size, adapted.channels
    model.load_state_dict(state["model"])
    whole = evaluate_loader(model, DataLoader(test_set, batch_size=40))
    row = json.loads((out_dir / "log.json").read_text())["history"][0]
    assert row["test_acc"] == whole["acc"] and abs(row["test_loss"] - whole["loss"]) < 1e-4
    assert f"acc {100 * whole['acc']:.2f}%" in out

    # --resume at the same world size continues; another world size is refused in one line.
    code, out = run_mpi(2, ["-m", "tinydl.cli", *flags, "--epochs", "2", "--resume"])
    assert code == 0 and "resumed from" in out and out.count("epoch   2/2") == 1, out
    assert [r["epoch"] for r in json.loads((out_dir / "log.json").read_text())["history"]] == [1, 2]
    code = cli.main([str(f) for f in flags if f != "--distributed" and f != "--sync-bn"] + ["--epochs", "3",
                                                                                              "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "run on 2 process(es), this one has 1" in err, err


def test_cli_restarted_with_wide_vectors_keeps_its_mpi_ranks(tmp_path):
    """On an Intel AVX-512 core each rank of ``mpiexec -n 2 tinydl train`` starts itself
    again (console_main): the same process, so the job goes on with both ranks."""
    code, out = run_mpi(2, [SCRIPTS / "as_on_intel_avx512.py", "train", "--distributed", "--out", tmp_path / "run",
                            "--epochs", "1", *TINY])
    assert code == 0, out
    starts = sorted(line for line in out.splitlines() if line.startswith("process"))
    assert len(starts) == 4 and len({line.split(":")[0] for line in starts}) == 2, out
    assert sum(line.endswith("set") and not line.endswith("unset") for line in starts) == 2, out
    assert "data-parallel on 2 processes (mpi)" in out and out.count("final test accuracy") == 1, out


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_stops_the_job_and_the_last_checkpoint_loads(tmp_path, how):
    """Rank 1 fails in epoch 2 while rank 0 waits for it in a collective: the job must end
    (the timeout only catches a hang) and the checkpoint of epoch 1 must load."""
    pytest.importorskip("sklearn")
    code, out = run_mpi(2, [SCRIPTS / "failing_rank.py", how, "train", "mlp", "--distributed", "--epochs", "3",
                            "--out", tmp_path, *TINY], timeout=120)
    assert code != 0, out
    if how == "raise":
        assert "[rank 1 of 2] Traceback" in out and "RuntimeError: planted failure on rank 1" in out, out
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1


# ================================================================ GPU: NCCL
@pytest.mark.gpu
def test_nccl_backend_on_one_gpu():
    """World size 1 on one GPU: collectives, DDP and SyncBatchNorm over NCCL (needs a GPU: untested
    where none is lent)."""
    code, out = run_mpi(1, ["-m", "mpi4py", SCRIPTS / "nccl_checks.py"])
    assert code == 0 and "NCCL CHECKS PASS" in out, out
