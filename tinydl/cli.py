"""``tinydl``: train a zoo model from the command line.

    tinydl train                                   # the notes' MLP 784-784-10 on scikit-learn's digits (offline)
    tinydl train lenet5 --dataset mnist --data-dir ~/data/mnist --epochs 10 --schedule step
    tinydl train resnet20 --dataset cifar10 --data-dir ~/data/cifar10 --device cuda
    tinydl train lenet5 --dataset mnist --epochs 20 --resume      # continue runs/lenet5-mnist
    tinydl list                                    # the zoo's model names
    tinydl summary alexnet                         # per-layer shapes, params, memory, FLOPs, receptive fields
    mpiexec -n 2 tinydl train resnet20 --dataset shapes --distributed   # data-parallel, docs/distributed.md
    tinydl convert-weights resnet50.pth resnet50.npz   # torchvision weights -> models.create(..., weights=)
    tinydl gradcheck lenet5                        # every parameter's gradient against finite differences

Each run writes into ``--out`` (default ``runs/<model>-<dataset>``): log.csv and
log.json (per epoch: lr, train loss/accuracy, test loss, top-1 and top-5
accuracy, seconds), curves.png (loss and accuracy curves) and checkpoint.npz
(model, optimizer, schedule, data-order and random-generator state, rewritten
atomically after every epoch). ``--resume`` reloads that checkpoint and trains
on to ``--epochs``; on the CPU the losses are then exactly those of an
uninterrupted run. The other flags must be the ones the run started with (the
checkpoint's schedule, e.g. a cosine T_max set from the first ``--epochs``, is
kept).

Datasets: ``digits`` (scikit-learn's 8x8 digits in a 28x28 frame; no download),
``mnist`` and ``fashion-mnist`` (IDX files in ``--data-dir``; when only the
10,000-image test split is there, its first 8,000 train and the last 2,000
test), ``cifar10`` (the binary version's .bin files in ``--data-dir``), and
``shapes`` (OpenCV-drawn lines, polygons, stars, checkerboards, cubes and
ellipses, 32x32: a 6-class problem generated on the fly), and ``cub200``
(CUB-200-2011 in its own layout in ``--data-dir``: images.txt,
train_test_split.txt, image_class_labels.txt, classes.txt, images/). Images are fitted to
the model: grey images are repeated to 3 channels for colour-only networks (or
``in_channels`` is passed where the builder has it), and resized -- zero-padded
for a small difference, as MNIST's 28x28 to LeNet-5's 32x32 -- to the size
the network needs (``--image-size`` overrides).

Fine-tuning, the notes' ResNet-50 / CUB-200 recipe (seed 003)::

    tinydl convert-weights resnet50-0676ba61.pth resnet50.npz
    tinydl train resnet50 --dataset cub200 --data-dir ~/data/CUB_200_2011 --weights resnet50.npz \
        --lr 0.01 --backbone-lr 0.001 --batch-size 16 --epochs 30 --schedule step --step-size 10 \
        --weight-decay 1e-4 --ten-crop --device cuda

``--weights`` loads pretrained weights; a classifier head of another shape (ImageNet's
1000 classes) is left freshly initialised for the dataset's classes. ``--backbone-lr``
gives every parameter but that head its own learning rate (two optimizer param groups:
the head at ``--lr``, the backbone at ``--backbone-lr``). CUB-200 images are resized to
``--resize`` (default 512) squared, then a random ``--image-size`` (default 448) crop,
flipped left-right half the time, trains; testing takes the centre crop, or with
``--ten-crop`` the four corners and the centre of the image and of its mirror, and
averages the net's 10 outputs (logits). CUB-200 images are normalised with ImageNet's
mean and std, as torchvision's pretrained weights expect.
"""
import argparse
import inspect
import os
import sys
import time
import traceback

import numpy as np

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "shapes", "cub200")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
SCHEDULES = ("none", "step", "multistep", "exp", "cosine", "plateau")

# The input size a network is built for, where it cannot take other sizes (its
# classifier sees a fixed-size feature map). Others take the dataset's size.
NATIVE_SIZE = {"lenet5": 32, "lenet_tf": 28, "seed_cnn": 28, "alexnet": 227, "zfnet": 224,
               "alexnet_tv": 224, "googlenet": 224, "googlenet_tv": 224, "inception_v2": 224,
               "inception_v3": 299, "mobilenet_v1": 224}

# Learning rates that work for each optimizer when --lr is not given.
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.01, "rmsprop": 1e-3,
              "adadelta": 1.0, "adam": 1e-3, "adamw": 1e-3}

# Flags that may differ between a run and its --resume (everything else must match).
# (--distributed too: the checkpoint's world size is checked with its own message)
_RESUME_FREE = {"epochs", "resume", "out", "device", "progress", "data_dir", "workers", "download", "command",
                "overwrite", "detect_anomaly", "distributed", "test_batch_size", "cuda_graph", "cudnn"}

# CUB-200's recipe (notes 003): resize to 512x512, random 448x448 crops; other crop
# sizes keep that ratio when --resize is not given.
CUB_CROP, CUB_RESIZE = 448, 512


class UsageError(ValueError):
    """A bad combination of flags, model and data (printed without a traceback)."""


class Interrupted(Exception):
    """Ctrl-C during training: its one-line report (exit status 130, as a shell's)."""


# Largest --image-size / --resize (and summary's H, W): beyond it one image alone takes gigabytes.
MAX_IMAGE_SIZE = 4096


