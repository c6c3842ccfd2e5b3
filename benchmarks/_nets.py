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


def resnet20(lib, functional):
    """CIFAR ResNet-20 (He et al. 2016, sec. 4.2): 3x3 conv 16, three stages of three
    basic blocks (16, 32, 64 channels; stride 2 at stages 2 and 3), global average
    pool, fc 10. Option A: a shortcut that changes shape subsamples by 2 and pads
    the new channels with zeros (no parameters). ~0.27M parameters."""

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
            out = functional.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x
            if self.stride != 1 or self.pad:
                shortcut = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return functional.relu(out + shortcut)

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
            x = self.blocks(functional.relu(self.bn(self.conv(x))))
            return self.fc(self.pool(x).flatten(1))
    return ResNet20()
