"""tinydl.data.transforms: shapes, dtypes, value ranges, exact geometry (flips,
crops, rotations by 90/180 degrees, integer shifts), PyTorch's numbers where it
has the transform, and determinism with seeds."""

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.data.transforms as T

pytest.importorskip("cv2")


def image(h=10, w=14, c=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.random(shape).astype(dtype)


def rng(seed=0):
    return np.random.default_rng(seed)


# ================================================================ ToTensor, Normalize
def test_to_tensor_matches_torchvision_rule():
    img = image()
    x = T.ToTensor()(img)
    assert isinstance(x, td.Tensor) and x.shape == (3, 10, 14) and x.dtype == td.float32
    expected = torch.from_numpy(img).permute(2, 0, 1).float().div(255)     # torchvision's ToTensor
    np.testing.assert_array_equal(x.numpy(), expected.numpy())
    assert T.ToTensor()(image(c=None)).shape == (1, 10, 14)
    f64 = T.ToTensor()(image(dtype=np.float64))
    assert f64.dtype == td.float64 and f64.shape == (3, 10, 14)
    stack = T.ToTensor()(np.stack([img, img[::-1]]))
    assert stack.shape == (2, 3, 10, 14)
    np.testing.assert_array_equal(stack.numpy()[0], x.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_tensor_and_array(dtype):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    chw = image(dtype=dtype).transpose(2, 0, 1).copy()
    out = T.Normalize(mean, std)(td.tensor(chw))
    expected = (torch.from_numpy(chw) - torch.tensor(mean, dtype=torch.float64 if dtype == np.float64 else
                                                     torch.float32)[:, None, None]) / \
        torch.tensor(std, dtype=torch.from_numpy(chw).dtype)[:, None, None]
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    hwc = T.Normalize(mean, std)(chw.transpose(1, 2, 0))
    assert hwc.dtype == dtype
    np.testing.assert_allclose(hwc.transpose(2, 0, 1), out.numpy(), rtol=1e-6)
    batch = T.Normalize(mean, std)(td.tensor(np.stack([chw, chw])))        # (N, C, H, W) from TenCrop
    np.testing.assert_allclose(batch.numpy()[1], out.numpy())
    with pytest.raises(ValueError, match="channels"):
        T.Normalize(mean, std)(td.tensor(chw[:2]))
    with pytest.raises(ValueError, match="zero"):
        T.Normalize(0.5, 0.0)


# ================================================================ resize and crops
def test_resize_sizes_and_dtypes():
    img = image(20, 30)
    assert T.Resize(10)(img).shape == (10, 15, 3)
    assert T.Resize(10)(image(30, 20)).shape == (15, 10, 3)
    assert T.Resize(7)(image(20, 30)).shape == (7, int(7 * 30 / 20), 3)        # torchvision's truncation
    assert T.Resize((5, 9))(img).shape == (5, 9, 3)
    assert T.Resize(8)(image(20, 30, c=1)).shape == (8, 12, 1)                   # channel axis kept
    assert T.Resize(8)(image(20, 30, c=None)).shape == (8, 12)
    out = T.Resize((5, 9), interpolation="area")(image(20, 30, dtype=np.float32))
    assert out.dtype == np.float32
    assert T.Resize(100, max_size=120)(img).shape == (80, 120, 3)
    np.testing.assert_array_equal(T.Resize(20)(img), img)
    with pytest.raises(ValueError, match="interpolation"):
        T.Resize(5, interpolation="sinc")(img)


def test_center_crop_and_five_ten_crops():
    img = image(9, 12)
    np.testing.assert_array_equal(T.CenterCrop((5, 6))(img), img[2:7, 3:9])
    np.testing.assert_array_equal(T.CenterCrop(4)(img), img[2:6, 4:8])
    padded = T.CenterCrop((11, 12))(img)
    assert padded.shape == (11, 12, 3) and padded[0].sum() == 0 and np.array_equal(padded[1:10], img)
    five = T.FiveCrop(4)(img)
    assert five.shape == (5, 4, 4, 3)
    for got, want in zip(five, [img[:4, :4], img[:4, 8:], img[5:, :4], img[5:, 8:], img[2:6, 4:8]]):
        np.testing.assert_array_equal(got, want)
    ten = T.TenCrop(4)(img)
    assert ten.shape == (10, 4, 4, 3)
    np.testing.assert_array_equal(ten[5:], T.FiveCrop(4)(img[:, ::-1]))
    np.testing.assert_array_equal(T.TenCrop(4, vertical_flip=True)(img)[5:], T.FiveCrop(4)(img[::-1]))
    grey = T.TenCrop(4)(image(9, 12, c=None))
    assert grey.shape == (10, 4, 4, 1) and T.ToTensor()(grey).shape == (10, 1, 4, 4)


def test_average_crops_tensor_and_array():
    rng_ = rng(1)
    outputs = rng_.normal(size=(2 * 10, 5))
    avg = T.average_crops(outputs, 10)
    np.testing.assert_allclose(avg, outputs.reshape(2, 10, 5).mean(1))
    t = td.tensor(outputs, requires_grad=True)
    out = T.average_crops(t, 10)
    np.testing.assert_allclose(out.detach().numpy(), avg)
    upstream = rng_.normal(size=(2, 5))
    out.backward(td.tensor(upstream))
    np.testing.assert_allclose(t.grad.numpy(), np.repeat(upstream, 10, axis=0) / 10)
    probs = T.average_crops(outputs, 10, softmax=True)
    expected = torch.softmax(torch.from_numpy(outputs), -1).reshape(2, 10, 5).mean(1).numpy()
    np.testing.assert_allclose(probs, expected)
    np.testing.assert_allclose(T.average_crops(td.tensor(outputs), 10, softmax=True).numpy(), expected)
    with pytest.raises(ValueError, match="multiple"):
        T.average_crops(outputs[:7], 10)


def _find_window(big, small):
    """All (top, left) where ``small`` sits in ``big``."""
    h, w = small.shape[:2]
    return [(i, j) for i in range(big.shape[0] - h + 1) for j in range(big.shape[1] - w + 1)
            if np.array_equal(big[i:i + h, j:j + w], small)]


def test_random_crop_is_a_window_and_seeded():
    img = image(10, 14)
    crop = T.RandomCrop((4, 5))(img, rng=rng(3))
    assert crop.shape == (4, 5, 3) and _find_window(img, crop)
    np.testing.assert_array_equal(T.RandomCrop((4, 5))(img, rng=rng(3)), crop)
    places = {_find_window(img, T.RandomCrop((4, 5))(img, rng=rng(s)))[0] for s in range(30)}
    assert len(places) > 10
    padded = T.RandomCrop(10, padding=2)(img[:, :10], rng=rng(1))
    assert padded.shape == (10, 10, 3) and _find_window(np.pad(img[:, :10], ((2, 2), (2, 2), (0, 0))), padded)
    small = T.RandomCrop(12, pad_if_needed=True, padding_mode="edge")(img[:5, :6], rng=rng(0))
    assert small.shape == (12, 12, 3)
    with pytest.raises(ValueError, match="larger than the image"):
        T.RandomCrop(20)(img)


def test_random_resized_crop():
    img = image(40, 60)
    t = T.RandomResizedCrop(16, scale=(0.2, 0.6))
    out = t(img, rng=rng(0))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(t(img, rng=rng(0)), out)
    for s in range(40):
        top, left, h, w = t.get_params(40, 60, rng(s))
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60
        assert 0.2 * 2400 * 0.9 <= h * w <= 0.6 * 2400 * 1.1
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # impossible boxes fall back to a centre crop of the allowed ratio
    assert T.RandomResizedCrop(8, scale=(5.0, 6.0)).get_params(10, 40, rng(0)) == (0, 13, 10, 13)


def test_random_resize_and_scale():
    img = image(20, 30)
    sizes = {T.RandomResize(8, 12)(img, rng=rng(s)).shape[0] for s in range(40)}
    assert sizes <= set(range(8, 13)) and len(sizes) > 2
    out = T.RandomScale((0.5, 0.5))(img)
    assert out.shape == (10, 15, 3)


def test_cub_recipe_resize_512_random_crop_448():
    tf = T.Compose([T.Resize((512, 512)), T.RandomCrop(448), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    x = tf(image(300, 400), rng=rng(0))
    assert x.shape == (3, 448, 448) and x.dtype == td.float32


def test_pad_modes_match_pytorch():
    img = image(5, 6, dtype=np.float32)
    chw = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    for ours, theirs in (("reflect", "reflect"), ("edge", "replicate"), ("constant", "constant")):
        got = T.Pad((1, 2, 3, 1), padding_mode=ours)(img)
        want = torch.nn.functional.pad(chw, (1, 3, 2, 1), mode=theirs)[0].numpy().transpose(1, 2, 0)
        np.testing.assert_array_equal(got, want)
    assert T.Pad(2, fill=7)(image(3, 3, c=None)).shape == (7, 7)


# ================================================================ flips and warps
def test_flips_are_exact():
    img = image()
    chw = torch.from_numpy(img)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(img), torch.flip(chw, [1]).numpy())
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(img), torch.flip(chw, [0]).numpy())
    assert T.RandomHorizontalFlip(p=0.0)(img) is img
    flips = [not np.array_equal(T.RandomHorizontalFlip()(img, rng=rng(s)), img) for s in range(200)]
    assert 70 < sum(flips) < 130
    assert flips == [not np.array_equal(T.RandomHorizontalFlip()(img, rng=rng(s)), img) for s in range(200)]
    with pytest.raises(TypeError, match="before ToTensor"):
        T.RandomHorizontalFlip()(T.ToTensor()(img))


def test_rotation_by_180_and_90_degrees_is_exact():
    img = image(9, 13)
    half = T.RandomRotation((180, 180), interpolation="nearest")(img)
    np.testing.assert_array_equal(half, img[::-1, ::-1])
    square = image(11, 11)
    quarter = T.RandomRotation((90, 90), interpolation="nearest")(square)
    np.testing.assert_array_equal(quarter, np.rot90(square))        # counter-clockwise on screen
    turned = T.RandomRotation((90, 90), interpolation="nearest", expand=True)(img)
    assert turned.shape == (13, 9, 3)
    np.testing.assert_array_equal(turned, np.rot90(img))
    small = T.RandomRotation(30)(img, rng=rng(0))
    assert small.shape == img.shape and small.dtype == np.uint8
    np.testing.assert_array_equal(T.RandomRotation(30)(img, rng=rng(0)), small)
    filled = T.RandomRotation((45, 45), fill=(255, 0, 0))(np.zeros((21, 21, 3), np.uint8))
    assert tuple(filled[0, 0]) == (255, 0, 0) and tuple(filled[10, 10]) == (0, 0, 0)


def test_affine_shift_is_an_integer_translation():
    img = image(12, 16, c=None)
    t = T.RandomAffine(degrees=0, translate=(0.25, 0.25), interpolation="nearest")
    for s in range(5):
        _, (dx, dy), _, _ = t.get_params(12, 16, rng(s))
        out = t(img, rng=rng(s))
        expected = np.zeros_like(img)
        src = img[max(0, -dy):12 - max(0, dy), max(0, -dx):16 - max(0, dx)]
        expected[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        np.testing.assert_array_equal(out, expected)
        assert abs(dx) <= 4 and abs(dy) <= 3
    full = T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10)
    out = full(image(), rng=rng(0))
    assert out.shape == (10, 14, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(full(image(), rng=rng(0)), out)
    zoom = T.RandomAffine(0, scale=(2.0, 2.0), interpolation="nearest")(np.pad(np.ones((3, 3)), 4))
    assert zoom.sum() == 36      # a 3x3 square about the centre doubles to 6x6


# ================================================================ colour
def test_color_jitter_ranges_and_limits():
    img = image(8, 8)
    out = T.ColorJitter(0.4, 0.4, 0.4, 0.1)(img, rng=rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(T.ColorJitter(0.4, 0.4, 0.4, 0.1)(img, rng=rng(0)), out)
    f = image(8, 8, dtype=np.float32)
    bright = T.ColorJitter(brightness=(2, 2))(f)
    assert bright.dtype == np.float32
    np.testing.assert_allclose(bright, np.clip(f * 2, 0, 1), rtol=1e-6)
    grey = T.ColorJitter(saturation=(0, 0))(f)
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)
    np.testing.assert_allclose(grey[..., 0], 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2], atol=1e-6)
    flat = T.ColorJitter(contrast=(0, 0))(f)
    assert np.ptp(flat) < 1e-6
    np.testing.assert_allclose(flat[0, 0, 0], grey.mean(), rtol=1e-5)
    round_trip = T.ColorJitter(hue=(0.25, 0.25))(T.ColorJitter(hue=(-0.25, -0.25))(f))
    np.testing.assert_allclose(round_trip, f, atol=1e-4)
    mono = T.ColorJitter(0.5, 0.5, 0.5, 0.5)(image(8, 8, c=None), rng=rng(1))
    assert mono.shape == (8, 8)
    with pytest.raises(ValueError, match="hue"):
        T.ColorJitter(hue=0.7)


def test_lighting_adds_one_pca_shift_per_image():
    f = image(6, 7, dtype=np.float64) * 0.5 + 0.25
    out = T.Lighting(0.1)(f, rng=rng(2))
    shift = out - f
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-12)
    alpha = rng(2).normal(0.0, 0.1, size=3)
    eigval, eigvec = np.array(T.IMAGENET_EIGVAL), np.array(T.IMAGENET_EIGVEC)
    np.testing.assert_allclose(shift[0, 0], eigvec @ (alpha * eigval), atol=1e-12)
    # the same shift on a (3, H, W) tensor, and clipped on uint8
    t = T.Lighting(0.1)(td.tensor(f.transpose(2, 0, 1)), rng=rng(2))
    np.testing.assert_allclose(t.numpy().transpose(1, 2, 0), out, atol=1e-12)
    u8 = T.Lighting(5.0)(image(), rng=rng(0))
    assert u8.dtype == np.uint8
    assert T.Lighting(0.0)(f) is f
    with pytest.raises(ValueError, match="RGB"):
        T.Lighting()(image(c=None))


def test_pca_lighting_params_recovers_the_covariance():
    r = rng(0)
    mix = np.array([[1.0, 0.2, 0.1], [0.0, 0.5, 0.3], [0.0, 0.0, 0.2]])
    pixels = (r.normal(size=(5000, 3)) @ mix) * 0.1 + 0.5
    eigval, eigvec = T.pca_lighting_params(pixels.reshape(50, 100, 3))
    assert np.all(np.diff(eigval) <= 0)
    np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(eigvec @ np.diag(eigval) @ eigvec.T, np.cov(pixels, rowvar=False), atol=1e-10)


# ================================================================ noise and blur
def test_gaussian_noise_and_blur():
    img = np.full((40, 40), 128, np.uint8)
    noisy = T.GaussianNoise(std=0.1)(img, rng=rng(0))
    assert noisy.dtype == np.uint8 and 20 < noisy.astype(float).std() < 31
    np.testing.assert_array_equal(T.GaussianNoise(std=0.1)(img, rng=rng(0)), noisy)
    assert T.GaussianNoise(std=1.0)(img, rng=rng(0)).max() == 255        # clipped, not wrapped
    f = np.full((40, 40, 3), 0.5, np.float32)
    assert T.GaussianNoise(std=0.05)(f).dtype == np.float32
    t = T.GaussianNoise(std=0.05)(T.ToTensor()(img))
    assert t.shape == (1, 40, 40) and t.dtype == td.float32
    assert 0 <= t.numpy().min() and t.numpy().max() <= 1
    blur = T.GaussianBlur(5, sigma=(0.5, 1.5))
    np.testing.assert_array_equal(blur(img), img)                  # a flat image stays flat
    sharp = image(20, 20, dtype=np.float32)
    soft = blur(sharp, rng=rng(0))
    assert soft.dtype == np.float32 and soft.std() < sharp.std()
    np.testing.assert_array_equal(blur(sharp, rng=rng(0)), soft)
    with pytest.raises(ValueError, match="odd"):
        T.GaussianBlur(4)


# ================================================================ where the random numbers come from
def _pipeline():
    return T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3),
                      T.RandomRotation(10), T.GaussianNoise(0.02), T.ToTensor()])


