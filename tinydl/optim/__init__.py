"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and numbers.

    import tinydl.optim as optim
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)

Every optimizer is a subclass of :class:`Optimizer` (optimizer.py: param groups,
state, state_dict) with one method, ``_update(p, grad, group)``, that changes
``p.array`` in place with plain array code (NumPy or CuPy, whichever holds the data);
SGD also overrides ``_update_group`` to update its small parameters together (foreach);
LBFGS overrides ``step`` itself (it calls the closure many times per step).
"""
from .optimizer import Optimizer, required
from .sgd import SGD
from .adam import Adam, AdamW
from .adagrad import Adagrad
from .rmsprop import RMSprop
from .adadelta import Adadelta
from .adamax import Adamax
from .nadam import NAdam
from .radam import RAdam
from .asgd import ASGD
from .rprop import Rprop
from .lbfgs import LBFGS
from . import lr_scheduler, swa_utils

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam",
           "ASGD", "Rprop", "LBFGS", "lr_scheduler", "swa_utils"]
