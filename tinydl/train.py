"""Training classifiers: a ``Trainer`` on DataLoaders, and ``fit`` for in-memory arrays.

One epoch of ``Trainer.fit`` is the loop every deep-learning course draws::

    model.train()                                # dropout drops, batch norm uses batch statistics
    for images, labels in train_loader:          # shuffled batches, a new order each epoch
        x = prepare_images(images, device)       # uint8 -> float32 in [0, 1], (N, C, H, W), on the device
        loss = loss_fn(model(x), labels)         # forward
        optimizer.zero_grad()
        loss.backward()                          # backward: fills p.grad of every parameter
        optimizer.step()                         # update
    scheduler.step()                             # the learning-rate schedule moves once per epoch
    evaluate(model, test_loader)                 # model.eval() under no_grad: dropout off, BN running stats

then it appends one row to ``history`` -- ``{epoch, lr, train_loss, train_acc,
test_loss, test_acc, test_top5, seconds}`` -- and, when ``out`` is a folder,
writes there ``log.csv`` and ``log.json`` (the history so far), ``curves.png``
(loss and accuracy per epoch; redrawn after every epoch, or only after the last
one when epochs are quicker than the drawing) and ``checkpoint.npz``.

Checkpoints and resuming. ``checkpoint.npz`` (written with ``td.save``: atomic,
never pickled) holds everything the next epoch depends on: the model's
parameters and buffers (BN running statistics), the optimizer's state (momentum
buffers, Adam's moments, the lr), the scheduler's state, the train loader's
state (its seed: the shuffle of epoch e is a pure function of (seed, e)), the
random generators (tinydl's, which dropout draws from; NumPy's and Python's
global ones, in case a user's code draws from them), the epoch and the history.
``Trainer.resume(path)`` puts all of that back, so on the CPU a run stopped
after epoch k and resumed repeats *exactly* the losses of the uninterrupted run
(seed before resuming, not after: ``td.manual_seed`` replaces the restored generator).
On 'cuda', dropout draws from a Philox counter on the GPU (kernels/philox.py), not saved:
the Trainer reseeds it from (seed, epoch) at the start of every epoch instead,
so resumed GPU runs repeat the uninterrupted ones too (up to the GPU's own
non-determinism in atomic additions).

Data-parallel runs. When ``tinydl.distributed`` is initialised (W processes
started by mpiexec), each rank trains the model -- wrapped in
``nn.parallel.DistributedDataParallel`` -- on its share of the data (a
``DistributedSampler``), and the Trainer: adds every rank's loss and accuracy
sums so the reported figures are the whole data set's (each rank evaluates its
own share of the test set); logs, draws and checkpoints on rank 0 only; saves
the model without the wrapper's ``module.`` prefix, so the checkpoint loads
into a plain model; records W and refuses to resume at another world size (the
data order and the optimizer steps would differ); and seeds tinydl's CPU
generator per epoch from (seed, epoch, rank), so ranks draw different dropout
masks and a resumed run draws what the uninterrupted one drew.

Accuracy and top-k. A sample counts as correct at k when fewer than k classes
score strictly higher than its true class (a tie with the true class counts in
its favour; PyTorch's ``topk`` breaks ties arbitrarily). Top-1 is the accuracy.
"""
import contextlib
import csv
import io
import json
import math
import numbers
import os
import random
import sys
import time

import numpy as np

from . import backend, backends
from .autograd import detect_anomaly, no_grad
from .backend import get_array_module, to_host
from .nn import functional as F
from .data.transforms import average_crops
from .tensor import Tensor
from .utils.serialization import CheckpointError, atomic_file

__all__ = ["Trainer", "CheckpointError", "RunFolderError", "fit", "evaluate", "evaluate_loader",
           "prepare_images", "fold_crops", "topk_correct", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.npz"
RUN_FILES = ("log.csv", "log.json", "curves.png", CHECKPOINT_NAME)   # what a run writes into ``out``
LOCK_NAME = ".tinydl-run.lock"    # held (O_EXCL, the pid inside) while a run writes into ``out``
_HELD_LOCKS = set()               # absolute paths of the locks this process holds
_FORMAT = "tinydl-trainer"
_VERSION = 1
# What load_state_dict reads, checked before anything is restored.
_STATE_KEYS = {"epoch": int, "model": dict, "optimizer": dict, "rng": dict, "history": list}


class RunFolderError(OSError):
    """The ``out`` folder cannot take this run: not writable, or it holds another run."""


# ================================================================ batches
def prepare_images(images, device=None):
    """A batch of images -> float32 Tensor (N, C, H, W) on ``device``.

    uint8 batches are the datasets' raw images, (N, H, W) grey or (N, H, W, C)
    colour: they travel to the device as uint8 (4x fewer bytes than float32),
    then become float32 in [0, 1] in NCHW layout. Float batches are taken as
    already prepared (e.g. by ``transforms.ToTensor``): (N, C, H, W), or (N, H, W)
    which gets a channel axis.
    """
    data = images.array if isinstance(images, Tensor) else images
    if device is not None:
        data = backend.to_device(data, device)
    xp = get_array_module(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"prepare_images: expected a batch of images (N, H, W) or (N, H, W, C) uint8 / "
                         f"(N, C, H, W) float, got shape {tuple(data.shape)}")
    if data.dtype == xp.uint8:
        data = data[:, None] if data.ndim == 3 else xp.ascontiguousarray(data.transpose(0, 3, 1, 2))
        data = data.astype(xp.float32) / xp.float32(255)
    elif data.ndim == 3:
        data = data[:, None]
    return Tensor(data)


def fold_crops(images):
    """A batch of crop stacks -> (one batch of all the crops, crops per image); other batches
    -> (images, None). Crop stacks are what FiveCrop/TenCrop give per sample: (N, ncrops, H, W, C)
    uint8, or (N, ncrops, C, H, W) float after ToTensor; they become (N * ncrops, ...)."""
    if images.ndim != 5:
        return images, None
    return images.reshape(-1, *images.shape[2:]), images.shape[1]


def _batch_pair(batch):
    """(inputs, targets) of one loader batch; a clear TypeError for anything else."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch
    what = (f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else
            f"a {type(batch).__name__}" + (f" of shape {tuple(batch.shape)}" if hasattr(batch, "shape") else ""))
    raise TypeError(f"Trainer: each batch must be (inputs, targets), got {what}")


def _checked_loss(loss_fn, logits, y):
    """``loss_fn(logits, y)``, which must be a Tensor (backward and the NaN checks need one)."""
    loss = loss_fn(logits, y)
    if not isinstance(loss, Tensor):
        raise TypeError(f"Trainer: loss_fn must return a scalar Tensor, got {type(loss).__name__} {loss!r:.60}")
    return loss


def _labels(labels, device):
    if isinstance(labels, Tensor):
        return labels.to(device) if device is not None else labels
    return Tensor(backend.to_device(np.asarray(labels), device or "cpu"))


def topk_correct(logits, target, ks=(1, 5)):
    """How many rows of ``logits`` (N, C) rank their ``target`` class within the top k, for each k.

    Returns one 0-d integer array per k, on the logits' device (no host copy).
    Rank of the true class = number of classes scoring strictly higher; a NaN
    score for the true class is never correct.
    """
    logits = logits.array if isinstance(logits, Tensor) else logits
    target = target.array if isinstance(target, Tensor) else target
    xp = get_array_module(logits)
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"topk_correct: expected logits (N, C) and target (N,), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    true_score = xp.take_along_axis(logits, target.astype(xp.int64)[:, None], axis=1)
    rank = (logits > true_score).sum(axis=1)
    valid = ~xp.isnan(true_score[:, 0])
    return [((rank < k) & valid).sum() for k in ks]


def _positive_int(name, value, minimum=1):
    """``value`` as an int >= ``minimum``; TypeError/ValueError naming the argument otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Trainer: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"Trainer: {name} must be >= {minimum}, got {value}")
    return int(value)


