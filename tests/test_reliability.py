"""Promises of docs/reliability.md that need a process of their own or many steps:
a save killed midway leaves the old or the new file (and no orphan after the next save);
a thousand training steps keep resident memory flat."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tinydl as td

_SAVER = """
import sys, numpy as np, tinydl as td
path = sys.argv[1]
i = 0
while True:           # each version holds arrays filled with one value, i
    i += 1
    td.save({"version": i, "w": np.full(1_000_000, i, np.float64), "b": np.full(1000, i, np.float32)}, path)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_save_killed_midway_leaves_a_loadable_file_and_no_orphan_after_the_next_save(tmp_path):
    path = tmp_path / "ckpt.npz"
    td.save({"version": 0, "w": np.zeros(1_000_000), "b": np.zeros(1000, np.float32)}, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    killed_mid_write = 0
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], env=env)
        try:
            deadline = time.monotonic() + 60
            while not any(n.endswith(".tmp") for n in os.listdir(tmp_path)) and time.monotonic() < deadline:
                time.sleep(0.001)             # wait until a write is under way...
            time.sleep(0.002 * attempt)       # ...and at a few points into it
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed_mid_write += any(n.endswith(".tmp") for n in os.listdir(tmp_path))
        state = td.load(path)                 # the old or the new version, whole
        assert (state["w"] == state["version"]).all() and (state["b"] == state["version"]).all()
    assert killed_mid_write >= 1              # the test did hit a write in progress
    td.save({"version": -1}, path)            # the next save of the file removes the dead writers' files
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
def test_a_thousand_training_steps_keep_resident_memory_flat():
    """The usual loop (DataLoader, Adam, a per-step scheduler, the last loss kept, one loss
    per step kept as a number): after warm-up, memory must not grow with the step count."""
    import tracemalloc
    from tinydl import nn, optim
    from tinydl.data import DataLoader, TensorDataset
    td.manual_seed(0)
    rng = np.random.default_rng(0)
    data = TensorDataset(rng.standard_normal((256, 16)).astype(np.float32), rng.integers(0, 4, 256))
    loader = DataLoader(data, batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.9)
    history, loss, step = [], None, 0

    def run(steps):
        nonlocal loss, step
        while steps > 0:
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                history.append(loss.item())
                step, steps = step + 1, steps - 1
                if steps == 0:
                    return

    run(200)                                     # warm-up: caches, pools, first allocations
    tracemalloc.start()
    rss, traced = _resident_bytes(), tracemalloc.get_traced_memory()[0]
    run(1000)
    grown_traced = tracemalloc.get_traced_memory()[0] - traced
    tracemalloc.stop()
    grown_rss = _resident_bytes() - rss
    assert step == 1200 and np.isfinite(history).all()
    assert grown_traced < 1000 * 200, f"{grown_traced / 1000:.0f} bytes per step kept"   # history: ~40 B/step
    assert grown_rss < 8 * 2**20, f"resident memory grew by {grown_rss / 2**20:.1f} MB over 1,000 steps"


def _train_process(out, *flags):
    """`tinydl train mlp` on 64 digits, as a process of its own (many epochs: it runs until stopped)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tinydl.cli", "train", "mlp", "--train-size", "64", "--test-size",
                             "16", "--batch-size", "32", "--no-progress", "--out", str(out), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT")
def test_ctrl_c_is_one_line_the_checkpoint_it_names_is_on_disk_and_a_second_run_is_refused(tmp_path):
    """A real SIGINT after the first epoch is written, and a second run into the same --out
    while the first holds it."""
    import re
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    first = _train_process(out, "--epochs", "100000")
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        second = _train_process(out, "--epochs", "1")
        _, err2 = second.communicate(timeout=60)
        assert second.returncode == 2 and err2.splitlines() == [
            f"tinydl train: error: --out {out} already holds a run in progress (process {first.pid}): wait for it "
            "to end, or choose another --out"], err2
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    found = re.fullmatch(rf"tinydl train: interrupted at epoch (\d+); the checkpoint of epoch (\d+) stays in {out}\n",
                         err)
    assert found, err
    now, kept = map(int, found.groups())
    assert now == kept + 1 and td.load(out / "checkpoint.npz")["epoch"] == kept
    logged = len((out / "log.csv").read_text().splitlines()) - 1
    assert kept - 1 <= logged <= kept                                    # never ahead of the checkpoint
    assert sorted(os.listdir(out)) in (["checkpoint.npz", "curves.png", "log.csv", "log.json"],
                                       ["checkpoint.npz", "log.csv", "log.json"])     # no lock, no temporary file
