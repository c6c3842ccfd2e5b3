"""The model zoo: every network of the notes, one file per family.

``models.create('mlp', num_classes=10)`` builds a network by name;
``models.list()`` names them all. Each family file registers its builders with
``@register``.
"""
import importlib

_REGISTRY = {}
_FAMILIES = ["mlp", "lenet", "alexnet", "vgg", "nin", "inception", "resnet", "mobilenet",
             "spp", "fcn", "faster_rcnn", "superpoint", "deep_snake", "bilinear_cnn"]


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


def create(name, **options):
    return builder(name)(**options)