# ================================================================ data
class _ShapeClasses:
    """SyntheticShapes as a classification set: the label is the primitive drawn."""

    def __init__(self, shapes, transform=None):
        self.shapes, self.transform = shapes, transform

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, index):
        image, _ = self.shapes[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.shapes.primitives.index(self.shapes.primitive(index))


def _load_dataset(args, transform):
    """(train set, test set, number of classes, description) for ``args.dataset``."""
    from . import data
    root = os.path.expanduser(args.data_dir) if args.data_dir else None
    if args.dataset == "digits":
        return (data.Digits(train=True, transform=transform), data.Digits(train=False, transform=transform), 10,
                "digits: scikit-learn's bundled 8x8 digits in a 28x28 frame")
    if args.dataset == "shapes":
        prims = data.PRIMITIVES
        make = lambda n, seed: _ShapeClasses(data.SyntheticShapes(n, image_size=(32, 32), seed=seed), transform)  # noqa: E731
        return make(2400, 0), make(600, 1), len(prims), f"shapes: OpenCV drawings of {', '.join(prims)} (32x32)"
    if args.dataset in ("mnist", "fashion-mnist"):
        cls = data.MNIST if args.dataset == "mnist" else data.FashionMNIST
        test = cls(root, train=False, transform=transform, download=args.download)
        try:
            train = cls(root, train=True, transform=transform, download=args.download)
            return train, test, 10, f"{cls.__name__} from {test.root}"
        except FileNotFoundError:
            n = len(test)
            cut = n * 4 // 5
            return (data.Subset(test, range(cut)), data.Subset(test, range(cut, n)), 10,
                    f"{cls.__name__}: only the test split found in {test.root}; training on its first "
                    f"{cut:,} images, testing on the last {n - cut:,}")
    if args.dataset == "cifar10":
        train = data.CIFAR10(root, train=True, transform=transform, download=args.download)
        test = data.CIFAR10(root, train=False, transform=transform, download=args.download)
        return train, test, 10, f"CIFAR-10 from {train.root}"
    if args.dataset == "cub200":
        if root is None:
            raise UsageError("--dataset cub200 needs --data-dir: the CUB_200_2011 folder (images.txt, "
                             "train_test_split.txt, image_class_labels.txt, classes.txt, images/)")
        train_tf, test_tf, about = cub_transforms(args)
        train = data.CUB200(root, train=True, transform=train_tf)
        test = data.CUB200(root, train=False, transform=test_tf)
        return train, test, len(train.classes), f"CUB-200-2011 from {train.root} ({about})"
    raise UsageError(f"unknown dataset {args.dataset!r}; choose from {', '.join(DATASETS)}")


def cub_sizes(args):
    """(resize, crop) of the CUB recipe: --image-size (else the net's own size, else 448) and
    --resize (else the crop x 512/448)."""
    crop = args.image_size or NATIVE_SIZE.get(args.model) or CUB_CROP
    resize = args.resize or round(crop * CUB_RESIZE / CUB_CROP)
    if resize < crop:
        raise UsageError(f"--resize {resize} is smaller than the crop (--image-size) {crop}")
    return resize, crop


def cub_transforms(args):
    """(train transform, test transform, description) of the notes' CUB-200 recipe (RGB
    images at the crop size: the nets that take them need no fitting)."""
    from .data import transforms as T
    resize, crop = cub_sizes(args)
    to_input = [T.ToTensor(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)]
    train = T.Compose([T.Resize((resize, resize)), T.RandomCrop(crop), T.RandomHorizontalFlip()] + to_input)
    test_crop = T.TenCrop(crop) if args.ten_crop else T.CenterCrop(crop)
    test = T.Compose([T.Resize((resize, resize)), test_crop] + to_input)
    how = "10 crops averaged" if args.ten_crop else "the centre crop"
    return train, test, (f"resized to {resize}x{resize}, random {crop}x{crop} crops and flips; "
                         f"tested on {how}; ImageNet mean/std")


class _SampleErrors:
    """A dataset whose samples that cannot be read (a 0-byte or undecodable image: ValueError,
    OSError) stop training with a one-line UsageError naming the sample, not a traceback."""

    def __init__(self, dataset, name):
        self.dataset, self.name = dataset, name

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except (ValueError, OSError) as exc:
            raise UsageError(f"--dataset {self.name}: sample {index} cannot be read: {exc}") from exc


def _limit(dataset, n):
    from .data import Subset
    return Subset(dataset, range(min(n, len(dataset)))) if n is not None else dataset


class FitImages:
    """Per-sample transform: a uint8 (H, W) or (H, W, 3) image -> the model's size and channels.

    Size: zero padding when the target is at most 8 pixels larger (MNIST 28 -> 32
    for LeNet-5, as the notes do), else an OpenCV resize ('area' when shrinking).
    Channels: grey -> 3 by repeating, colour -> grey by OpenCV's luminance.
    """

    def __init__(self, size=None, channels=None):
        self.size, self.channels = size, channels      # None: keep the image's own

    def __call__(self, img):
        from .data import transforms as T
        img = np.asarray(img)
        if self.size is not None and img.shape[:2] != (self.size, self.size):
            h, w = img.shape[:2]
            dh, dw = self.size - h, self.size - w
            if 0 <= dh <= 8 and 0 <= dw <= 8 and dh % 2 == 0 and dw % 2 == 0:
                img = T.pad(img, (dw // 2, dh // 2))
            else:
                shrink = self.size < min(h, w)
                img = T.resize(img, (self.size, self.size), "area" if shrink else "bilinear")
        if self.channels == 3 and img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif self.channels == 1 and img.ndim == 3:
            import cv2
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        return img


# ================================================================ model
def _builder(name):
    import models
    try:
        return models.builder(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _first_conv_channels(model):
    for m in model.modules():
        if hasattr(m, "in_channels") and isinstance(getattr(m, "in_channels"), int):
            return m.in_channels
    return None


def build_model(name, image_shape, num_classes, image_size=None):
    """(model, FitImages transform, (C, H, W) the model sees) for dataset images of ``image_shape``.

    ``in_channels`` / ``in_features`` are passed when the builder has them;
    otherwise images are converted to what the first convolution takes.
    """
    builder = _builder(name)
    params = inspect.signature(builder).parameters
    channels = 1 if len(image_shape) == 2 else image_shape[2]
    size = image_size or NATIVE_SIZE.get(name) or image_shape[0]
    options = {"num_classes": num_classes} if "num_classes" in params else {}
    if "in_channels" in params:
        options["in_channels"] = channels
    if "in_features" in params:
        options["in_features"] = channels * size * size
    model = builder(**options)
    want = _first_conv_channels(model) if "in_channels" not in params and "in_features" not in params else None
    if want not in (None, channels):
        if want not in (1, 3):
            raise UsageError(f"{name} takes {want}-channel images; the dataset's have {channels}")
        channels = want
    return model, FitImages(size, channels), (channels, size, size)


def check_model_input(model, name, chw, num_classes):
    """Run a zero batch through ``model`` (eval mode, no_grad); a clear error if it fails."""
    import tinydl as td
    was = model.training
    model.eval()
    try:
        with td.no_grad():
            out = model(td.zeros(2, *chw))
    except Exception as exc:
        raise UsageError(f"model {name} cannot take {chw[0]}x{chw[1]}x{chw[2]} images ({type(exc).__name__}: "
                         f"{exc}); try --image-size with the size it was built for") from exc
    finally:
        model.train(was)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    if getattr(logits, "shape", None) != (2, num_classes):
        raise UsageError(f"model {name} outputs shape {getattr(logits, 'shape', type(logits).__name__)} for a "
                         f"batch of 2, not (2, {num_classes}) class scores: `tinydl train` trains classifiers")


def classifier_head(model):
    """(name, module) of the model's last Linear layer, the classifier fine-tuning replaces
    (ResNet's ``fc``, VGG's ``classifier.6``); (None, None) when it has none."""
    from .nn import Linear
    found = (None, None)
    for name, module in model.named_modules():
        if isinstance(module, Linear):
            found = (name, module)
    return found


def load_pretrained(model, name, path):
    """Load the weights in ``path`` into ``model`` for fine-tuning. The classifier head is
    taken from the file only when its shape fits (the same classes); otherwise it keeps
    its fresh initialisation, as ``model.fc = nn.Linear(2048, 200)`` would give in PyTorch.
    Returns a description; weights that do not fit the rest of the model are a UsageError."""
    from .utils.pretrained import load_state_dict_file
    try:
        state = load_state_dict_file(path)
    except ValueError as exc:
        raise UsageError(f"--weights: {exc}") from None
    own = model.state_dict()
    head, _ = classifier_head(model)
    prefix = f"{head}." if head else None
    skipped = [k for k in state if prefix and k.startswith(prefix) and k in own
               and tuple(state[k].shape) != tuple(own[k].shape)]
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in skipped},
                                                    strict=False)
    except (KeyError, RuntimeError, ValueError) as exc:    # shapes that differ outside the head
        raise UsageError(f"--weights {path} do not fit {name}: {' '.join(str(exc).split())[:400]}") from None
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        keys = ", ".join(missing[:3] + unexpected[:3])
        raise UsageError(f"--weights {path} do not fit {name}: {len(missing)} of its tensors are not in the "
                         f"file and {len(unexpected)} of the file's are not in the model (e.g. {keys})")
    if skipped:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} -> {tuple(own[k].shape)}" for k in skipped)
        return f"loaded {len(state) - len(skipped)} tensors from {path}; new head {head} ({shapes})"
    return f"loaded all {len(state)} tensors from {path}"


def param_groups(model, name, backbone_lr):
    """The optimizer's parameters: one group, or with ``backbone_lr`` two -- the classifier
    head (at the optimizer's lr) and every other parameter (at ``backbone_lr``)."""
    if backbone_lr is None:
        return list(model.parameters())
    head, module = classifier_head(model)
    if module is None:
        raise UsageError(f"--backbone-lr: {name} has no Linear classifier head to train at --lr")
    ids = {id(p) for p in module.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in ids]},
            {"params": [p for p in model.parameters() if id(p) not in ids], "lr": backbone_lr}]