def _process_group():
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    from . import distributed as dist
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _sum_over_ranks(values, device):
    """Element-wise sum over all ranks of a list of numbers (float64 NumPy array)."""
    from . import distributed as dist
    t = Tensor(backend.to_device(np.asarray(values, dtype=np.float64), device))
    dist.all_reduce(t)
    return to_host(t.array)


def _unwrap(model):
    """The model inside DistributedDataParallel (checkpoints hold it without the 'module.' prefix)."""
    from .nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model


def _split_outputs(out):
    """(main logits, [auxiliary logits]) of a model's output: GoogLeNet and Inception v3
    return a namedtuple (logits, aux...) in training mode."""
    if isinstance(out, (tuple, list)):
        return out[0], [o for o in out[1:] if o is not None]
    return out, []


# ================================================================ evaluation
def evaluate_loader(model, loader, device="cpu", loss_fn=None, topk=5):
    """{'loss', 'acc', 'top<k>'} of ``model`` over ``loader``, in eval mode under no_grad.

    The model's mode is restored afterwards. Losses are the mean over samples. Batches of
    crop stacks (``transforms.TenCrop``: (N, 10, ...)) are scored by the mean of each
    image's 10 outputs (logits), as torchvision's TenCrop example does.
    """
    return _evaluation_means(*_evaluation_sums(model, loader, device, loss_fn, topk), topk)


def _evaluation_means(loss_sum, correct1, correctk, n, topk):
    if n == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"loss": float(loss_sum) / n, "acc": int(correct1) / n, f"top{topk}": int(correctk) / n}


def _evaluation_sums(model, loader, device, loss_fn, topk):
    """(sum of the losses, top-1 correct, top-k correct, samples) of ``model`` over ``loader``."""
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()                       # dropout off, batch norm on its running statistics
    batch_losses, sizes, correct1, correctk = [], [], 0, 0
    try:
        with no_grad():
            for batch in loader:
                images, labels = _batch_pair(batch)
                images, ncrops = fold_crops(images)
                x, y = prepare_images(images, device), _labels(labels, device)
                logits, _ = _split_outputs(model(x))
                if ncrops:    # multi-crop testing: the mean of each image's crop outputs (logits)
                    logits = average_crops(logits, ncrops)
                batch_losses.append(_checked_loss(loss_fn, logits, y).array)
                sizes.append(len(y))
                c1, ck = topk_correct(logits, y, (1, topk))
                correct1, correctk = correct1 + c1, correctk + ck
    finally:
        model.train(was_training)
    if not sizes:
        return 0.0, 0, 0, 0
    xp = get_array_module(batch_losses[0])
    losses = to_host(xp.stack(batch_losses)).astype(np.float64)
    return float(losses @ np.asarray(sizes, np.float64)), int(to_host(correct1)), int(to_host(correctk)), sum(sizes)


def evaluate(model, images, labels, batch_size=500, device="cpu"):
    """(mean loss, accuracy) of ``model`` on uint8 images and int labels (arrays)."""
    from .data import DataLoader, TensorDataset
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, seed=0)  # seed: draw nothing
    result = evaluate_loader(model, loader, device=device)
    return result["loss"], result["acc"]


