"""Vision: detection/segmentation/keypoint ops (``tinydl.vision.ops``) and task metrics."""
from . import ops  # noqa: F401