# ================================================================ optimizer and schedule
def build_optimizer(args, params):
    """The optimizer of ``--optimizer`` (momentum = SGD with momentum 0.9)."""
    from . import optim
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    wd = args.weight_decay
    name = args.optimizer
    if name in ("sgd", "momentum", "nesterov"):
        momentum = args.momentum if args.momentum is not None else (0.0 if name == "sgd" else 0.9)
        if name == "nesterov" and momentum <= 0:
            raise UsageError("--optimizer nesterov needs --momentum > 0")
        return optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov", weight_decay=wd)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=args.momentum or 0.0, weight_decay=wd)
    if args.momentum:
        raise UsageError(f"--momentum does not apply to --optimizer {name}")
    if name in ("adam", "adamw"):       # with --cuda-graph: its step count on the device
        cls = optim.Adam if name == "adam" else optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, capturable=bool(getattr(args, "cuda_graph", False)))
    cls = {"adagrad": optim.Adagrad, "adadelta": optim.Adadelta}[name]
    return cls(params, lr=lr, weight_decay=wd)


def build_scheduler(args, optimizer):
    """(scheduler or None, description) of ``--schedule``."""
    from .optim import lr_scheduler as S
    kind, epochs = args.schedule, args.epochs
    if kind == "none":
        return None, "constant lr"
    if kind == "step":
        step, gamma = args.step_size or max(1, epochs // 3), args.gamma if args.gamma is not None else 0.1
        return S.StepLR(optimizer, step_size=step, gamma=gamma), f"lr x{gamma:g} every {step} epochs"
    if kind == "multistep":
        milestones = args.milestones or sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)})
        gamma = args.gamma if args.gamma is not None else 0.1
        return S.MultiStepLR(optimizer, milestones, gamma=gamma), f"lr x{gamma:g} at epochs {milestones}"
    if kind == "exp":
        gamma = args.gamma if args.gamma is not None else 0.9
        return S.ExponentialLR(optimizer, gamma=gamma), f"lr x{gamma:g} every epoch"
    if kind == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=epochs), f"cosine to 0 over {epochs} epochs"
    if kind == "plateau":
        gamma = args.gamma if args.gamma is not None else 0.1
        patience = args.patience if args.patience is not None else 2
        return (S.ReduceLROnPlateau(optimizer, factor=gamma, patience=patience),
                f"lr x{gamma:g} after {patience} epochs without a better test loss")
    raise UsageError(f"unknown schedule {kind!r}; choose from {', '.join(SCHEDULES)}")


