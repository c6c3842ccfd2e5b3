"""The time budget of benchmarks/run_gpu_checks.sh and run_cpu_checks.sh (_budget.sh): a lent
GPU machine gives one command 10 minutes, so every stage must end by the budget, and the
summary must still come."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_a_stage_is_cut_to_the_budget_and_the_next_one_skipped(tmp_path):
    first, second, third = (tmp_path / f"{name}.txt" for name in ("first", "second", "third"))
    script = (f". benchmarks/_budget.sh; stage {first} 5 echo quick; stage {second} 60 sleep 30; "
              f"stage {third} 60 echo never")
    # whole seconds: a stage may start a second later than the budget's clock says
    env = dict(os.environ, BUDGET="3", RESERVE="0", MIN_STAGE="2")
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert first.read_text().splitlines()[0] == "quick"
    assert re.fullmatch(r"exit code 0 \(limit [23] s\)", first.read_text().splitlines()[1])
    # the budget's 2-3 s, not the stage's 60: stopped by timeout (124)
    assert re.fullmatch(r"exit code 124 \(limit [23] s\)", second.read_text().splitlines()[-1])
    assert third.read_text().startswith("skipped: BUDGET=3 s was spent")
