"""The model zoo: every network of the notes, one file per family.

``models.create('mlp', num_classes=10)`` builds a network by name;
``models.list()`` names them all. Each family file registers its builders with
``@register``.
"""
import importlib

_REGISTRY = {}
_FAMILIES = ["mlp", "lenet", "alexnet", "vgg", "nin", "inception", "resnet", "mobilenet",
             "spp", "fcn", "faster_rcnn", "fast_rcnn", "rcnn", "superpoint", "deep_snake", "bilinear_cnn"]


def register(fn):
    """Decorator: make ``fn`` buildable as ``models.create(fn.__name__)``."""
    _REGISTRY[fn.__name__] = fn
    return fn


def _load_all():
    for family in _FAMILIES:
        importlib.import_module(f"models.{family}")


def list():  # noqa: A001  (the zoo's public name, as in timm)
    _load_all()
    return sorted(_REGISTRY)


def builder(name):
    """The function that builds ``name`` (to inspect its options before calling it)."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name, weights=None, **options):
    """Build ``name`` with ``options``; ``weights``: a path to an .npz state dict (td.save's
    format, a tinydl training checkpoint, or a plain npz of arrays; torchvision's .pth
    files converted by ``tinydl convert-weights``) loaded into it with strict names and shapes."""
    model = builder(name)(**options)
    if weights is not None:
        from tinydl.utils.pretrained import load_state_dict_file
        state = load_state_dict_file(weights)
        try:
            model.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ValueError(f"models.create({name!r}, weights={str(weights)!r}): the weights do not fit "
                             f"the model: {str(exc).rstrip('.')}. To fine-tune with another number of "
                             f"classes, create the model with the weights' classes, then replace its "
                             f"head") from exc
    return model