# ================================================================ files
def _write_atomic(path, data):
    """Write bytes or text to ``path`` through a temporary file and a rename."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


@contextlib.contextmanager
def _ctrl_c_after():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until its end, then raise it
    (in the main thread, with Python's own handler in place; elsewhere the block runs as is)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda *args: held.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def check_run_paths(out):
    """RunFolderError when something that is not a file sits where the run writes one (a folder
    named checkpoint.npz would fail the first save, after an epoch of training)."""
    for name in RUN_FILES:
        path = os.path.join(out, name)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise RunFolderError(f"{path} is a folder or other non-file, where the run writes its {name}: "
                                 "remove it, or choose another out")


def run_files(out):
    """The files of a run already in folder ``out`` (empty when there is none)."""
    return [name for name in RUN_FILES if os.path.isfile(os.path.join(out, name))]


def run_holder(out):
    """The process id of the live run holding folder ``out`` (its LOCK_NAME file), else None.
    A lock whose process is dead is stale: nobody holds the folder. A lock without a pid
    yet is a claim being made (held), unless it is older than a minute (its writer died)."""
    from .utils.serialization import _alive
    path = os.path.join(out, LOCK_NAME)
    try:
        with open(path) as f:
            text = f.read().strip()
        age = time.time() - os.path.getmtime(path)
    except FileNotFoundError:
        return None
    except OSError:          # unreadable: a folder, no permission... -- held by someone, say so
        return -1
    if not text.isdigit():
        return -1 if age < 60 else None
    pid = int(text)
    if pid == os.getpid():   # this process: held only while a fit here holds it (else a dead
        return pid if os.path.abspath(path) in _HELD_LOCKS else None    # run's pid, reused)
    return pid if _alive(pid) else None


def claim_folder(out):
    """Hold ``out`` exclusively for this run: LOCK_NAME created with O_CREAT|O_EXCL holding our
    pid (so two runs started at once cannot both write there); a stale lock is taken over.
    RunFolderError when a live run holds it. ``release_folder`` gives it back."""
    path = os.path.join(out, LOCK_NAME)
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = run_holder(out)
            if holder is not None:
                who = f"process {holder}" if holder > 0 else "another process"
                raise RunFolderError(f"{out} already holds a run in progress ({who} holds {path}): wait for "
                                     "it to end, or choose another out") from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)      # stale: its run died without removing it
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _HELD_LOCKS.add(os.path.abspath(path))
        return
    raise RunFolderError(f"{out}: could not claim {path} (other runs keep taking it)")


def release_folder(out):
    """Remove the lock ``claim_folder`` made (only ours)."""
    path = os.path.abspath(os.path.join(out, LOCK_NAME))
    if path in _HELD_LOCKS:
        _HELD_LOCKS.discard(path)
        with contextlib.suppress(OSError):
            os.remove(path)


def check_writable(out):
    """Create folder ``out`` if needed and write a probe file there; RunFolderError if that fails."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-probe-{os.getpid()}")      # one per process: ranks check at once
        with atomic_file(probe):
            pass
        os.remove(probe)
    except OSError as exc:
        raise RunFolderError(f"{out} is not a writable folder ({exc.strerror or exc})") from None


def _csv_text(rows):
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _entry_faults(state, groups):
    """[(entry, what is wrong)] of a checkpoint's entries beyond their types: ranges, the rng
    states (tried on scratch generators), the rows of the history, the optimizer's groups."""
    faults = []
    epoch = state.get("epoch")
    if _is_int(epoch) and not 0 <= epoch < 2**31:
        faults.append(("epoch", f"{epoch} is not an epoch count"))
    history = state.get("history")
    if isinstance(history, list):    # one row of numbers per epoch (the logs are written from them)
        if not all(isinstance(row, dict) and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                                 for v in row.values()) for row in history):
            faults.append(("history", "rows that are not dicts of numbers"))
        elif _is_int(epoch) and len(history) != epoch:
            faults.append(("history", f"{len(history)} rows for {epoch} epochs"))
    for key, low in (("seed", None), ("world_size", 1)):
        value = state.get(key, low or 0)
        if not _is_int(value) or (low is not None and value < low):
            faults.append((key, f"{value!r:.40} is not an int" + (f" >= {low}" if low else "")))
    if not isinstance(state.get("config", {}), (dict, type(None))):
        faults.append(("config", f"a {type(state['config']).__name__}, not a dict"))
    if not isinstance(state.get("train_loader"), (dict, type(None))):
        faults.append(("train_loader", f"a {type(state['train_loader']).__name__}, not a dict"))
    try:
        np.asarray(state.get("step_losses", []), dtype=np.float64)
    except (TypeError, ValueError):
        faults.append(("step_losses", "not a list of numbers"))
    optimizer = state.get("optimizer")
    if isinstance(optimizer, dict):
        saved = optimizer.get("param_groups")
        if not isinstance(saved, list) or not isinstance(optimizer.get("state"), dict):
            faults.append(("optimizer", "no state dict and param_groups list"))
        elif len(saved) != groups:
            faults.append(("optimizer", f"{len(saved)} parameter groups, this optimizer has {groups}"))
    rng = state.get("rng")
    if isinstance(rng, dict):
        trials = {"tinydl": lambda v: setattr(np.random.default_rng().bit_generator, "state", v),
                  "numpy": lambda v: np.random.RandomState().set_state(v),
                  "python": lambda v: random.Random().setstate((v[0], tuple(v[1]), v[2]))}
        for name, trial in trials.items():
            if name not in rng:
                faults.append((f"rng.{name}", "missing"))
                continue
            try:
                if name == "python" and not (isinstance(rng[name], (list, tuple)) and len(rng[name]) == 3):
                    raise ValueError("not (version, internal state, gauss)")
                trial(rng[name])
            except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
                faults.append((f"rng.{name}", f"not a generator state: {exc}"))
    return faults


def _rng_states():
    return {"tinydl": backend.get_rng_state(), "numpy": np.random.get_state(legacy=False),
            "python": random.getstate()}


