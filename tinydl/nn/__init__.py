"""Layers with parameters (Modules) built on the functional ops."""
from .parameter import *       # noqa: F401,F403  Parameter
from .module import *          # noqa: F401,F403  Module
from .containers import *      # noqa: F401,F403  Sequential, ModuleList, ModuleDict
from .layers import *          # noqa: F401,F403  Identity, Linear, Dropout, Flatten
from .activation import *      # noqa: F401,F403  ReLU, GELU, PReLU, Softmax, ...
from .conv import *            # noqa: F401,F403  Conv2d, ConvTranspose2d
from .pooling import *         # noqa: F401,F403  MaxPool2d, AvgPool2d, MaxUnpool2d, adaptive pools
from .normalization import *   # noqa: F401,F403  BatchNorm1d/2d, SyncBatchNorm, LocalResponseNorm
from .resample import *        # noqa: F401,F403  Upsample, PixelShuffle, PixelUnshuffle
from .loss import *            # noqa: F401,F403  CrossEntropyLoss, MSELoss, ...
from .sparse import *          # noqa: F401,F403  Embedding
from .fold import *            # noqa: F401,F403  Unfold, Fold
from .distance import *        # noqa: F401,F403  CosineSimilarity, PairwiseDistance
from .volumetric import *      # noqa: F401,F403  Conv3d, ConvTranspose3d, MaxPool3d, ..., the Pad3d layers
from .rnn import *             # noqa: F401,F403  RNN, LSTM, GRU and their cells
from .attention import *       # noqa: F401,F403  MultiheadAttention, Transformer and its layers
from .extras import *          # noqa: F401,F403  ChannelShuffle, LPPool, Bilinear, RMSNorm, Lazy* modules
from . import functional, init, parallel, utils  # noqa: F401
