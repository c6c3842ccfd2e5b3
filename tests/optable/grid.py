"""Op table rows: grid_sample (every mode x padding_mode x align_corners, 4-D and 5-D) and affine_grid.

Grids are random, reach outside [-1, 1] (reflection: folded more than once) and so never
sit on a kink (a pixel centre for bilinear, a half-pixel for nearest, a clip or fold point):
there the one-sided derivative differs from the finite difference. The exact conventions at
those points are tested against PyTorch in tests/test_grid_sample.py.
"""
import itertools
import warnings

import torch.nn.functional as TF

import tinydl.ops.grid_sample as G
from optable import OpCase


def _quiet(fn):
    """PyTorch warns about align_corners left to its default and about one-pixel affine grids:
    not our concern."""
    def call(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args)
    return call


def sample(**kw):
    return (lambda x, g: G.grid_sample(x, g, **kw), _quiet(lambda x, g: TF.grid_sample(x, g, **kw)))


def image_and_grid(x_shape, grid_shape, reach=1.5):
    """A random input and a grid uniform in [-reach, reach]."""
    return lambda rng: [rng.standard_normal(x_shape), rng.uniform(-reach, reach, grid_shape)]


def sliced_image_and_grid(x_shape, grid_shape):
    """A non-contiguous input (every other row and column of a bigger array) and a transposed grid."""
    big = x_shape[:-2] + (2 * x_shape[-2], 2 * x_shape[-1])
    n, ho, wo, _ = grid_shape
    return lambda rng: [rng.standard_normal(big)[..., ::2, 1::2],
                        rng.uniform(-1.3, 1.3, (n, wo, ho, 2)).transpose(0, 2, 1, 3)]


def affine(size, **kw):
    return (lambda theta: G.affine_grid(theta, size, **kw), _quiet(lambda theta: TF.affine_grid(theta, size, **kw)))


def transformer(size, **kw):
    """A spatial transformer: warp x by theta, through affine_grid then grid_sample."""
    return (lambda x, theta: G.grid_sample(x, G.affine_grid(theta, size, align_corners=False), **kw),
            lambda x, theta: TF.grid_sample(x, TF.affine_grid(theta, size, align_corners=False), **kw))


def _reach(padding_mode):
    return 3.2 if padding_mode == "reflection" else 1.5


_TAG = {False: "", True: "_corners"}

CASES = [
    # ---- 4-D: every mode x padding x align_corners
    *[OpCase(f"grid_sample/{mode}_{pad}{_TAG[ac]}", *sample(mode=mode, padding_mode=pad, align_corners=ac),
             image_and_grid((2, 2, 3, 4), (2, 3, 5, 2), _reach(pad)))
      for mode, pad, ac in itertools.product(("bilinear", "nearest", "bicubic"),
                                             ("zeros", "border", "reflection"), (False, True))],
    # ---- 5-D: trilinear every padding x align_corners; nearest on two
    *[OpCase(f"grid_sample/5d_bilinear_{pad}{_TAG[ac]}", *sample(mode="bilinear", padding_mode=pad, align_corners=ac),
             image_and_grid((2, 2, 2, 3, 4), (2, 2, 2, 3, 3), _reach(pad)))
      for pad, ac in itertools.product(("zeros", "border", "reflection"), (False, True))],
    OpCase("grid_sample/5d_nearest_zeros", *sample(mode="nearest", padding_mode="zeros", align_corners=False),
           image_and_grid((1, 2, 3, 2, 4), (1, 2, 3, 3, 3))),
    OpCase("grid_sample/5d_nearest_reflection_corners",
           *sample(mode="nearest", padding_mode="reflection", align_corners=True),
           image_and_grid((2, 1, 2, 3, 3), (2, 3, 2, 2, 3), 3.2)),
    # ---- shapes: one-pixel axes, a dense grid (many outputs read each pixel: the scatter-add
    # sums), a non-contiguous input and grid, align_corners left to its default
    OpCase("grid_sample/bilinear_one_pixel_rows", *sample(mode="bilinear", padding_mode="reflection"),
           image_and_grid((2, 3, 1, 4), (2, 2, 3, 2), 2.5)),
    OpCase("grid_sample/bicubic_one_pixel_border_corners",
           *sample(mode="bicubic", padding_mode="border", align_corners=True),
           image_and_grid((1, 2, 3, 1), (1, 3, 2, 2))),
    OpCase("grid_sample/bilinear_dense_upsampling", *sample(mode="bilinear", align_corners=False),
           image_and_grid((1, 2, 2, 3), (1, 7, 8, 2), 1.1)),
    OpCase("grid_sample/bicubic_non_contiguous", *sample(mode="bicubic", padding_mode="zeros", align_corners=False),
           sliced_image_and_grid((2, 2, 3, 3), (2, 2, 4, 2))),
    # ---- affine_grid (linear in theta) and the two together
    OpCase("affine_grid/2d", *affine((2, 3, 4, 5), align_corners=False), lambda rng: [rng.standard_normal((2, 2, 3))]),
    OpCase("affine_grid/2d_corners", *affine((2, 1, 3, 1), align_corners=True),
           lambda rng: [rng.standard_normal((2, 2, 3))]),
    OpCase("affine_grid/3d", *affine((2, 3, 2, 3, 4), align_corners=False),
           lambda rng: [rng.standard_normal((2, 3, 4))]),
    OpCase("affine_grid/3d_corners", *affine((1, 1, 3, 1, 2), align_corners=True),
           lambda rng: [rng.standard_normal((1, 3, 4))]),
    OpCase("affine_grid/transformer_bilinear", *transformer((2, 2, 4, 5), mode="bilinear", align_corners=False),
           lambda rng: [rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 3)) * 0.6]),
]
