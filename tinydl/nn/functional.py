"""``tinydl.nn.functional`` (imported as F): the ops under PyTorch's names.

Nothing is implemented here; each family module in ``tinydl/ops`` lists its
public functions in ``__all__`` and they all meet in this namespace.
"""
from ..ops.math import *        # noqa: F401,F403  linear, ...
from ..ops.shape import *       # noqa: F401,F403
from ..ops.reduce import *      # noqa: F401,F403
from ..ops.activation import *  # noqa: F401,F403  relu, softmax, ...
from ..ops.loss import *        # noqa: F401,F403  cross_entropy, ...
from ..ops.dropout import *     # noqa: F401,F403  dropout, dropout2d
from ..ops.conv import *        # noqa: F401,F403  conv2d, conv_transpose2d
from ..ops.pool import *        # noqa: F401,F403  max_pool2d, ...
from ..ops.norm import *        # noqa: F401,F403  batch_norm, layer_norm, group_norm, instance_norm, ...
from ..ops.encoding import *    # noqa: F401,F403  one_hot
from ..ops.resample import *    # noqa: F401,F403  pad, interpolate, pixel_shuffle
from ..ops.grid_sample import grid_sample, affine_grid  # noqa: F401
from ..ops.embedding import *   # noqa: F401,F403  embedding
from ..ops.fold import *        # noqa: F401,F403  unfold, fold
from ..ops.distance import *    # noqa: F401,F403  cosine_similarity, pairwise_distance
from ..ops.volumetric import *  # noqa: F401,F403  conv3d, conv_transpose3d, max/avg/adaptive pool3d, max_unpool3d
from ..ops.extras import *      # noqa: F401,F403  channel_shuffle, lp_pool, bilinear, rms_norm, pdist, ...
from ..ops.attention import *   # noqa: F401,F403  scaled_dot_product_attention
