"""The benchmark networks, written once for both libraries: ``lib`` is ``tinydl.nn``
or ``torch.nn`` and ``functional`` the matching functional module (their APIs are
the same). Nothing here imports either library."""

# The convolution rows: (C_in, C_out, kernel, padding, H = W, batch).
CONV_SHAPES = [(1, 6, 5, 0, 32, 64), (16, 16, 3, 1, 32, 64), (64, 64, 3, 1, 56, 16), (256, 256, 3, 1, 14, 16)]


def lenet5(lib):
    return lib.Sequential(
        lib.Conv2d(1, 6, 5), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(6, 16, 5), lib.ReLU(), lib.MaxPool2d(2),
        lib.Flatten(), lib.Linear(400, 120), lib.ReLU(), lib.Linear(120, 84), lib.ReLU(), lib.Linear(84, 10))


def leaky_pool_net(lib):
    """(3x3 conv -> batch norm -> leaky ReLU 0.2 -> 2x2 max pool) x 3 (32, 64, 128 channels),
    global average pool, fc 10, on CIFAR images: the leaky ReLUs and max pools see inputs
    that no other op saves for backward (a DCGAN-discriminator-like stack)."""
    layers, channels = [], 3
    for width in (32, 64, 128):
        layers += [lib.Conv2d(channels, width, 3, padding=1), lib.BatchNorm2d(width), lib.LeakyReLU(0.2),
                   lib.MaxPool2d(2)]
        channels = width
    return lib.Sequential(*layers, lib.AdaptiveAvgPool2d(1), lib.Flatten(), lib.Linear(channels, 10))


def resnet20(lib, functional, inplace=False):
    """CIFAR ResNet-20 (He et al. 2016, sec. 4.2): 3x3 conv 16, three stages of three
    basic blocks (16, 32, 64 channels; stride 2 at stages 2 and 3), global average
    pool, fc 10. Option A: a shortcut that changes shape subsamples by 2 and pads
    the new channels with zeros (no parameters). ~0.27M parameters. ``inplace``: the
    ReLUs overwrite their input, as torchvision writes its ResNets."""

    class Block(lib.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = lib.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = lib.BatchNorm2d(cout)
            self.conv2 = lib.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = lib.BatchNorm2d(cout)
            self.pad = (cout - cin) // 2
            self.stride = stride

        def forward(self, x):
            out = functional.relu(self.bn1(self.conv1(x)), inplace=inplace)
            out = self.bn2(self.conv2(out))
            shortcut = x
            if self.stride != 1 or self.pad:
                shortcut = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return functional.relu(out + shortcut, inplace=inplace)

    class ResNet20(lib.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = lib.BatchNorm2d(16)
            blocks, cin = [], 16
            for cout, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(3):
                    blocks.append(Block(cin, cout, stride if i == 0 else 1))
                    cin = cout
            self.blocks = lib.Sequential(*blocks)
            self.pool = lib.AdaptiveAvgPool2d(1)
            self.fc = lib.Linear(64, 10)

        def forward(self, x):
            x = self.blocks(functional.relu(self.bn(self.conv(x)), inplace=inplace))
            return self.fc(self.pool(x).flatten(1))
    return ResNet20()


def resnet50(lib, functional):
    """ResNet-50 as torchvision builds it (v1.5: the stride on the 3x3 of a bottleneck,
    1x1 projection shortcuts where the shape changes), 1000 classes, 25.6M parameters."""

    class Bottleneck(lib.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = 4 * width
            self.conv1, self.bn1 = lib.Conv2d(cin, width, 1, bias=False), lib.BatchNorm2d(width)
            self.conv2, self.bn2 = lib.Conv2d(width, width, 3, stride, 1, bias=False), lib.BatchNorm2d(width)
            self.conv3, self.bn3 = lib.Conv2d(width, cout, 1, bias=False), lib.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = lib.Sequential(lib.Conv2d(cin, cout, 1, stride, bias=False), lib.BatchNorm2d(cout))

        def forward(self, x):
            out = functional.relu(self.bn1(self.conv1(x)))
            out = functional.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return functional.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet50(lib.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.Sequential(lib.Conv2d(3, 64, 7, 2, 3, bias=False), lib.BatchNorm2d(64), lib.ReLU(),
                                       lib.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(count):
                    blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = 4 * width
            self.blocks = lib.Sequential(*blocks)
            self.pool = lib.AdaptiveAvgPool2d(1)
            self.fc = lib.Linear(2048, 1000)

        def forward(self, x):
            return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))
    return ResNet50()


def tiny_ops(x, count=400):
    """``count`` elementwise ops on a tiny tensor, alternating * and +: the per-op cost of
    a framework (graph recording, dispatch), not arithmetic."""
    for i in range(count // 2):
        x = x * 1.001 + 0.001
    return x