def test_seeded_pipelines_are_deterministic():
    img = image(12, 12)
    a = _pipeline()(img, rng=rng(1)).numpy()
    np.testing.assert_array_equal(_pipeline()(img, rng=rng(1)).numpy(), a)
    assert not np.array_equal(_pipeline()(img, rng=rng(2)).numpy(), a)
    td.manual_seed(5)
    b = [_pipeline()(img).numpy() for _ in range(2)]
    td.manual_seed(5)
    c = [_pipeline()(img).numpy() for _ in range(2)]
    np.testing.assert_array_equal(b[0], c[0])
    np.testing.assert_array_equal(b[1], c[1])
    assert not np.array_equal(b[0], b[1])
    with T.use_rng(rng(1)):
        np.testing.assert_array_equal(_pipeline()(img).numpy(), a)
    own = T.RandomCrop(8, generator=7)
    assert np.array_equal(own(img), T.RandomCrop(8, generator=np.random.default_rng(7))(img))


def test_lambda_and_random_apply():
    img = image()
    tf = T.Compose([T.Lambda(lambda x: x[:5]), T.RandomApply([T.RandomVerticalFlip(p=1.0)], p=0.5)])
    outs = [tf(img, rng=rng(s)) for s in range(40)]
    flipped = sum(np.array_equal(o, img[:5][::-1]) for o in outs)
    assert all(o.shape == (5, 14, 3) for o in outs) and 8 < flipped < 32
    assert "RandomApply" in repr(tf)


