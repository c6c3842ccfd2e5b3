"""Op table rows: pad (every mode), interpolate (every mode), pixel_shuffle / pixel_unshuffle."""
import torch.nn.functional as TF

import tinydl.ops.resample as R
from optable import OpCase


def randn(*shape):
    return lambda rng: [rng.standard_normal(s) for s in shape]


def transposed(shape):
    """A non-contiguous input of ``shape``: the transpose of a C-ordered array."""
    return lambda rng: [rng.standard_normal(shape[::-1]).T]


def sliced(shape):
    """A non-contiguous input of ``shape``: every other row of the last two axes of a bigger array."""
    big = shape[:-2] + (2 * shape[-2], 2 * shape[-1])
    return lambda rng: [rng.standard_normal(big)[..., ::2, 1::2]]


def pad(pads, mode="constant", value=None):
    return (lambda x: R.pad(x, pads, mode, value), lambda x: TF.pad(x, pads, mode, value))


def interp(**kw):
    return (lambda x: R.interpolate(x, **kw), lambda x: TF.interpolate(x, **kw))


def shuffle(r):
    return lambda x: R.pixel_shuffle(x, r), lambda x: TF.pixel_shuffle(x, r)


def unshuffle(r):
    return lambda x: R.pixel_unshuffle(x, r), lambda x: TF.pixel_unshuffle(x, r)


