"""The classification zoo: parameter counts, state_dict keys, shapes, forward + backward,
one training step, and the parts with their own semantics (deconvnet, receptive
fields, fc-as-conv, shortcut options, auxiliary heads).

torchvision is not installed (and its CUDA wheel is too big to pull for a test), so
torchvision's key lists are written out here from its documented architectures.
"""
import math

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
import models
from models.alexnet import receptive_field_table
from models.inception import GoogLeNetOutputs, InceptionOutputs
from models.resnet import ShortcutA
from models.vgg import make_layers, vgg_fc_to_conv


# ---------------------------------------------------------------- helpers
def _skip_random_fills(mp):
    """Parameter counts and key lists do not depend on values: skip the random fills
    (VGG's fc6 alone is 100M draws, seconds per model)."""
    from tinydl.nn import init
    mp.setattr(init, "_fill_uniform", lambda t, *args, **kwargs: t)
    mp.setattr(init, "_fill_normal", lambda t, *args, **kwargs: t)
    mp.setattr(init, "trunc_normal_", lambda t, *args, **kwargs: t)


@pytest.fixture
def no_init(monkeypatch):
    _skip_random_fills(monkeypatch)


def _quick_init(model, seed=0):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every conv/linear weight and bias, filled in
    float32 (a fifth of the time of the normal draws the real inits make); for models
    built under ``no_init``, whose random fills left uninitialised memory behind. Other
    1-D parameters (BN) keep the constants the model set."""
    rng = np.random.default_rng(seed)
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is None or weight.ndim < 2:
            continue
        bound = np.float32(1 / math.sqrt(weight.numel() // weight.shape[0]))
        for p in (weight, getattr(module, "bias", None)):
            if p is not None:
                u = rng.random(p.shape, dtype=np.float32)
                u -= np.float32(0.5)
                u *= 2 * bound
                p.array[...] = u
    return model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def _outputs(y):
    return list(y) if isinstance(y, tuple) else [y]


# ---------------------------------------------------------------- registry
ZOO = ["alexnet", "alexnet_tv", "zfnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
       "vgg19", "vgg19_bn", "nin", "googlenet", "googlenet_tv", "inception_v2", "inception_v3",
       "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34",
       "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
       "plain20", "plain32", "plain44", "plain56", "mobilenet_v1"]


def test_registry_lists_the_zoo():
    names = models.list()
    missing = [n for n in ZOO if n not in names]
    assert not missing, missing
    assert "mlp" in names and "lenet5" in names


# ---------------------------------------------------------------- parameter counts
PARAM_COUNTS = [
    # AlexNet: 34,944 + 614,656 + 885,120 + 1,327,488 + 884,992 + 37,752,832 + 16,781,312 + 4,097,000
    ("alexnet", {}, 62_378_344),
    # two towers halve conv2/4/5's weights: - 307,200 - 663,552 - 442,368
    ("alexnet", {"groups": 2}, 60_965_224),
    ("alexnet_tv", {}, 61_100_840),
    # conv1 7x7x3x96 + 96 = 14,208 instead of AlexNet's 34,944
    ("zfnet", {}, 62_357_608),
    ("vgg11", {}, 132_863_336), ("vgg13", {}, 133_047_848),
    ("vgg16", {}, 138_357_544), ("vgg19", {}, 143_667_240),
    ("vgg11_bn", {}, 132_868_840), ("vgg13_bn", {}, 133_053_736),
    ("vgg16_bn", {}, 138_365_992), ("vgg19_bn", {}, 143_678_248),
    ("vgg16", {"fully_conv": True}, 138_357_544),       # same weights, reshaped
    # torchvision's published GoogLeNet figure: BN, 3x3 "5x5" branch, no aux heads
    ("googlenet_tv", {"aux_logits": False}, 6_624_904),
    ("googlenet_tv", {}, 13_004_888),
    # the paper's GoogLeNet (biases, 5x5, no BN); Table 1 by hand: 6,998,552
    ("googlenet", {"aux_logits": False}, 6_998_552),
    ("inception_v3", {}, 27_161_264),
    ("inception_v3", {"aux_logits": False}, 23_834_568),
    ("resnet18", {}, 11_689_512), ("resnet34", {}, 21_797_672), ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160), ("resnet152", {}, 60_192_808),
    # option A adds nothing; plain nets are option A's count exactly
    ("resnet18", {"shortcut": "A"}, 11_689_512 - (128 * 64 + 2 * 128) - (256 * 128 + 2 * 256)
     - (512 * 256 + 2 * 512)),
    ("plain18", {}, 11_515_688),
    ("resnet20", {}, 269_722),                                 # the paper's "0.27M"
    ("resnet20", {"shortcut": "B"}, 269_722 + (16 * 32 + 64) + (32 * 64 + 128)),
    ("plain20", {}, 269_722),
    ("resnet32", {}, 464_154), ("resnet44", {}, 658_586), ("resnet56", {}, 853_018),
    ("resnet110", {}, 1_727_962), ("resnet1202", {}, 19_421_274),       # 0.27/0.46/0.66/0.85/1.7/19.4M
    ("mobilenet_v1", {}, 4_231_976),
]


@pytest.mark.parametrize("name,kwargs,expected", PARAM_COUNTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in PARAM_COUNTS])
def test_parameter_count(no_init, name, kwargs, expected):
    assert n_params(models.create(name, **kwargs)) == expected


def test_resnet18_option_a_has_no_downsample_parameters(no_init):
    a, b = models.create("resnet18", shortcut="A"), models.create("resnet18")
    assert n_params(a) == 11_515_688
    assert n_params(b) - n_params(a) == sum(p.numel() for k, p in b.named_parameters() if "downsample" in k)
    assert not [k for k, _ in a.named_parameters() if "downsample" in k]


@pytest.mark.parametrize("width,millions", [(1.0, 4.2), (0.75, 2.6), (0.5, 1.3), (0.25, 0.5)])
def test_mobilenet_width_multiplier_matches_paper_table(no_init, width, millions):
    assert round(n_params(models.create("mobilenet_v1", width_mult=width)) / 1e6, 1) == millions


def test_googlenet_is_about_12x_smaller_than_alexnet(no_init):
    # The notes: "AlexNet 参数个数是 GoogleNet 的12倍".
    ratio = n_params(models.create("alexnet")) / n_params(models.create("googlenet", aux_logits=False))
    assert 8 < ratio < 13


# ---------------------------------------------------------------- torchvision's keys
def _bn(prefix, c):
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]


def _shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def test_alexnet_tv_keys_equal_torchvision(no_init):
    expected = []
    for i, (o, c, k) in zip((0, 3, 6, 8, 10), [(64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3),
                                               (256, 256, 3)]):
        expected += [(f"features.{i}.weight", (o, c, k, k)), (f"features.{i}.bias", (o,))]
    for i, (o, c) in zip((1, 4, 6), [(4096, 9216), (4096, 4096), (1000, 4096)]):
        expected += [(f"classifier.{i}.weight", (o, c)), (f"classifier.{i}.bias", (o,))]
    assert _shapes(models.create("alexnet_tv")) == expected


def test_vgg16_keys_equal_torchvision(no_init):
    cfg_d = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    expected, i, c = [], 0, 3
    for v in cfg_d:
        if v == "M":
            i += 1
            continue
        expected += [(f"features.{i}.weight", (v, c, 3, 3)), (f"features.{i}.bias", (v,))]
        i, c = i + 2, v
    for j, (o, n) in zip((0, 3, 6), [(4096, 25088), (4096, 4096), (1000, 4096)]):
        expected += [(f"classifier.{j}.weight", (o, n)), (f"classifier.{j}.bias", (o,))]
    got = _shapes(models.create("vgg16"))
    assert got == expected
    assert ("features.28.weight", (512, 512, 3, 3)) in got


def test_vgg16_bn_keys_spot_check(no_init):
    sd = models.create("vgg16_bn").state_dict()
    # conv, bn, relu per conv: the last conv is features.40, its BN features.41
    assert tuple(sd["features.40.weight"].shape) == (512, 512, 3, 3)
    assert tuple(sd["features.41.running_var"].shape) == (512,)
    assert len(sd) == 13 * (2 + 5) + 6


def _resnet_keys(block, layers):
    expected = [("conv1.weight", (64, 3, 7, 7))] + _bn("bn1", 64)
    inplanes = 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            if block == "basic":
                out = planes
                expected += [(f"{p}.conv1.weight", (planes, inplanes, 3, 3))] + _bn(f"{p}.bn1", planes)
                expected += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + _bn(f"{p}.bn2", planes)
            else:
                out = planes * 4
                expected += [(f"{p}.conv1.weight", (planes, inplanes, 1, 1))] + _bn(f"{p}.bn1", planes)
                expected += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + _bn(f"{p}.bn2", planes)
                expected += [(f"{p}.conv3.weight", (out, planes, 1, 1))] + _bn(f"{p}.bn3", out)
            if b == 0 and (stage > 1 or inplanes != out):
                expected += [(f"{p}.downsample.0.weight", (out, inplanes, 1, 1))] + _bn(f"{p}.downsample.1", out)
            inplanes = out
    return expected + [("fc.weight", (1000, inplanes)), ("fc.bias", (1000,))]


def test_resnet18_keys_equal_torchvision(no_init):
    got = _shapes(models.create("resnet18"))
    assert got == _resnet_keys("basic", [2, 2, 2, 2])
    assert len(got) == 122 and ("layer4.1.bn2.running_var", (512,)) in got


def test_resnet50_keys_equal_torchvision(no_init):
    got = _shapes(models.create("resnet50"))
    assert got == _resnet_keys("bottleneck", [3, 4, 6, 3])
    assert len(got) == 320
    assert ("layer1.0.downsample.0.weight", (256, 64, 1, 1)) in got
    assert ("layer4.2.bn3.running_var", (2048,)) in got


def test_inception_v3_keys_match_torchvision(no_init):
    sd = models.create("inception_v3").state_dict()
    spot = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_5b.branch_pool.bn.running_mean": (32,),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch3x3dbl_3a.conv.weight": (384, 384, 1, 3),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "AuxLogits.conv0.conv.weight": (128, 768, 1, 1),
        "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
        "AuxLogits.fc.weight": (1000, 768),
        "fc.weight": (1000, 2048),
    }
    for key, shape in spot.items():
        assert tuple(sd[key].shape) == shape, key
    # 96 BasicConv2d (5 stem, 3x7 A, 4 B, 4x10 C, 6 D, 2x9 E, 2 aux) of 6 entries, plus 2 linears
    assert len(sd) == 96 * 6 + 4
    tops = {k.split(".")[0] for k in sd}
    assert tops == {"Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AuxLogits", "fc"}
    assert not any(k.endswith("conv.bias") for k in sd)


def test_googlenet_tv_keys_match_torchvision(no_init):
    sd = models.create("googlenet_tv").state_dict()
    spot = {
        "conv1.conv.weight": (64, 3, 7, 7),
        "conv1.bn.running_var": (64,),
        "inception3a.branch1.conv.weight": (64, 192, 1, 1),
        "inception3a.branch2.1.conv.weight": (128, 96, 3, 3),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),     # torchvision's 3x3 "5x5"
        "inception3a.branch4.1.conv.weight": (32, 192, 1, 1),
        "inception5b.branch4.1.bn.running_mean": (128,),
        "aux1.conv.conv.weight": (128, 512, 1, 1),
        "aux1.fc1.weight": (1024, 2048),
        "aux2.conv.conv.weight": (128, 528, 1, 1),
        "aux2.fc2.weight": (1000, 1024),
        "fc.weight": (1000, 1024),
    }
    for key, shape in spot.items():
        assert tuple(sd[key].shape) == shape, key
    # 59 BasicConv2d (3 stem, 9 x 6, 2 aux) of 6 entries + 2 aux x 2 linears + fc
    assert len(sd) == 59 * 6 + 8 + 2


def test_paper_googlenet_has_5x5_branches_biases_and_lrn(no_init):
    m = models.create("googlenet")
    sd = m.state_dict()
    assert tuple(sd["inception3a.branch3.1.conv.weight"].shape) == (32, 16, 5, 5)
    assert "inception3a.branch3.1.conv.bias" in sd
    assert not any(".bn." in k for k in sd)
    assert isinstance(m.lrn1, nn.LocalResponseNorm) and isinstance(m.lrn2, nn.LocalResponseNorm)


# ---------------------------------------------------------------- AlexNet / ZFNet specifics
def test_alexnet_receptive_fields_match_the_notes(no_init):
    rows = receptive_field_table(models.create("alexnet").features, 227)
    assert [r[2] for r in rows] == [55, 27, 27, 13, 13, 13, 13, 6]         # map sizes
    assert [r[4] for r in rows] == [11, 19, 51, 67, 99, 131, 163, 195]     # receptive fields
    assert [r[3] for r in rows] == [4, 8, 8, 16, 16, 16, 16, 32]           # jumps


def test_alexnet_layout_groups_and_lrn(no_init):
    m = models.create("alexnet", groups=2)
    f = dict(zip(m.layer_names, m.features))
    assert tuple(f["conv2"].weight.shape) == (256, 48, 5, 5)
    assert tuple(f["conv3"].weight.shape) == (384, 256, 3, 3)          # conv3 sees both towers
    assert tuple(f["conv4"].weight.shape) == (384, 192, 3, 3)
    assert tuple(f["conv5"].weight.shape) == (256, 192, 3, 3)
    lrn = f["norm1"]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert m.layer_names[:4] == ("conv1", "relu1", "norm1", "pool1")     # the paper's order
    caffe = models.create("alexnet", norm_after_pool=True)
    assert caffe.layer_names[:4] == ("conv1", "relu1", "pool1", "norm1")
    assert isinstance(dict(zip(m.layer_names, m.features))["pool1"], nn.MaxPool2d)
    with pytest.raises(ValueError, match="groups"):
        models.create("alexnet", groups=3)


def test_alexnet_paper_init_biases(no_init):
    m = models.create("alexnet", paper_init=True)
    f = dict(zip(m.layer_names, m.features))
    assert float(f["conv1"].bias.sum().item()) == 0 and float(f["conv2"].bias.mean().item()) == 1
    assert float(m.classifier[0].bias.mean().item()) == 1 and float(m.classifier[6].bias.sum().item()) == 0


@pytest.fixture(scope="module")
def zfnet_model():
    td.manual_seed(0)
    m = models.create("zfnet", num_classes=10)
    return m.eval()


def test_zfnet_map_sizes_at_224(zfnet_model):
    sizes = [r[2] for r in receptive_field_table(zfnet_model.features, 224)]
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]
    with td.no_grad():
        y, sw = zfnet_model.forward_features(td.randn(1, 3, 224, 224), return_switches=True)
    assert y.shape == (1, 256, 6, 6)
    assert sorted(sw.indices) == [2, 6, 14] and sw.last == 14
    assert sw.sizes[0] == (224, 224) and sw.sizes[2] == (110, 110)


def test_zfnet_deconvnet_matches_torch(zfnet_model):
    m = zfnet_model
    x = td.randn(1, 3, 64, 64)
    with td.no_grad():
        y, sw = m.forward_features(x, return_switches=True, until="pool2")
        back = m.deconvnet(y, sw)
    assert back.shape == (1, 3, 64, 64)
    # The same path written with torch's functional ops.
    w1, b1, w2, b2 = (torch.from_numpy(p.detach().numpy())
                      for p in (m.features[0].weight, m.features[0].bias, m.features[4].weight, m.features[4].bias))
    tf = torch.nn.functional
    t = tf.relu(tf.conv2d(torch.from_numpy(x.numpy()), w1, b1, stride=2, padding=1))
    s1 = t.shape[-2:]
    t, i1 = tf.max_pool2d(t, 3, 2, ceil_mode=True, return_indices=True)
    t = tf.local_response_norm(t, 5, alpha=1e-4, beta=0.75, k=2.0)
    p1 = t.shape[-2:]
    t = tf.relu(tf.conv2d(t, w2, b2, stride=2))
    s2 = t.shape[-2:]
    t, i2 = tf.max_pool2d(t, 3, 2, ceil_mode=True, return_indices=True)
    np.testing.assert_allclose(y.numpy(), t.numpy(), rtol=1e-4, atol=1e-5)
    def unpool_adding(v, index, out_hw):       # the pooling's adjoint: shared switches add up
        flat = torch.zeros(v.shape[0], v.shape[1], out_hw[0] * out_hw[1], dtype=v.dtype)
        return flat.scatter_add(2, index.flatten(2), v.flatten(2)).reshape(*v.shape[:2], *out_hw)

    r = tf.relu(unpool_adding(t, i2, s2))
    r = tf.conv_transpose2d(r, w2, stride=2, output_padding=p1[0] - ((s2[0] - 1) * 2 + 5))
    r = tf.relu(unpool_adding(r, i1, s1))
    r = tf.conv_transpose2d(r, w1, stride=2, padding=1, output_padding=64 - ((s1[0] - 1) * 2 - 2 + 7))
    np.testing.assert_allclose(back.numpy(), r.numpy(), rtol=1e-4, atol=1e-4 * float(r.abs().max()))


def test_deconvnet_of_a_conv_is_its_transpose(zfnet_model):
    """Through one conv layer the deconvnet is the conv's adjoint: the gradient of
    <conv(x) - bias, y> with respect to x."""
    m = zfnet_model
    x = td.randn(1, 3, 33, 33, requires_grad=True)
    y, sw = m.forward_features(x, return_switches=True, until="conv1")
    g = td.randn(*y.shape)
    y.backward(g)
    with td.no_grad():
        back = m.deconvnet(g, sw)
    np.testing.assert_allclose(back.numpy(), x.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_deconvnet_errors(zfnet_model):
    with td.no_grad():
        y, sw = zfnet_model.forward_features(td.randn(1, 3, 64, 64), return_switches=True, until="pool1")
        with pytest.raises(ValueError, match="not run forward"):
            zfnet_model.deconvnet(y, sw, start="conv3")
        with pytest.raises(ValueError, match="unknown layer"):
            zfnet_model.forward_features(td.randn(1, 3, 64, 64), until="conv9")


# ---------------------------------------------------------------- VGG specifics
@pytest.fixture(scope="module")
def vgg11_pair():
    """VGG-11 (10 classes) and its fully convolutional twin with the same weights."""
    with pytest.MonkeyPatch.context() as mp:
        _skip_random_fills(mp)
        fc = models.create("vgg11", num_classes=10)
        conv = models.create("vgg11", num_classes=10, fully_conv=True)
    _quick_init(fc, seed=1)
    conv.load_state_dict(vgg_fc_to_conv(fc.state_dict()))
    return fc, conv


def test_vgg_fully_conv_equals_fc_at_224_and_gives_a_score_map(vgg11_pair):
    fc, conv = vgg11_pair
    fc.eval()
    conv.eval()
    x = td.randn(1, 3, 224, 224)
    with td.no_grad():
        a = fc(x)
        b = conv(x)
        c = conv(td.randn(1, 3, 256, 288))
    assert a.shape == (1, 10) and b.shape == (1, 10, 1, 1)
    np.testing.assert_allclose(b.numpy()[:, :, 0, 0], a.numpy(), rtol=1e-4, atol=1e-5)
    assert c.shape == (1, 10, 256 // 32 - 6, 288 // 32 - 6)
    with pytest.raises(ValueError, match="224"):
        with td.no_grad():
            conv(td.randn(1, 3, 160, 160))


def test_vgg_fc_to_conv_shapes_and_errors(vgg11_pair):
    fc, _ = vgg11_pair
    sd = vgg_fc_to_conv(fc.state_dict())
    assert tuple(sd["classifier.0.weight"].shape) == (4096, 512, 7, 7)
    assert tuple(sd["classifier.3.weight"].shape) == (4096, 4096, 1, 1)
    assert tuple(sd["classifier.6.weight"].shape) == (10, 4096, 1, 1)
    assert tuple(sd["classifier.0.bias"].shape) == (4096,)
    with pytest.raises(KeyError, match="classifier.0.weight"):
        vgg_fc_to_conv({})


@pytest.mark.parametrize("cfg,batch_norm,convs", [("A", False, 8), ("B", True, 10), ("D", False, 13),
                                                  ("E", True, 16)])
def test_vgg_features_shape_and_depth(cfg, batch_norm, convs):
    from models.vgg import cfgs
    features = make_layers(cfgs[cfg], batch_norm)
    assert sum(isinstance(m, nn.Conv2d) for m in features) == convs
    assert sum(isinstance(m, nn.BatchNorm2d) for m in features) == (convs if batch_norm else 0)
    y = features(td.randn(2, 3, 32, 32))
    assert y.shape == (2, 512, 1, 1)


def test_vgg11_training_step_lowers_loss_at_small_input(vgg11_pair):
    fc, _ = vgg11_pair
    fc.train()
    _step_lowers_loss(fc, td.randn(4, 3, 32, 32), td.tensor([0, 3, 7, 9]), lr=0.01)
    for k, p in fc.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, k


# ---------------------------------------------------------------- shapes at native sizes
NATIVE = [
    ("alexnet", {}, 227), ("alexnet", {"groups": 2}, 227), ("alexnet_tv", {}, 224),
    ("nin", {}, 32), ("nin", {"config": "imagenet"}, 224),
    ("googlenet", {}, 224), ("googlenet_tv", {}, 224), ("inception_v2", {}, 224),
    ("inception_v3", {}, 299),
    ("resnet18", {}, 224), ("resnet50", {}, 224),
    ("resnet20", {}, 32), ("plain20", {}, 32), ("resnet56", {}, 32),
    ("mobilenet_v1", {}, 224),
]


@pytest.mark.parametrize("name,kwargs,size", NATIVE, ids=[f"{n}{kw or ''}-{s}" for n, kw, s in NATIVE])
def test_output_shape_at_native_size(name, kwargs, size):
    m = models.create(name, **kwargs).eval()
    with td.no_grad():
        y = m(td.randn(1, 3, size, size))
    classes = 10 if size == 32 else 1000
    assert y.shape == (1, classes)
    assert y.dtype == td.float32 and np.isfinite(y.numpy()).all()


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("vgg16", 224), ("vgg19_bn", 224), ("resnet152", 224),
                                       ("resnet101", 224), ("resnet34", 224)])
def test_output_shape_at_native_size_big(name, size, monkeypatch):
    m = _build(name, monkeypatch).eval()
    with td.no_grad():
        y = m(td.randn(1, 3, size, size))
    assert y.shape == (1, 10)
    assert np.isfinite(y.numpy()).all()


def test_resnet_feature_map_strides():
    m = models.create("resnet18").eval()
    with td.no_grad():
        assert m.forward_features(td.randn(1, 3, 64, 96)).shape == (1, 512, 2, 3)
    c = models.create("resnet20").eval()
    with td.no_grad():
        assert c.forward_features(td.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)


# ---------------------------------------------------------------- forward + backward everywhere
FWD_BWD = [
    ("alexnet", {}, 99), ("alexnet", {"groups": 2}, 99), ("alexnet_tv", {}, 99), ("zfnet", {}, 64),
    ("nin", {}, 32), ("nin", {"config": "imagenet"}, 99),
    ("googlenet", {"aux_logits": False}, 64), ("googlenet_tv", {}, 64), ("inception_v2", {}, 64),
    ("inception_v3", {"aux_logits": False}, 75),
    ("resnet18", {}, 32), ("resnet50", {}, 32),
    ("resnet18", {"shortcut": "A"}, 32), ("resnet18", {"shortcut": "C"}, 32), ("plain18", {}, 32),
    ("resnet20", {}, 32), ("resnet20", {"shortcut": "B"}, 16), ("resnet20", {"shortcut": "C"}, 16),
    ("plain20", {}, 16),
    ("mobilenet_v1", {}, 32), ("mobilenet_v1", {"width_mult": 0.5}, 32),
]
# (vgg11 goes forward and backward in its training-step test)
FWD_BWD_SLOW = [("vgg13", {}, 32), ("vgg16_bn", {}, 32), ("vgg19_bn", {}, 32), ("resnet34", {}, 32),
                ("resnet101", {}, 32), ("resnet152", {}, 32), ("resnet50", {"shortcut": "C"}, 32),
                ("resnet110", {}, 16), ("plain56", {}, 16)]

_QUICK_INIT = ("vgg", "alexnet", "zfnet")      # big fc layers: values need not be the real init's


def _build(name, monkeypatch, **kwargs):
    """A 10-class model; the ones with big fc layers get ``_quick_init`` weights."""
    td.manual_seed(0)
    if name.startswith(_QUICK_INIT):
        with monkeypatch.context() as mp:
            _skip_random_fills(mp)
            m = models.create(name, num_classes=10, **kwargs)
        return _quick_init(m)
    return models.create(name, num_classes=10, **kwargs)


def _check_forward_backward(name, kwargs, size, monkeypatch):
    m = _build(name, monkeypatch, **kwargs)
    m.train()
    x = td.randn(2, 3, size, size, requires_grad=True)
    outs = _outputs(m(x))
    for y in outs:
        assert y.shape == (2, 10) and y.dtype == td.float32
    # a random upstream gradient for each output (aux heads included)
    total = None
    for y in outs:
        term = (y * td.randn(*y.shape)).sum()
        total = term if total is None else total + term
    total.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert np.isfinite(x.grad.numpy()).all() and np.abs(x.grad.numpy()).sum() > 0
    missing = [k for k, p in m.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    for k, p in m.named_parameters():
        assert p.grad.shape == p.shape and p.grad.dtype == td.float32, k
        assert np.isfinite(p.grad.numpy()).all(), k


@pytest.mark.parametrize("name,kwargs,size", FWD_BWD, ids=[f"{n}{kw or ''}-{s}" for n, kw, s in FWD_BWD])
def test_forward_backward(name, kwargs, size, monkeypatch):
    _check_forward_backward(name, kwargs, size, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs,size", FWD_BWD_SLOW,
                         ids=[f"{n}{kw or ''}-{s}" for n, kw, s in FWD_BWD_SLOW])
def test_forward_backward_big(name, kwargs, size, monkeypatch):
    _check_forward_backward(name, kwargs, size, monkeypatch)


# ---------------------------------------------------------------- one SGD step lowers the loss
def _step_lowers_loss(model, x, target, lr, loss_fn=None, seed=7):
    loss_fn = loss_fn or (lambda out: F.cross_entropy(out, target))
    opt = td.optim.SGD(model.parameters(), lr=lr)
    td.manual_seed(seed)                 # the same dropout masks in both passes
    loss = loss_fn(model(x))
    opt.zero_grad()
    loss.backward()
    opt.step()
    td.manual_seed(seed)
    with td.no_grad():
        after = loss_fn(model(x))
    assert float(after.item()) < float(loss.item()), (float(loss.item()), float(after.item()))
    return float(loss.item()), float(after.item())


def test_resnet20_training_step_lowers_loss():
    td.manual_seed(0)
    m = models.create("resnet20").train()
    _step_lowers_loss(m, td.randn(8, 3, 32, 32), td.tensor([0, 1, 2, 3, 4, 5, 6, 7]), lr=0.05)


def _googlenet_step(name, size):
    """The paper's training loss: main + 0.3 x each auxiliary classifier's."""
    td.manual_seed(0)
    m = models.create(name, num_classes=10).train()
    target = td.tensor([1, 8])

    def loss_fn(out):
        assert isinstance(out, GoogLeNetOutputs) and out.aux_logits1 is not None
        return (F.cross_entropy(out.logits, target)
                + 0.3 * (F.cross_entropy(out.aux_logits1, target) + F.cross_entropy(out.aux_logits2, target)))

    _step_lowers_loss(m, td.randn(2, 3, size, size), target, lr=0.01, loss_fn=loss_fn)
    assert all(p.grad is not None for p in m.aux1.parameters())
    m.eval()
    with td.no_grad():
        y = m(td.randn(1, 3, size, size))
    assert isinstance(y, td.Tensor) and y.shape == (1, 10)


def test_googlenet_training_step_with_aux_losses():
    # torchvision's variant pools its aux input adaptively, so a small input will do
    _googlenet_step("googlenet_tv", 96)


@pytest.mark.slow
def test_paper_googlenet_training_step_with_aux_losses():
    # the paper's aux heads pool 5x5/3 from 4a's 14x14: the input must be ~224
    _googlenet_step("googlenet", 224)


def test_aux_heads_follow_train_and_eval_modes():
    td.manual_seed(0)
    m = models.create("googlenet_tv", num_classes=5).train()
    out = m(td.randn(2, 3, 64, 64))
    assert isinstance(out, GoogLeNetOutputs) and [o.shape for o in out] == [(2, 5)] * 3
    m = models.create("googlenet_tv", num_classes=5, aux_logits=False).train()
    assert isinstance(m(td.randn(2, 3, 64, 64)), td.Tensor)
    v3 = models.create("inception_v3", num_classes=5).train()
    assert v3.AuxLogits(td.randn(2, 768, 17, 17)).shape == (2, 5)          # 17 -> 5 -> 1 -> fc


@pytest.mark.slow
def test_inception_v3_returns_aux_logits_in_training():
    td.manual_seed(0)
    m = models.create("inception_v3", num_classes=5).train()
    out = m(td.randn(2, 3, 299, 299))
    assert isinstance(out, InceptionOutputs) and out.logits.shape == (2, 5) and out.aux_logits.shape == (2, 5)
    m.eval()
    with td.no_grad():
        assert isinstance(m(td.randn(1, 3, 299, 299)), td.Tensor)


# ---------------------------------------------------------------- ResNet shortcut semantics
def test_shortcut_a_subsamples_and_zero_pads():
    x = td.randn(2, 4, 6, 6, requires_grad=True)
    s = ShortcutA(4, 10, stride=2)
    y = s(x)
    assert y.shape == (2, 10, 3, 3) and list(s.parameters()) == []
    np.testing.assert_array_equal(y.detach().numpy()[:, :4], x.detach().numpy()[:, :, ::2, ::2])
    assert not y.detach().numpy()[:, 4:].any()
    g = td.randn(*y.shape)
    y.backward(g)
    expected = np.zeros(x.shape, np.float32)
    expected[:, :, ::2, ::2] = g.numpy()[:, :4]
    np.testing.assert_array_equal(x.grad.numpy(), expected)


@pytest.mark.parametrize("shortcut", ["A", "B", "C", None])
def test_block_with_zero_residual_branch(shortcut):
    """With the residual branch's convs at zero, F(x) = 0: a residual block returns
    relu(shortcut(x)), a plain one relu(0) = 0."""
    td.manual_seed(0)
    m = models.create("resnet20", shortcut=shortcut) if shortcut else models.create("plain20")
    m.eval()
    block = m.layer2[0]                                # 16 -> 32 channels, stride 2
    for conv in (block.conv1, block.conv2):
        conv.weight.array[...] = 0
    x = td.randn(2, 16, 8, 8)
    with td.no_grad():
        y = block(x).numpy()
    if shortcut is None:
        assert not y.any() and block.downsample is None
    elif shortcut == "A":
        expected = np.zeros((2, 32, 4, 4), np.float32)
        expected[:, :16] = np.maximum(x.numpy()[:, :, ::2, ::2], 0)
        np.testing.assert_allclose(y, expected, rtol=1e-6)
    else:
        assert isinstance(block.downsample, nn.Sequential) and y.shape == (2, 32, 4, 4) and y.any()
    later = m.layer2[1].downsample
    assert (later is not None) == (shortcut == "C")


def test_resnet_rejects_bad_options():
    with pytest.raises(ValueError, match="shortcut"):
        models.create("resnet20", shortcut="D")
    with pytest.raises(ValueError, match="6n"):
        models.resnet._cifar(21, 10, "A")


def test_mobilenet_blocks_are_depthwise_separable(no_init):
    m = models.create("mobilenet_v1")
    blocks = list(m.features)[1:]
    assert len(blocks) == 13
    for b in blocks:
        c = b.depthwise.in_channels
        assert b.depthwise.groups == c and tuple(b.depthwise.weight.shape) == (c, 1, 3, 3)
        assert b.pointwise.kernel_size == (1, 1)
    assert [b.depthwise.stride[0] for b in blocks].count(2) == 4


def test_nin_rejects_unknown_config():
    with pytest.raises(ValueError, match="config"):
        models.create("nin", config="mnist")
    m = models.create("nin", num_classes=100)
    assert m.features[-1][4].out_channels == 100          # the last 1x1 conv makes one map per class