def _set_rng_states(states):
    backend.set_rng_state(states["tinydl"])
    np.random.set_state(states["numpy"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _seed_device_rng(device, seed, epoch, rank=None):
    """On 'cuda', reseed the GPU's generators (dropout's) from (seed, epoch); in a data-parallel run
    (``rank`` given) tinydl's CPU generator too, and from (seed, epoch, rank). See the module docstring."""
    entropy = [seed % 2**64, epoch] + ([rank] if rank is not None else [])     # (a negative seed too)
    value = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    if rank is not None:
        backend.manual_seed(value)
    if backend.parse_device(device).type == "cuda":
        backend.seed_cuda(value)


# ================================================================ step-counted loops
def step_batches(loader, steps, bar=None):
    """Yield exactly ``steps`` batches, going through ``loader`` as many times as needed
    (a DataLoader reshuffles on each pass); for training counted in steps, not epochs.
    ``bar``: a tqdm bar, advanced once per finished step."""
    done = 0
    while done < steps:
        empty = True
        for batch in loader:
            empty = False
            yield batch
            done += 1
            if bar is not None:
                bar.update(1)
            if done >= steps:
                return
        if empty:
            raise ValueError("step_batches: the loader yielded no batches")


# ================================================================ the trainer
class Trainer:
    """Trains ``model`` on ``train_loader`` (batches of (images, labels)) epoch by epoch.

    model, optimizer      a tinydl Module and an Optimizer over its parameters
    train_loader          a DataLoader (its state_dict is checkpointed) or any iterable
                          of (images, labels) batches
    test_loader           evaluated after each epoch (optional)
    scheduler             an lr_scheduler, stepped once per epoch (ReduceLROnPlateau with
                          the test loss, or the train loss without a test loader)
    scheduler_interval    'epoch' (default) or 'step': step the scheduler after every
                          optimizer step instead (warm-up and one-cycle schedules, whose
                          lr is a function of the step count)
    loss_fn               ``loss_fn(logits, labels)`` -> scalar Tensor; cross-entropy by default
    device                'cpu' or 'cuda' (the model must already be there)
    out                   folder for log.csv, log.json, curves.png, checkpoint.npz (None: no files)
    progress              tqdm bar per epoch: None = only when stderr is a terminal
    log                   called with one line per epoch (None: silent)
    topk                  the k of the reported top-k accuracy (5)
    aux_weight            weight of the auxiliary heads' losses for models that return
                          (logits, aux...) in training (GoogLeNet: 0.3)
    seed                  seeds the GPU's generators per epoch on 'cuda'
    config                a dict stored in log.json and the checkpoint (e.g. the CLI's flags);
                          its 'title' (if any) titles curves.png
    plot                  False: no curves.png
    overwrite             True: a fresh run (epoch 0) may replace the run already in ``out``
                          (without it, ``fit`` refuses: RunFolderError)
    detect_anomaly        train under ``td.autograd.detect_anomaly()``: the first backward that
                          gives NaN/Inf raises, naming the op and where its forward ran
    nan_check_interval    on a GPU, steps between checks of the losses for NaN/Inf (one sync
                          each; on the CPU every step is checked, before its backward)
    tune                  call ``td.backends.cpu.tune()``: process-wide CPU settings for speed
                          (False leaves the process as it is)
    early_stopping_patience  stop when the test loss (the train loss without a test loader)
                          has not improved by more than ``early_stopping_min_delta`` for
                          this many epochs (None: never); read off the history, so a
                          resumed run keeps counting
    cuda_graph            on 'cuda', capture the whole step (forward, loss, backward, the
                          optimizer's update) as a CUDA graph after two eager steps and
                          replay it for every batch of the same shape (``td.cuda.GraphedStep``):
                          one launch instead of about a thousand. It captures again when a learning rate
                          changes; batches of another shape run eagerly. The losses are then
                          checked for NaN after their step, not before its backward. Needs SGD
                          or Adam/AdamW(capturable=True), a per-epoch scheduler,
                          one process, no detect_anomaly and batch norm with a momentum
                          (dropout is fine: its masks come from a counter on the GPU)
    """

    def __init__(self, model, optimizer, train_loader, test_loader=None, *, scheduler=None, loss_fn=None,
                 device="cpu", out=None, progress=None, log=print, topk=5, aux_weight=0.3, seed=0,
                 config=None, plot=True, scheduler_interval="epoch", overwrite=False, detect_anomaly=False,
                 nan_check_interval=50, early_stopping_patience=None, early_stopping_min_delta=0.0, tune=True,
                 cuda_graph=False):
        from .optim.lr_scheduler import ReduceLROnPlateau
        if tune:                   # process-wide CPU settings for speed: td.backends.cpu.tune()
            backends.cpu.tune()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"Trainer: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if scheduler_interval == "step" and isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError("Trainer: ReduceLROnPlateau watches a per-epoch loss; use scheduler_interval='epoch'")
        self.rank, self.world_size = _process_group()
        self.model, self.optimizer = model, optimizer
        self.train_loader, self.test_loader = train_loader, test_loader
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.loss_fn = loss_fn or F.cross_entropy
        self.device = str(backend.parse_device(device))
        self.out = os.fspath(out) if out is not None else None
        self.progress = progress
        self.log = log if self.rank == 0 else None      # one report per job, from rank 0
        self.topk = _positive_int("topk", topk)
        self.aux_weight = aux_weight
        self.seed = int(seed)
        self.config = dict(config or {})
        self.plot = plot
        self.overwrite = overwrite
        self.detect_anomaly = bool(detect_anomaly)
        self.nan_check_interval = _positive_int("nan_check_interval", nan_check_interval)
        if early_stopping_patience is not None and early_stopping_patience < 1:
            raise ValueError(f"Trainer: early_stopping_patience must be >= 1 or None, got {early_stopping_patience}")
        self.early_stopping_patience, self.early_stopping_min_delta = early_stopping_patience, early_stopping_min_delta
        self.cuda_graph = bool(cuda_graph)
        if self.cuda_graph:
            self._check_graphable()
        self._graphed = None       # the GraphedStep, made at the first epoch
        self.epoch = 0             # epochs completed
        self.history = []          # one dict per epoch
        self.step_losses = []      # the loss of every training step, in order
        self._plot_seconds = 0.0   # how long curves.png took to draw last time
        self.checkpoint_epoch = None    # the epoch of out's checkpoint as this trainer last wrote or resumed it
        self.epoch_in_progress = None   # the epoch being trained or written (None between fits)

    # ------------------------------------------------------------ one epoch
    def _bar(self, iterable, total):
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show or self.rank != 0:
            return None
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=f"epoch {self.epoch + 1}", leave=False, dynamic_ncols=True)

    def _check_graphable(self):
        from .nn.normalization import _BatchNorm
        from .optim import SGD, Adam
        modules = list(_unwrap(self.model).modules())
        device = backend.parse_device(self.device).type
        refusals = [(device != "cuda", f"device 'cuda' (this trainer runs on {self.device!r})"),
                    (not (isinstance(self.optimizer, SGD) or isinstance(self.optimizer, Adam) and
                          all(group["capturable"] for group in self.optimizer.param_groups)),
                     f"SGD, or Adam/AdamW with capturable=True (not {type(self.optimizer).__name__}"
                     f"{'' if not isinstance(self.optimizer, Adam) else ' without capturable=True'}: its step "
                     "count, on the host, changes what each step computes)"),
                    (self.scheduler is not None and self.scheduler_interval == "step",
                     "a per-epoch scheduler (a per-step one changes the lr, which the graph holds, every step)"),
                    (self.detect_anomaly, "no detect_anomaly (it reads every gradient on the host)"),
                    (self.world_size > 1, "one process"),
                    (any(isinstance(m, _BatchNorm) and m.momentum is None and m.track_running_stats
                         for m in modules), "batch norm with a momentum (momentum=None weighs the n-th batch by "
                     "1/n, a count the graph would freeze)")]
        for refused, need in refusals:
            if refused:
                raise ValueError(f"Trainer: cuda_graph needs {need}")

    def _graph_step(self, x, y):
        """The step a CUDA graph holds: forward, loss, zero_grad, backward, update."""
        logits, loss = self._loss(self.model(Tensor(x)), Tensor(y))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return logits, loss

    def _hyperparameters(self):
        """What a captured step holds as constants: every group's settings (the lr...), as text
        (exact for floats; a NumPy scalar or an array lr counts too)."""
        return tuple(tuple((k, repr(v)) for k, v in group.items() if k != "params")
                     for group in self.optimizer.param_groups)

    def _graphed_step(self):
        if self._graphed is None:
            from .cuda import GraphedStep
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            self._graphed = GraphedStep(self._graph_step, warmup=2, key=self._hyperparameters, params=params)
        return self._graphed

    def _loss(self, out, y):
        logits, aux = _split_outputs(out)
        loss = _checked_loss(self.loss_fn, logits, y)
        for a in aux:
            loss = loss + self.aux_weight * _checked_loss(self.loss_fn, a, y)
        return logits, loss

    def train_one_epoch(self):
        """One pass over the train loader: epoch ``self.epoch`` (0-based; ``fit`` advances it).
        Returns {'train_loss', 'train_acc'} and records each step's loss in ``step_losses``.
        Losses stay on the device until the epoch ends (no host sync per step, except to
        refresh the progress bar)."""
        self.model.train()
        loader = self.train_loader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.epoch)          # epoch e's shuffle is a function of (seed, e)
        _seed_device_rng(self.device, self.seed, self.epoch, self.rank if self.world_size > 1 else None)
        try:
            total = len(loader)
        except TypeError:
            total = None
        bar = self._bar(loader, total)
        losses, sizes, correct, checked = [], [], 0, 0
        # A non-finite loss stops training at once on the CPU (reading a 0-d host array is
        # free); on a GPU every ``nan_check_interval`` steps, to keep one sync per interval.
        every = 1 if self.detect_anomaly or backend.parse_device(self.device).type == "cpu" \
            else self.nan_check_interval
        anomaly = detect_anomaly() if self.detect_anomaly else contextlib.nullcontext()
        graphed = self._graphed_step() if self.cuda_graph else None
        with anomaly:
            for step, batch in enumerate(bar if bar is not None else loader):
                images, labels = _batch_pair(batch)
                x, y = prepare_images(images, self.device), _labels(labels, self.device)
                if graphed is not None:     # the graph's loss array holds the last step's: a copy
                    logits, loss = graphed(x.array, y.array)
                    losses.append(loss.array.copy())
                else:
                    logits, loss = self._loss(self.model(x), y)
                    losses.append(loss.array)
                if (step + 1) % every == 0:     # eagerly before backward: the weights stay finite
                    checked = self._check_losses(losses, checked, total)
                if graphed is None:
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                sizes.append(len(y))
                correct = correct + topk_correct(logits, y, (1,))[0]
                if bar is not None and step % 10 == 0:
                    bar.set_postfix(loss=f"{float(to_host(loss.array)):.4f}",
                                    acc=f"{int(to_host(correct)) / sum(sizes):.3f}")
        if bar is not None:
            bar.close()
        if not losses:
            raise ValueError("Trainer: the train loader yielded no batches")
        self._check_losses(losses, checked, total)
        xp = get_array_module(losses[0])
        values = to_host(xp.stack(losses)).astype(np.float64)
        loss_sum, correct, n = float(values @ np.asarray(sizes, np.float64)), int(to_host(correct)), sum(sizes)
        if self.world_size > 1:     # the whole batch's figures: every rank's sums added
            values = _sum_over_ranks(values, self.device) / self.world_size
            loss_sum, correct, n = _sum_over_ranks([loss_sum, correct, n], self.device)
        self.step_losses.extend(values.tolist())
        return {"train_loss": float(loss_sum / n), "train_acc": float(correct / n)}

    def _check_losses(self, losses, start, total):
        """FloatingPointError naming the first step from ``losses[start:]`` whose loss is NaN or
        Inf (one host copy of those losses); else the number of losses checked so far."""
        if start == len(losses):
            return start
        xp = get_array_module(losses[start])
        values = to_host(xp.stack(losses[start:]))
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            batch = start + int(bad[0])
            raise self._diverged(f"the training loss is {values[bad[0]]} at step {len(self.step_losses) + batch + 1} "
                                 f"(epoch {self.epoch + 1}, batch {batch + 1}{f' of {total}' if total else ''}")
        return len(losses)

    def _diverged(self, what):
        """The FloatingPointError of a run that diverged: ``what`` went non-finite in epoch
        ``self.epoch + 1`` (``what`` ends inside an open parenthesis, closed here with the lr)."""
        kept = self.kept_checkpoint()
        return FloatingPointError(
            f"Trainer: {what}, lr {self.optimizer.param_groups[0]['lr']:g}): training diverged; {kept}. Try a "
            "smaller learning rate, or detect_anomaly (--detect-anomaly) to find the op that made it (on 'cuda' "
            "a label out of range also gives a nan loss)")

    def kept_checkpoint(self):
        """Which checkpoint of this run is on disk, in words (for error and interrupt reports)."""
        if self.out is not None and self.checkpoint_epoch is not None:
            return f"{self.checkpoint_path()} still holds epoch {self.checkpoint_epoch}"
        if self.out is not None and os.path.isfile(self.checkpoint_path()):    # loaded by hand: epoch unknown
            return f"{self.checkpoint_path()} is as it was"
        return "no checkpoint of this run was written"

    def interrupt_report(self):
        """'interrupted at epoch N; ...' for a KeyboardInterrupt out of ``fit`` (the CLI's Ctrl-C line):
        N is the epoch being trained or written, and the checkpoint named is the one on disk."""
        now = self.epoch_in_progress or self.epoch + 1
        if now == self.checkpoint_epoch:     # its checkpoint is written (its logs, rewritten on resume, were not)
            now += 1
        kept = (f"the checkpoint of epoch {self.checkpoint_epoch} stays in {self.out}"
                if self.checkpoint_epoch is not None else "no checkpoint was written")
        return f"interrupted at epoch {now}; {kept}"

    def _check_finite_epoch(self, row):
        """After an epoch, before anything is written: the step losses were checked before each
        backward, but the epoch's last update (lr 1e30, momentum inf) may still have made a
        weight non-finite, or the test loss may overflow; either is a divergence. One pass over
        the parameters, one host copy (on 'cuda' one sync)."""
        named = list(_unwrap(self.model).named_parameters())
        if named:
            xp = get_array_module(named[0][1].array)
            finite = to_host(xp.stack([xp.isfinite(p.array).all() for _, p in named]))
            if not finite.all():
                name = named[int(np.flatnonzero(~finite)[0])][0]
                raise self._diverged(f"the weights of {name} are not finite after the last step of epoch "
                                     f"{self.epoch + 1} (test loss {row.get('test_loss', 'not evaluated')}")
        for key in ("train_loss", "test_loss"):
            if key in row and not math.isfinite(row[key]):
                raise self._diverged(f"the {key.replace('_', ' ')} is {row[key]} (epoch {self.epoch + 1}")

    def evaluate(self, loader=None):
        """{'loss', 'acc', 'top<k>'} on ``loader`` (default: the test loader), in eval mode."""
        loader = loader if loader is not None else self.test_loader
        sums = _evaluation_sums(self.model, loader, self.device, self.loss_fn, self.topk)
        if self.world_size > 1:     # each rank evaluated its share of the test set
            sums = _sum_over_ranks(sums, self.device)
        return _evaluation_means(*sums, self.topk)

    def _step_scheduler(self, row):
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        from .optim.lr_scheduler import ReduceLROnPlateau
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(row.get("test_loss", row["train_loss"]))
        else:
            self.scheduler.step()

    def epochs_without_improvement(self):
        """(epochs since the monitored loss last improved by more than min_delta, its best
        value, the key watched): the early-stopping count, recomputed from the history."""
        key = "test_loss" if self.test_loader is not None else "train_loss"
        best, since = math.inf, 0
        for row in self.history:
            if row[key] < best - self.early_stopping_min_delta:
                best, since = row[key], 0
            else:
                since += 1
        return since, best, key

    def _should_stop(self):
        if self.early_stopping_patience is None or not self.history:
            return False
        since, best, key = self.epochs_without_improvement()
        if since < self.early_stopping_patience:
            return False
        if self.log:
            self.log(f"early stopping after epoch {self.epoch}: the {key.replace('_', ' ')} has not improved "
                     f"for {since} epochs (best {best:.4f})")
        return True

    def fit(self, epochs):
        """Train until ``epochs`` epochs are complete (a resumed trainer continues), or until
        early stopping; returns the history."""
        _positive_int("epochs", epochs, minimum=0)
        repair = self.out is not None and self.epoch >= epochs and self.rank == 0 and self._logs_behind()
        claimed = self.out is not None and (self.epoch < epochs or repair)
        if claimed:
            self._claim_out()      # released by itself when it fails
        try:
            if repair:             # a finished run stopped between its checkpoint and its logs
                self.write_outputs(checkpoint=False)
                if self.log:
                    self.log(f"rewrote the logs in {self.out} from the checkpoint's {self.epoch} epochs")
            self._fit_epochs(epochs)
        finally:
            if claimed and self.rank == 0:
                release_folder(self.out)
        return self.history

    def _logs_behind(self):
        """Do log.csv / log.json hold fewer (or other) rows than the history? (A run stopped
        after its checkpoint but before its logs were written.)"""
        if not self.history:
            return False
        try:
            with open(os.path.join(self.out, "log.csv")) as f:
                rows = len(f.read().splitlines()) - 1
            with open(os.path.join(self.out, "log.json")) as f:
                logged = json.load(f)["history"]
        except (OSError, ValueError, KeyError, TypeError):
            return True            # missing or unreadable: written again
        return rows != len(self.history) or not isinstance(logged, list) or len(logged) != len(self.history)

    def _fit_epochs(self, epochs):
        while self.epoch < epochs and not self._should_stop():
            self.epoch_in_progress = self.epoch + 1
            start = time.perf_counter()
            row = {"epoch": self.epoch + 1, "lr": float(self.optimizer.param_groups[0]["lr"])}
            try:
                row.update(self.train_one_epoch())
                if self.test_loader is not None:
                    result = self.evaluate()
                    row.update(test_loss=result["loss"], test_acc=result["acc"])
                    row[f"test_top{self.topk}"] = result[f"top{self.topk}"]
                self._check_finite_epoch(row)
            except FloatingPointError as err:
                err.history = list(self.history)     # the epochs that did finish, for reports
                raise
            self._step_scheduler(row)
            row["seconds"] = time.perf_counter() - start
            if backend.parse_device(self.device).type == "cuda":
                from . import cuda      # CuPy's memory pool: bytes in live arrays / taken from the driver
                row["gpu_mem_used_mb"] = cuda.memory_allocated() / 2**20
                row["gpu_mem_reserved_mb"] = cuda.memory_reserved() / 2**20
            self.epoch += 1
            self.history.append(row)
            if self.log:
                self.log(self.format_row(row, epochs))
            if self.out is not None and self.rank == 0:
                # Redraw the curves after every epoch, except when epochs are shorter than
                # the drawing itself (tiny runs): then only after the last one.
                self.write_outputs(plot=self.epoch >= epochs or row["seconds"] >= self._plot_seconds)
            if self.world_size > 1:      # no rank runs ahead (and dies) before rank 0's checkpoint is written
                from . import distributed
                distributed.barrier()
            self.epoch_in_progress = None

    def format_row(self, row, epochs=None):
        text = f"epoch {row['epoch']:3d}" + (f"/{epochs}" if epochs else "")
        text += f"  lr {row['lr']:.3g}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
        if "test_loss" in row:
            text += (f"  test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.2f}% "
                     f"top-{self.topk} {100 * row[f'test_top{self.topk}']:.2f}%")
        if "gpu_mem_used_mb" in row:
            text += f"  gpu mem {row['gpu_mem_used_mb']:.0f}/{row['gpu_mem_reserved_mb']:.0f} MB"
        return text + f"  ({row['seconds']:.1f}s)"

    # ------------------------------------------------------------ files
    def _claim_out(self):
        """Before the first epoch: ``out`` must be writable, held by this run alone (rank 0
        claims it: only rank 0 writes), and a fresh run never replaces another one there
        silently (``overwrite=True`` removes the old run's files)."""
        check_writable(self.out)
        check_run_paths(self.out)
        if self.rank == 0:
            try:
                claim_folder(self.out)
            except RunFolderError as exc:
                raise RunFolderError(f"Trainer: {exc}") from None
        try:
            found = run_files(self.out) if self.epoch == 0 else []
            if found and not self.overwrite:
                raise RunFolderError(f"Trainer: {self.out} already holds a run ({', '.join(found)}); resume it "
                                     "(Trainer.resume()), pass overwrite=True to replace it, or choose another out")
            for name in found if self.rank == 0 else ():     # so a replaced run never mixes with the new one
                os.remove(os.path.join(self.out, name))
        except BaseException:
            if self.rank == 0:
                release_folder(self.out)
            raise

    def write_outputs(self, plot=True, checkpoint=True):
        """checkpoint.npz, log.csv, log.json and curves.png in ``out`` (each written atomically).
        The checkpoint first: a run stopped in between has logs an epoch behind, which the
        resumed run rewrites from the checkpoint's history, never logs ahead of its checkpoint."""
        os.makedirs(self.out, exist_ok=True)
        if checkpoint:
            with _ctrl_c_after():      # the file on disk and checkpoint_epoch always agree
                self.save_checkpoint()
                self.checkpoint_epoch = self.epoch
        _write_atomic(os.path.join(self.out, "log.csv"), _csv_text(self.history))
        _write_atomic(os.path.join(self.out, "log.json"),
                      json.dumps({"config": self.config, "history": self.history}, indent=1))
        if self.plot and plot:
            from .utils.plot import plot_curves
            start = time.perf_counter()
            plot_curves(self.history, os.path.join(self.out, "curves.png"), keys=("loss", "acc"),
                        title=self.config.get("title"))
            self._plot_seconds = time.perf_counter() - start

    def state_dict(self):
        """Everything a resumed run needs (see the module docstring)."""
        loader = self.train_loader
        return {
            "format": _FORMAT, "version": _VERSION, "epoch": self.epoch,
            "model": _unwrap(self.model).state_dict(), "world_size": self.world_size,
            "optimizer": self.optimizer.state_dict(), "optimizer_type": type(self.optimizer).__name__,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scheduler_type": type(self.scheduler).__name__ if self.scheduler is not None else None,
            "train_loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "rng": _rng_states(), "seed": self.seed,
            "history": self.history, "step_losses": np.asarray(self.step_losses, dtype=np.float64),
            "config": self.config,
        }

    def check_state(self, state, source="the checkpoint"):
        """CheckpointError naming every entry of ``state`` whose type or range is wrong for this
        trainer (nothing is changed); ``load_state_dict`` calls it first."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise CheckpointError(f"{source} is not a tinydl training checkpoint (no '{_FORMAT}' format "
                                  "tag); was it written by Trainer.save_checkpoint / `tinydl train`?")
        if not _is_int(state.get("version", 0)) or state.get("version", 0) > _VERSION:
            raise CheckpointError(f"{source} was written by a newer tinydl (trainer format {state['version']!r})")
        for what, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            saved, have = state.get(f"{what}_type"), type(obj).__name__ if obj is not None else None
            if saved != have:
                was = f"trained with {what} {saved}" if saved is not None else f"saved without a {what}"
                now = f"this run has {have}" if have is not None else f"this run has no {what}"
                raise CheckpointError(f"{source} was {was}, {now}: resume with the same settings")
        wanted = dict(_STATE_KEYS, **({"scheduler": dict} if self.scheduler is not None else {}))
        wrong = [key if key in state else f"{key} (missing)" for key, kind in wanted.items()
                 if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)]
        wrong += [f"{key} ({why})" for key, why in _entry_faults(state, len(self.optimizer.param_groups))]
        if wrong:     # checked before anything is restored: a failed resume changes nothing
            raise CheckpointError(f"{source} is damaged or incomplete: bad entries {', '.join(wrong)}")

    def load_state_dict(self, state, source="the checkpoint"):
        """Restore a ``state_dict()``; raises CheckpointError when it does not fit this trainer.
        All or nothing: every entry is checked first, and what was changed before a load
        fails (the model, then the optimizer...) is put back."""
        self.check_state(state, source)
        self.check_world_size(state, source)
        loader = self.train_loader if hasattr(self.train_loader, "load_state_dict") else None
        before = self._snapshot(loader)    # (seed, epoch, history are set only once every load succeeded)
        steps = [("model", "does not fit the model " + type(_unwrap(self.model)).__name__,
                  lambda: _unwrap(self.model).load_state_dict(state["model"])),
                 ("optimizer", "cannot restore the optimizer",
                  lambda: self.optimizer.load_state_dict(state["optimizer"]))]
        if self.scheduler is not None:
            steps.append(("scheduler", "cannot restore the scheduler",
                          lambda: self.scheduler.load_state_dict(state["scheduler"])))
        if loader is not None and state.get("train_loader") is not None:
            steps.append(("train_loader", "cannot restore the train loader's state",
                          lambda: loader.load_state_dict(state["train_loader"])))
        steps.append(("rng", "cannot restore the random generators", lambda: _set_rng_states(state["rng"])))
        self._graphed = None        # a captured step holds the arrays this replaces
        for entry, what, load in steps:
            try:
                load()
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
                self._restore(before, loader)
                detail = f"no key {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())   # one line
                raise CheckpointError(f"{source}: {what} (entry {entry}): {detail}") from exc
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self.history = [dict(row) for row in state["history"]]
        self.step_losses = np.asarray(state.get("step_losses", []), dtype=np.float64).tolist()

    def _snapshot(self, loader):
        """Copies of what ``load_state_dict`` changes, for ``_restore``."""
        import copy
        return {"model": {k: v.detach().clone() for k, v in _unwrap(self.model).state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
                "train_loader": copy.deepcopy(loader.state_dict()) if loader is not None else None,
                "rng": _rng_states()}

    def _restore(self, snap, loader):
        _unwrap(self.model).load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(snap["scheduler"])
        if loader is not None:
            loader.load_state_dict(snap["train_loader"])
        _set_rng_states(snap["rng"])

    def check_world_size(self, state, source="the checkpoint"):
        """A checkpoint resumes only at the world size that wrote it (the data order and the
        steps would differ); CheckpointError otherwise."""
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise CheckpointError(f"{source} was written by a run on {saved_world} process(es), this one has "
                                  f"{self.world_size}: resume at the same world size (mpiexec -n {saved_world})")

    def checkpoint_path(self, path=None):
        if path is not None:
            return os.fspath(path)
        if self.out is None:
            raise ValueError("Trainer: no checkpoint path given and no out folder set")
        return os.path.join(self.out, CHECKPOINT_NAME)

    def save_checkpoint(self, path=None):
        """Write ``state_dict()`` with td.save (atomic: a crash never leaves half a file)."""
        from .utils.serialization import save
        path = self.checkpoint_path(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save(self.state_dict(), path)
        return path

    def read_checkpoint(self, path=None):
        """The state dict in a checkpoint file, with clear errors when it is missing or corrupt."""
        from .utils.serialization import load
        path = self.checkpoint_path(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume: no checkpoint at {path}; a training run writes one there "
                                    "after each epoch (run without resuming first)")
        if not os.path.isfile(path):
            raise CheckpointError(f"resume: {path} is a folder, not a checkpoint file")
        return load(path)     # CheckpointError (one line, naming the file) when it is not a checkpoint

    def resume(self, path=None):
        """Load a checkpoint (default ``out/checkpoint.npz``) written by ``save_checkpoint``;
        ``fit(epochs)`` then continues after its last epoch. Returns the epoch reached."""
        path = self.checkpoint_path(path)
        self.load_state_dict(self.read_checkpoint(path), source=f"the checkpoint {path}")
        self.resumed_from(path)
        return self.epoch

    def resumed_from(self, path):
        """Note that the state just loaded came from checkpoint ``path``: when that is out's own
        checkpoint, it is the one on disk (for reports of what a stopped run leaves)."""
        own = self.out is not None and os.path.abspath(path) == os.path.abspath(self.checkpoint_path())
        self.checkpoint_epoch = self.epoch if own else None


# ================================================================ arrays in, history out
def fit(model, optimizer, train, test, epochs=10, batch_size=64, device="cpu", seed=0, scheduler=None,
        log=print, out=None, progress=None, scheduler_interval="epoch"):
    """Train ``model`` on ``train`` = (uint8 images, int labels) arrays, evaluating on ``test``
    after each epoch; returns the list of per-epoch dicts (``epoch``, ``lr``, ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc``, ``test_top5``, ``seconds``).

    The batches are shuffled by a DataLoader seeded with ``seed``; ``out`` (a folder)
    adds the Trainer's log, curves and checkpoints.
    """
    from .data import DataLoader, TensorDataset
    train_loader = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True, seed=seed)
    test_loader = DataLoader(TensorDataset(*test), batch_size=500, seed=0) if test is not None else None
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler, device=device,
                      out=out, progress=progress, log=log, seed=seed, scheduler_interval=scheduler_interval)
    return trainer.fit(epochs)
