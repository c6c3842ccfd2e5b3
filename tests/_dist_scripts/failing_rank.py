"""``tinydl train --distributed`` whose rank 1 fails in its second epoch, after the first checkpoint.

    mpiexec -n 2 python tests/_dist_scripts/failing_rank.py raise|kill TRAIN-ARGS...

``raise``: rank 1 raises RuntimeError('planted failure on rank 1'); ``kill``: rank 1
dies by SIGKILL. Either way the job must end (no rank left waiting in a collective).
"""
import os
import signal
import sys

import tinydl.distributed as dist
from tinydl import cli
from tinydl.train import Trainer

train_one_epoch = Trainer.train_one_epoch


def failing_epoch(self):
    if dist.get_rank() == 1 and self.epoch == 1:
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("planted failure on rank 1")
    return train_one_epoch(self)


Trainer.train_one_epoch = failing_epoch
sys.exit(cli.main(sys.argv[2:]))