# ================================================================ the command
def _config(args):
    return {k: v for k, v in vars(args).items() if k != "command"}


def _check_resume_config(saved, config, path):
    diffs = [f"--{k.replace('_', '-')} {saved[k]!r} (now {config.get(k)!r})" for k in sorted(saved)
             if k not in _RESUME_FREE and saved.get(k) != config.get(k)]
    if diffs:
        raise UsageError(f"--resume: {path} was trained with different settings: {'; '.join(diffs)}. "
                         "Resume with the run's own flags (only --epochs, --device, --out, --data-dir, "
                         "--workers may change)")


# (flag, what it must be, test) for the numeric flags; None (not given) always passes.
_FLAG_RULES = (
    ("epochs", ">= 1", lambda v: v >= 1), ("batch_size", ">= 1", lambda v: v >= 1),
    ("lr", ">= 0 and finite", lambda v: 0 <= v < np.inf),
    ("momentum", ">= 0 and finite", lambda v: 0 <= v < np.inf),
    ("weight_decay", ">= 0 and finite", lambda v: 0 <= v < np.inf),
    ("gamma", "> 0 and finite", lambda v: 0 < v < np.inf),
    ("step_size", ">= 1", lambda v: v >= 1), ("patience", ">= 0", lambda v: v >= 0),
    ("image_size", f"in 1..{MAX_IMAGE_SIZE}", lambda v: 1 <= v <= MAX_IMAGE_SIZE),
    ("workers", ">= 0", lambda v: v >= 0),
    ("train_size", ">= 1 (leave it out to use every image)", lambda v: v >= 1),
    ("test_size", ">= 1 (leave it out to use every image)", lambda v: v >= 1),
    ("early_stop", ">= 1 epochs", lambda v: v >= 1),
    ("backbone_lr", ">= 0 and finite", lambda v: 0 <= v < np.inf),
    ("resize", f"in 1..{MAX_IMAGE_SIZE}", lambda v: 1 <= v <= MAX_IMAGE_SIZE),
    ("test_batch_size", ">= 1", lambda v: v >= 1),
    ("milestones", "positive epochs in increasing order",
     lambda v: all(m >= 1 for m in v) and all(a < b for a, b in zip(v, v[1:]))),
)

# Flags only some schedules read: (flag, the schedules that read it). Given with another
# schedule they would be silently ignored, so they are refused.
_SCHEDULE_FLAGS = (("step_size", ("step",)), ("milestones", ("multistep",)),
                   ("gamma", ("step", "multistep", "exp", "plateau")), ("patience", ("plateau",)))


def check_flags(args, rules):
    """UsageError (one line) for the first flag of ``rules`` (flag, what it must be, test)
    whose value fails its test; flags not given (None) pass."""
    for name, rule, ok in rules:
        value = getattr(args, name, None)
        if value is not None and not ok(value):   # NaN fails every comparison: refused too
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            raise UsageError(f"--{name.replace('_', '-')} must be {rule}, got {shown}")


def check_args(args):
    """Refuse flag values that cannot work, before anything is loaded (one line each)."""
    from .backend import parse_device
    check_flags(args, _FLAG_RULES)
    for flag, schedules in _SCHEDULE_FLAGS:
        if getattr(args, flag, None) is not None and args.schedule not in schedules:
            raise UsageError(f"--{flag.replace('_', '-')} applies to --schedule {' or '.join(schedules)} "
                             f"(not {args.schedule}): it would be ignored")
    if getattr(args, "patience", None) is None and hasattr(args, "schedule"):
        args.patience = 2      # its default, set after the check (checkpoints' configs hold 2, as before)
    try:
        parse_device(args.device)
    except ValueError:
        raise UsageError(f"--device {args.device!r}: expected cpu, cuda or cuda:N") from None
    if getattr(args, "cudnn", False) and not str(args.device).startswith("cuda"):
        raise UsageError(f"--cudnn needs --device cuda (not {args.device})")
    if getattr(args, "cuda_graph", False):
        for refused, need in ((not str(args.device).startswith("cuda"), f"--device cuda (not {args.device})"),
                              (args.optimizer not in ("sgd", "momentum", "nesterov", "adam", "adamw"),
                               f"--optimizer sgd, momentum, nesterov, adam or adamw (not {args.optimizer})"),
                              (args.detect_anomaly, "no --detect-anomaly"), (args.distributed, "no --distributed")):
            if refused:
                raise UsageError(f"--cuda-graph needs {need}")
    for flag in ("resize", "ten_crop"):
        if getattr(args, flag, None) and args.dataset != "cub200":
            raise UsageError(f"--{flag.replace('_', '-')} applies to --dataset cub200 (resize, crop, 10-crop test)")