CASES = [
    # ---- pad, constant (any dimensions; negative amounts crop)
    OpCase("pad/constant_last", *pad((1, 2)), randn((2, 3, 4))),
    OpCase("pad/constant_value_2d", *pad((2, 1, 0, 3), value=1.5), randn((1, 2, 3, 5))),
    OpCase("pad/constant_crop", *pad((-1, 2, 1, -2)), randn((2, 3, 4, 5))),
    OpCase("pad/constant_crop_to_empty", *pad((-2, -3)), randn((2, 5))),
    OpCase("pad/constant_every_dim", *pad((1, 0, 0, 2, 1, 1)), randn((2, 3, 2))),
    OpCase("pad/constant_non_contiguous", *pad((1, 1, 2, 0)), transposed((2, 3, 4, 3))),
    # ---- reflect: pad < size, both sides, 2-D to 5-D inputs
    OpCase("pad/reflect_3d_max", *pad((4, 3), "reflect"), randn((2, 3, 5))),
    OpCase("pad/reflect_2d_no_batch", *pad((2, 5), "reflect"), randn((3, 6))),
    OpCase("pad/reflect_4d", *pad((1, 4, 3, 2), "reflect"), randn((2, 3, 4, 5))),
    OpCase("pad/reflect_3d_as_chw", *pad((2, 1, 1, 2), "reflect"), randn((2, 3, 4))),
    OpCase("pad/reflect_5d", *pad((1, 2, 2, 1, 1, 1), "reflect"), randn((1, 2, 2, 3, 3))),
    OpCase("pad/reflect_negative", *pad((-1, 3, 2, -2), "reflect"), randn((1, 2, 4, 5))),
    OpCase("pad/reflect_non_contiguous", *pad((2, 2, 1, 1), "reflect"), sliced((2, 2, 3, 4))),
    # ---- replicate: any amount
    OpCase("pad/replicate_3d_large", *pad((3, 6), "replicate"), randn((2, 2, 3))),
    OpCase("pad/replicate_4d", *pad((2, 5, 1, 3), "replicate"), randn((2, 3, 3, 4))),
    OpCase("pad/replicate_5d", *pad((1, 2, 0, 3, 2, 1), "replicate"), randn((1, 2, 2, 2, 3))),
    OpCase("pad/replicate_single_pixel", *pad((2, 1, 1, 2), "replicate"), randn((1, 2, 1, 1))),
    OpCase("pad/replicate_negative", *pad((-2, 3, 1, -1), "replicate"), randn((1, 2, 3, 5))),
    OpCase("pad/replicate_non_contiguous", *pad((1, 2, 2, 1), "replicate"), transposed((2, 2, 3, 4))),
    # ---- circular: up to the full size on each side (wraps exactly once)
    OpCase("pad/circular_3d_full", *pad((5, 5), "circular"), randn((2, 3, 5))),
    OpCase("pad/circular_4d_both_sides", *pad((4, 2, 3, 4), "circular"), randn((2, 3, 4, 5))),
    OpCase("pad/circular_5d", *pad((1, 3, 2, 2, 1, 2), "circular"), randn((1, 2, 2, 3, 3))),
    OpCase("pad/circular_2d_no_batch", *pad((2, 3), "circular"), randn((3, 4))),
    OpCase("pad/circular_crop_then_wrap", *pad((3, -2, -1, 2), "circular"), randn((1, 2, 4, 5))),
    OpCase("pad/circular_non_contiguous", *pad((2, 1, 1, 3), "circular"), sliced((2, 2, 3, 4))),
    # ---- interpolate: area (adaptive average pooling)
    OpCase("interpolate/area_down", *interp(size=(4, 3), mode="area"), randn((2, 3, 10, 7))),
    OpCase("interpolate/area_scale_half", *interp(scale_factor=0.5, mode="area"), randn((1, 2, 9, 8))),
    OpCase("interpolate/area_up_1d", *interp(size=9, mode="area"), randn((2, 3, 5))),
    # ---- interpolate: nearest (PyTorch's legacy index rule) and nearest-exact
    OpCase("interpolate/nearest_size_up", *interp(size=(7, 5)), randn((2, 3, 3, 4))),
    OpCase("interpolate/nearest_scale2", *interp(scale_factor=2), randn((1, 2, 3, 4))),
    OpCase("interpolate/nearest_scale_frac", *interp(scale_factor=(1.7, 0.45)), randn((2, 2, 5, 9))),
    OpCase("interpolate/nearest_down", *interp(scale_factor=0.6), randn((1, 3, 7, 6))),
    OpCase("interpolate/nearest_3d", *interp(scale_factor=2.5), randn((2, 3, 4))),
    OpCase("interpolate/nearest_5d", *interp(size=(3, 5, 2)), randn((1, 2, 2, 3, 4))),
    OpCase("interpolate/nearest_exact", *interp(scale_factor=1.7, mode="nearest-exact"), randn((2, 2, 3, 5))),
    OpCase("interpolate/nearest_exact_3d_down", *interp(size=4, mode="nearest-exact"), randn((2, 2, 9))),
    OpCase("interpolate/nearest_non_contiguous", *interp(size=(5, 6)), transposed((2, 3, 4, 3))),
    # ---- linear family
    OpCase("interpolate/bilinear_up", *interp(size=(7, 9), mode="bilinear"), randn((2, 3, 3, 4))),
    OpCase("interpolate/bilinear_up_corners", *interp(size=(7, 9), mode="bilinear", align_corners=True),
           randn((2, 3, 3, 4))),
    OpCase("interpolate/bilinear_down", *interp(size=(3, 4), mode="bilinear"), randn((1, 2, 5, 7))),
    OpCase("interpolate/bilinear_down_corners", *interp(size=(3, 4), mode="bilinear", align_corners=True),
           randn((1, 2, 5, 7))),
    OpCase("interpolate/bilinear_scale_frac", *interp(scale_factor=(1.5, 0.7), mode="bilinear"),
           randn((1, 2, 4, 6))),
    OpCase("interpolate/bilinear_recompute", *interp(scale_factor=1.3, mode="bilinear",
                                                     recompute_scale_factor=True), randn((1, 2, 4, 5))),
    OpCase("interpolate/bilinear_to_1x1", *interp(size=(1, 1), mode="bilinear", align_corners=True),
           randn((1, 2, 3, 4))),
    OpCase("interpolate/bilinear_non_contiguous", *interp(scale_factor=2, mode="bilinear"), sliced((1, 3, 3, 4))),
    OpCase("interpolate/linear", *interp(scale_factor=2.3, mode="linear"), randn((2, 3, 5))),
    OpCase("interpolate/linear_corners", *interp(size=8, mode="linear", align_corners=True), randn((2, 3, 5))),
    OpCase("interpolate/trilinear", *interp(size=(3, 4, 2), mode="trilinear"), randn((1, 2, 2, 3, 4))),
    # ---- bicubic (A = -0.75, border taps clamped)
    OpCase("interpolate/bicubic_up", *interp(size=(9, 7), mode="bicubic"), randn((2, 2, 4, 3))),
    OpCase("interpolate/bicubic_up_corners", *interp(size=(9, 7), mode="bicubic", align_corners=True),
           randn((2, 2, 4, 3))),
    OpCase("interpolate/bicubic_down", *interp(size=(3, 2), mode="bicubic"), randn((1, 2, 7, 5))),
    OpCase("interpolate/bicubic_down_corners", *interp(size=(3, 2), mode="bicubic", align_corners=True),
           randn((1, 2, 7, 5))),
    OpCase("interpolate/bicubic_scale_frac", *interp(scale_factor=(2.6, 0.8), mode="bicubic"),
           randn((1, 1, 3, 6))),
    OpCase("interpolate/bicubic_non_contiguous", *interp(size=(6, 5), mode="bicubic"), transposed((1, 2, 3, 4))),
    # ---- pixel shuffle (depth-to-space) and its inverse
    OpCase("pixel_shuffle/r2", *shuffle(2), randn((2, 8, 3, 5))),
    OpCase("pixel_shuffle/superpoint_r8", *shuffle(8), randn((1, 64, 2, 3))),
    OpCase("pixel_shuffle/3d_r3", *shuffle(3), randn((18, 2, 3))),
    OpCase("pixel_shuffle/non_contiguous", *shuffle(2), transposed((2, 4, 3, 2))),
    OpCase("pixel_unshuffle/r2", *unshuffle(2), randn((2, 3, 6, 4))),
    OpCase("pixel_unshuffle/r8", *unshuffle(8), randn((1, 1, 16, 8))),
    OpCase("pixel_unshuffle/5d_non_contiguous", *unshuffle(3),
           lambda rng: [rng.standard_normal((2, 1, 3, 9, 6))[:, :, :, ::-1, :]]),
]
