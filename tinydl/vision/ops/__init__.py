"""Vision ops with torchvision.ops' names and semantics.

Boxes are ``(x1, y1, x2, y2)`` in pixels, without the old "+1" convention
(a box from x=2 to x=5 is 3 wide), as in torchvision.

    from tinydl.vision.ops import box_iou, nms, roi_pool
"""
from .boxes import *  # noqa: F401,F403
from .roi import *  # noqa: F401,F403
from .anchors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .contour import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from .selective_search import *  # noqa: F401,F403
from .roi_pyramid import *  # noqa: F401,F403