def check_out(out, overwrite, resume):
    """A new run never replaces a finished one: refuse a folder that holds a run unless
    ``--resume`` continues that very run or ``--overwrite`` replaces it; and refuse it early
    when it cannot be written."""
    from .train import CHECKPOINT_NAME, RunFolderError, check_run_paths, check_writable, run_files, run_holder
    holder = run_holder(out) if os.path.isdir(out) else None
    if holder is not None:     # (the Trainer claims the folder for the run's life; this refuses early)
        who = f"process {holder}" if holder > 0 else "another process"
        raise UsageError(f"--out {out} already holds a run in progress ({who}): wait for it to end, or choose "
                         "another --out")
    found = run_files(out)
    own = os.path.abspath(os.path.join(out, CHECKPOINT_NAME))
    continues = resume is True or (bool(resume) and os.path.abspath(resume) == own)
    if found and not (overwrite or continues):
        raise UsageError(f"--out {out} already holds a run ({', '.join(found)}): continue it with --resume, "
                         "replace it with --overwrite, or choose another --out")
    try:
        check_run_paths(out)
        check_writable(out)
    except RunFolderError as exc:
        raise UsageError(f"--out: {exc}") from None


# ================================================================ data-parallel runs
def _join_job(args):
    """(rank, world size) of this process in the MPI job of a ``--distributed`` run.

    Backend 'nccl' with --device cuda (each rank on GPU <local rank>), else 'mpi';
    each rank's Numba and BLAS threads default to its node's cores / ranks.
    """
    from . import distributed as dist
    if not dist.launched_by_mpi():
        raise UsageError("--distributed: start the processes with MPI, e.g. `mpiexec -n 2 tinydl train ... "
                         "--distributed` (pip install 'tinydl[dist]' provides mpiexec)")
    if not dist.is_mpi_available():
        raise UsageError("--distributed needs mpi4py: pip install 'tinydl[dist]'")
    cuda = str(args.device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "mpi")
    if cuda:
        args.device = f"cuda:{dist.get_node_local_rank()}"
    _share_cores(dist.get_node_local_world_size())
    return dist.get_rank(), dist.get_world_size()