# ================================================================ bad values: errors naming the transform and the value
@pytest.mark.parametrize("make, message", [
    (lambda: T.Resize(0), r"Resize: size must be a positive int or \(h, w\), got 0"),
    (lambda: T.Resize(-2), "got -2"),
    (lambda: T.Resize((0, 3)), r"got \(0, 3\)"),
    (lambda: T.Resize(10, max_size=5), r"max_size \(5\) must be larger than size \(10\)"),
    (lambda: T.Pad(-3), r"Pad: padding must be >= 0, got \(-3, -3, -3, -3\)"),
    (lambda: T.Pad((1, -1)), r"got \(1, -1\)"),
    (lambda: T.Resize(4)(np.zeros((0, 5), np.uint8)), r"Resize: got an empty image \(shape \(0, 5\)\)"),
    (lambda: T.CenterCrop(2)(np.zeros((5, 0, 3), np.uint8)), r"CenterCrop: got an empty image"),
    (lambda: T.pad(np.zeros((3, 3)), -1), "pad: padding must be >= 0"),
])
def test_bad_sizes_paddings_and_empty_images_name_the_transform_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_zero_byte_image_file_names_its_path(tmp_path):
    from tinydl.data import imread
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=f"imread: {tmp_path / 'empty.png'} is empty \\(0 bytes\\)"):
        imread(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png"):
        imread(tmp_path / "junk.png")
