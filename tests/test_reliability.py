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