def _share_cores(ranks_here):
    """Numba's and OpenBLAS's threads: the cores this process may use, divided among the ranks on
    this node (unless the launcher bound each rank to its own cores, or NUMBA_NUM_THREADS is set)."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = cores if cores < os.cpu_count() else max(1, cores // ranks_here)
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:      # scikit-learn's dependency, so part of [train]
        return
    threadpool_limits(threads, user_api="blas")


def _report_and_stop(args, text, code):
    """Print ``text`` to stderr and return ``code``; in a job of several processes, end all of them.

    A rank waiting in a collective would wait forever for one that failed, so the
    failing rank calls MPI_Abort, which ends every process of the job. Rank 0
    reports at once; another rank first waits a second, so that an error every
    rank meets (bad flags, a bad checkpoint) is printed once, by rank 0.
    """
    from . import distributed as dist
    if not (getattr(args, "distributed", False) and dist.is_initialized() and dist.get_world_size() > 1):
        print(text, file=sys.stderr)
        return code
    rank = dist.get_rank()
    if rank != 0:
        time.sleep(1.0)
    print(f"[rank {rank} of {dist.get_world_size()}] {text}", file=sys.stderr, flush=True)
    time.sleep(0.5)          # mpiexec forwards our output asynchronously; MPI_Abort would cut it off
    from mpi4py import MPI
    MPI.COMM_WORLD.Abort(code)
    return code


def train(args):
    """Run ``tinydl train`` with parsed ``args``; returns the history (list of per-epoch dicts)."""
    check_args(args)
    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}")
    made = not os.path.lexists(out)
    try:
        check_out(out, args.overwrite, args.resume)
        return _train_into(out, args)
    except BaseException:
        if made:      # a run that fails before writing anything leaves no empty folder behind
            try:
                os.rmdir(out)
            except OSError:    # it holds files (a run's epochs): kept
                pass
        raise


def _train_into(out, args):
    """``train`` after the flags and ``out`` are checked."""
    import tinydl as td
    from .data import DataLoader, DistributedSampler, Subset
    from .train import CHECKPOINT_NAME, Trainer

    if str(args.device).startswith("cuda") and not td.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is usable here ({td.backend._cupy_error or 'no GPU'}); "
                         "install the [gpu] extra (CuPy) on a machine with an NVIDIA GPU, or use --device cpu")
    if args.cudnn:             # the user's process-wide choice, as torch.backends.cudnn.enabled
        if not td.backends.cudnn.is_available():
            from .kernels import cudnn
            raise UsageError(f"--cudnn: cuDNN cannot run here ({cudnn.why_unavailable() or 'no GPU'})")
        td.backends.cudnn.enabled = True
    td.backends.cpu.tune()     # the process-wide CPU settings (sleeping OpenMP threads, ...): see its docstring
    if args.sync_bn and not args.distributed:
        raise UsageError("--sync-bn synchronises batch norm across the processes of a --distributed run")
    rank, world = _join_job(args) if args.distributed else (0, 1)
    if args.batch_size % world:
        raise UsageError(f"--batch-size {args.batch_size} is the global batch: it must be a multiple of the "
                         f"{world} processes")
    say = print if rank == 0 else (lambda *a, **k: None)     # one report per job
    td.manual_seed(args.seed)
    fit = FitImages()
    try:
        train_set, test_set, num_classes, about = _load_dataset(args, fit)
    except ValueError as exc:     # files that are not the dataset's (checked at load): one line
        raise UsageError(f"--dataset {args.dataset}: {exc}") from exc
    train_set, test_set = _limit(train_set, args.train_size), _limit(test_set, args.test_size)
    for split, images in (("train", train_set), ("test", test_set)):
        if len(images) == 0:      # refused before training, not after an epoch (or as an IndexError)
            raise UsageError(f"--dataset {args.dataset}: the {split} split has no images ({about})")
    if args.dataset == "cub200":      # its samples are normalised CHW Tensors already: (crop, crop, RGB)
        image_shape = (cub_sizes(args)[1],) * 2 + (3,)
    else:
        image_shape = np.asarray(train_set[0][0]).shape       # ``fit`` is still the identity here
    model, adapted, chw = build_model(args.model, image_shape, num_classes, args.image_size)
    fit.size, fit.channels = adapted.size, adapted.channels     # the datasets hold ``fit``: adapt in place
    if args.dataset == "cub200":
        if chw[0] != 3:
            raise UsageError(f"{args.model} takes {chw[0]}-channel images; CUB-200's are colour (RGB)")
    check_model_input(model, args.model, chw, num_classes)
    if args.weights and not args.resume:   # a resumed run takes every weight from its checkpoint
        say(load_pretrained(model, args.model, args.weights))
    groups = param_groups(model, args.model, args.backbone_lr)
    if args.sync_bn:
        model = td.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(args.device)
    if args.distributed:       # rank 0's weights everywhere; gradients averaged in backward
        model = td.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(args, groups)
    scheduler, schedule_about = build_scheduler(args, optimizer)
    # The loader's seed comes from the seeded generator: the data order is a function of --seed.
    # In a distributed run each rank takes its share of every epoch's order, and of the test set.
    sampler = DistributedSampler(train_set, world, rank, seed=args.seed % 2**63) if args.distributed else None
    train_loader = DataLoader(_SampleErrors(train_set, args.dataset), batch_size=args.batch_size // world,
                              shuffle=sampler is None, sampler=sampler, num_workers=args.workers)
    my_test = Subset(test_set, range(rank, len(test_set), world)) if world > 1 else test_set
    # large CUB images (10 crops each with --ten-crop) are tested in training-sized batches
    test_batch = args.test_batch_size or (args.batch_size if args.dataset == "cub200" else max(args.batch_size, 256))
    test_loader = DataLoader(_SampleErrors(my_test, args.dataset), batch_size=test_batch, num_workers=args.workers,
                             seed=0)

    config = _config(args)
    config["title"] = f"{args.model} on {args.dataset}"
    try:
        trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler, device=args.device,
                          out=out, progress=args.progress, log=say, seed=args.seed, config=config,
                          overwrite=args.overwrite, detect_anomaly=args.detect_anomaly,
                          early_stopping_patience=args.early_stop, cuda_graph=args.cuda_graph)
    except ValueError as exc:       # what the model cannot do (--cuda-graph with BN momentum None...): one line
        raise UsageError(str(exc).replace("Trainer: cuda_graph", "--cuda-graph")) from None
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{about}: {len(train_set):,} train / {len(test_set):,} test images, fed as "
        f"{chw[0]}x{chw[1]}x{chw[2]}")
    lrs = f"lr {optimizer.param_groups[0]['lr']:g}" + (
        f" (head), {optimizer.param_groups[1]['lr']:g} (backbone)" if len(optimizer.param_groups) > 1 else "")
    say(f"model {args.model}: {n_params:,} parameters, device {args.device}; optimizer "
        f"{type(optimizer).__name__} {lrs}; {schedule_about}")
    if args.distributed:
        import numba
        say(f"data-parallel on {world} process{'es' if world > 1 else ''} ({td.distributed.get_backend()}), "
            f"{numba.get_num_threads()} thread(s) each; batch {args.batch_size} = {world} x "
            f"{args.batch_size // world}" + ("; batch norm over the global batch" if args.sync_bn else ""))
    if args.resume:
        path = args.resume if isinstance(args.resume, str) else os.path.join(out, CHECKPOINT_NAME)
        state = trainer.read_checkpoint(path)
        trainer.check_state(state, source=f"the checkpoint {path}")     # every entry's type and range
        trainer.check_world_size(state, source=f"the checkpoint {path}")
        _check_resume_config(state.get("config") or {}, config, path)
        trainer.load_state_dict(state, source=f"the checkpoint {path}")
        trainer.resumed_from(path)
        trainer.config = config
        say(f"resumed from {path} after epoch {trainer.epoch} (lr now {optimizer.param_groups[0]['lr']:g})")
        if trainer.epoch >= args.epochs:
            say(f"the checkpoint has {trainer.epoch} epochs already (--epochs {args.epochs}): nothing to train")
    start = trainer.epoch
    try:
        history = trainer.fit(args.epochs)
    except KeyboardInterrupt:
        raise Interrupted(trainer.interrupt_report()) from None
    if trainer.epoch > start:      # (a finished run resumed trains and writes nothing)
        say(f"wrote {out}/log.csv, log.json, curves.png, {CHECKPOINT_NAME}")
    if history:
        say(f"final test accuracy: {100 * history[-1]['test_acc']:.2f}%")
    return history


def _input_size(args, model):
    """(C, H, W) of ``--input-size``, else the size the net is built for; else MNIST's
    for grey nets, CIFAR's for colour ones."""
    if args.input_size:
        return tuple(args.input_size)
    channels = _first_conv_channels(model) or 1
    size = NATIVE_SIZE.get(args.model) or (32 if channels == 3 else 28)
    print(f"input {channels}x{size}x{size} (pass --input-size C H W for another)")
    return (channels, size, size)


# summary's and gradcheck's flags (train's are _FLAG_RULES)
_MODEL_FLAG_RULES = (
    ("batch_size", f"in 1..{MAX_IMAGE_SIZE}", lambda v: 1 <= v <= MAX_IMAGE_SIZE),
    ("num_classes", "in 1..1000000", lambda v: 1 <= v <= 10**6),
    ("input_size", f"1 to 3 sizes (C H W) in 1..{MAX_IMAGE_SIZE}",
     lambda v: 1 <= len(v) <= 3 and all(1 <= n <= MAX_IMAGE_SIZE for n in v)),
    ("nsamples", ">= 1", lambda v: v >= 1), ("eps", "> 0 and finite", lambda v: 0 < v < np.inf),
)
_MAX_INPUT_VALUES = 2**28      # one forward's input (1 GiB of float32): beyond it, refused up front


def _check_model_flags(args):
    check_flags(args, _MODEL_FLAG_RULES)
    size = int(np.prod(args.input_size, dtype=np.int64)) * args.batch_size if args.input_size else 0
    if size > _MAX_INPUT_VALUES:
        raise UsageError(f"--input-size {' '.join(map(str, args.input_size))} with --batch-size {args.batch_size} "
                         f"is {size:,} input values, more than {_MAX_INPUT_VALUES:,}: give a smaller size")


def _cannot_take(name, shape, exc):
    """The UsageError of a network that cannot take an input of ``shape``: the layer's message."""
    return UsageError(f"model {name} cannot take a {'x'.join(map(str, shape))} input ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:400]}); try --input-size C H W")


def summary_command(args):
    """``tinydl summary MODEL``: per-layer shapes, parameters, memory, FLOPs, receptive fields."""
    from .utils.summary import summary
    _check_model_flags(args)
    builder = _builder(args.model)
    options = {"num_classes": args.num_classes} if args.num_classes is not None else {}
    model = builder(**options)
    chw = _input_size(args, model)
    try:
        summary(model, chw, batch_size=args.batch_size)
    except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise _cannot_take(args.model, (args.batch_size, *chw), exc) from None
    return 0


def gradcheck_command(args):
    """``tinydl gradcheck MODEL``: every parameter's gradient against central differences,
    in float64 on a small random batch; exit status 1 when one disagrees."""
    import tinydl as td
    from .nn.layers import _DropoutNd
    from .utils.gradcheck import gradcheck_module
    _check_model_flags(args)
    builder = _builder(args.model)
    options = {"num_classes": args.num_classes} if "num_classes" in inspect.signature(builder).parameters else {}
    model = builder(**options)
    chw = _input_size(args, model)
    for m in model.modules():
        if isinstance(m, _DropoutNd):
            m.eval()            # a new mask per call would make finite differences measure noise
    td.manual_seed(args.seed)
    x = td.randn(args.batch_size, *chw)
    try:
        with td.no_grad():
            model(x)
    except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise _cannot_take(args.model, x.shape, exc) from None
    print(f"{args.model}: each parameter's gradient against central differences (eps {args.eps:g}), float64, "
          f"batch {'x'.join(map(str, x.shape))}, {args.nsamples} random elements per tensor, a random "
          "upstream gradient on the output; dropout off")
    report = gradcheck_module(model, x, nsamples=args.nsamples, eps=args.eps, seed=args.seed,
                              raise_exception=False)
    return 0 if report.ok else 1


def make_parser():
    parser = argparse.ArgumentParser(prog="tinydl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("train", help="train a model of the zoo on an image-classification set",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default="mlp", help="zoo name (default: mlp, the notes' 784-784-10)")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", default=None,
                   help="folder with the dataset's files (default: $TINYDL_DATA or ~/.cache/tinydl, + the "
                        "dataset's name)")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files (needs network)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="momentum",
                   help="momentum = SGD with momentum 0.9 (default); sgd = plain SGD")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.05 for the SGDs, 1e-3 Adam/RMSprop, 0.01 Adagrad, 1 Adadelta)")
    p.add_argument("--momentum", type=float, default=None,
                   help="SGD/RMSprop momentum (default: 0.9 for momentum/nesterov, 0 otherwise)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    p.add_argument("--schedule", choices=SCHEDULES, default="none", help="learning-rate schedule (per epoch)")
    p.add_argument("--step-size", type=int, default=None, help="step: epochs between decays (default epochs/3)")
    p.add_argument("--gamma", type=float, default=None,
                   help="decay factor (default 0.1 for step/multistep/plateau, 0.9 for exp)")
    p.add_argument("--milestones", type=int, nargs="+", default=None,
                   help="multistep: the epochs after which the lr decays (default: 1/2 and 3/4 of --epochs)")
    p.add_argument("--patience", type=int, default=None,
                   help="plateau: epochs without improvement before a decay (default 2)")
    p.add_argument("--early-stop", type=int, default=None, metavar="N",
                   help="stop when the test loss has not improved for N epochs")
    p.add_argument("--image-size", type=int, default=None,
                   help="feed the model SIZE x SIZE images (cub200: the crop, default 448)")
    p.add_argument("--resize", type=int, default=None,
                   help="cub200: resize images to N x N before cropping (default 512 for a 448 crop)")
    p.add_argument("--ten-crop", action="store_true",
                   help="cub200: test on 10 crops (corners + centre, and mirrored) and average the outputs")
    p.add_argument("--test-batch-size", type=int, default=None,
                   help="images per test batch (default: max(--batch-size, 256); cub200: --batch-size)")
    p.add_argument("--weights", default=None, metavar="NPZ",
                   help="start from these weights (tinydl convert-weights); a head of another shape is "
                        "left fresh for the dataset's classes")
    p.add_argument("--backbone-lr", type=float, default=None,
                   help="learning rate of every parameter but the classifier head (which trains at --lr)")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-size", type=int, default=None, help="use only the first N test images")
    p.add_argument("--workers", type=int, default=0, help="threads that load batches ahead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from OUT/checkpoint.npz (or CHECKPOINT) up to --epochs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, tinydl train refuses to)")
    p.add_argument("--detect-anomaly", action="store_true",
                   help="stop at the first backward giving NaN/Inf, naming the op and where its forward ran "
                        "(slower: a debugging aid)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="on cuda, capture each training step as a CUDA graph and replay it (one launch instead "
                        "of about a thousand; sgd/momentum/nesterov/adam/adamw, no --distributed)")
    p.add_argument("--cudnn", action="store_true",
                   help="on cuda, run the convolutions on NVIDIA's cuDNN (pip install 'tinydl[gpu-cudnn]'; "
                        "td.backends.cudnn.enabled)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes mpiexec started (mpiexec -n 2 tinydl train ... "
                        "--distributed); --batch-size is then the global batch, split among them")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --distributed: batch-norm statistics over the global batch (SyncBatchNorm)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_parser("list", help="list the zoo's model names")
    s = sub.add_parser("summary", help="per-layer output shapes and parameter counts of a zoo model")
    s.add_argument("model")
    s.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                   help="C H W of one input (default: the size the model is built for)")
    s.add_argument("--batch-size", type=int, default=1, help="batch of the forward (memory, FLOPs)")
    s.add_argument("--num-classes", type=int, default=None, help="classes of the model's head")
    c = sub.add_parser("convert-weights", help="PyTorch .pth weights -> tinydl .npz (read by torch, weights only)")
    c.add_argument("src", help="a .pth / .pt state dict (e.g. torchvision's)")
    c.add_argument("dst", help="the .npz to write")
    c.add_argument("--force", action="store_true", help="replace DST if it exists")
    g = sub.add_parser("gradcheck", help="check a zoo model's gradients against finite differences (float64)")
    g.add_argument("model")
    g.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                   help="C H W of one input (default: the size the model is built for)")
    g.add_argument("--batch-size", type=int, default=2, help="images in the batch (default 2)")
    g.add_argument("--num-classes", type=int, default=10, help="classes of the model's head (default 10)")
    g.add_argument("--nsamples", type=int, default=6, help="elements checked per parameter tensor (default 6)")
    g.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    g.add_argument("--seed", type=int, default=0, help="seeds the input, the upstream gradient and the samples")
    return parser


def convert_weights_command(args):
    """``tinydl convert-weights SRC DST``."""
    from .utils.pretrained import convert_torch_weights
    try:
        tensors, values, skipped = convert_torch_weights(args.src, args.dst, overwrite=args.force)
    except (ImportError, ValueError, FileExistsError, FileNotFoundError) as exc:
        raise UsageError(str(exc).replace("convert-weights: ", "", 1)) from None
    print(f"wrote {args.dst}: {tensors} tensors, {values:,} values" + (
        f"; skipped {len(skipped)} entries that are not tensors (nested or plain values: "
        f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})" if skipped else ""))
    return 0


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .autograd import AnomalyError
    from .cuda import GraphCaptureError
    from .train import CheckpointError, RunFolderError
    try:
        if args.command == "list":
            import models
            print("\n".join(models.list()))
            return 0
        if args.command == "summary":
            return summary_command(args)
        if args.command == "convert-weights":
            return convert_weights_command(args)
        if args.command == "gradcheck":
            return gradcheck_command(args)
        train(args)
    except (UsageError, CheckpointError, RunFolderError, FileNotFoundError, FloatingPointError,
            AnomalyError, GraphCaptureError) as exc:   # AnomalyError: one line, then the forward's traceback asked for
        # what a user can fix: one line, no traceback
        return _report_and_stop(args, f"tinydl {args.command}: error: {exc}", 2)
    except (Interrupted, KeyboardInterrupt) as exc:     # Ctrl-C: one line, the shell's status for SIGINT
        return _report_and_stop(args, f"tinydl {args.command}: {str(exc) or 'interrupted'}", 130)
    except BaseException:
        if not getattr(args, "distributed", False):
            raise
        return _report_and_stop(args, traceback.format_exc().rstrip(), 1)
    return 0


def console_main():
    """The ``tinydl`` command (and ``python -m tinydl.cli``): ``main()``, which the tests
    call in-process. ``train`` on an Intel AVX-512 core first starts the same command
    again with wider vectors for Numba's kernels (td.backends.cpu.wide_vector_environment):
    Numba fixes its CPU features when ``import tinydl`` decorates them, so only a new
    process can have them. The same process id, so mpiexec keeps its ranks."""
    if sys.argv[1:2] == ["train"] and _can_start_again():
        from .backends.cpu import wide_vector_environment
        try:
            environment = wide_vector_environment()
        except Exception:           # the probe could not compile (NUMBA_DISABLE_JIT...): train as we are
            environment = None
        if environment is not None:
            sys.stdout.flush()      # what is buffered dies with this process image
            sys.stderr.flush()
            os.execve(sys.executable, sys.orig_argv, environment)
    sys.exit(main())


def _can_start_again():
    """Would running ``sys.orig_argv`` again run this same command? Not where the caller
    changed ``sys.argv`` (a script calling console_main), nor off POSIX, where exec is a
    new process that the shell does not wait for."""
    tail = sys.orig_argv[len(sys.orig_argv) - len(sys.argv) + 1:]
    return os.name == "posix" and bool(sys.executable) and tail == sys.argv[1:]


if __name__ == "__main__":
    console_main()
