"""Image classifiers: a small ResNet-9 for CPUs and the CIFAR ResNet-18 of the paper."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import check_number
from . import MODELS
from .base import Classifier


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(Classifier):
    """prep conv -> [conv, pool, residual] -> [conv, pool] -> [conv, pool, residual] -> pool -> linear.

    width 12 (default): ~0.23M parameters; width 16: ~0.41M (their training times: docs/decisions.md).
    """

    channels_last = True

    def __init__(self, num_classes: int, input_shape: tuple, width: int = 16):
        super().__init__()
        c = input_shape[0]
        w = [width, 2 * width, 4 * width, 8 * width]
        self.prep = conv_bn(c, w[0])
        self.layer1 = nn.Sequential(conv_bn(w[0], w[1]), nn.MaxPool2d(2))
        self.res1 = Residual(w[1])
        self.layer2 = nn.Sequential(conv_bn(w[1], w[2]), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(conv_bn(w[2], w[3]), nn.MaxPool2d(2))
        self.res3 = Residual(w[3])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(w[3], num_classes)

    def classify(self, e, x=None):
        h = self.res3(self.layer3(self.layer2(self.res1(self.layer1(self.prep(e))))))
        return self.fc(torch.flatten(self.pool(h), 1))

    def layer_groups(self):
        return [self.prep, self.layer1, self.res1, self.layer2, self.layer3, self.res3, self.fc]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(Classifier):
    """CIFAR ResNet-18: 3x3 stem, no max-pool, [2, 2, 2, 2] basic blocks, ~11.2M parameters."""

    channels_last = True

    def __init__(self, num_classes: int, input_shape: tuple, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        blocks, cin = [], width
        for i, stride in enumerate([1, 2, 2, 2]):
            cout = width * 2**i
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def classify(self, e, x=None):
        h = self.blocks(self.stem(e))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))

    def layer_groups(self):
        return [self.stem, *self.blocks, self.fc]


MAX_WIDTH = 1024  # channels of the first stage; wider is no CPU or single-GPU model


def check_params(params: dict) -> None:
    """The ResNets' model_params, checked before any data is read or anything trains."""
    if "width" in params:
        check_width(params["width"])


def check_width(width) -> int:
    return check_number("model_params.width", width, lo=1, hi=MAX_WIDTH, integer=True, what="channels")


@MODELS.register("resnet9", kind="image", check_params=check_params)
def resnet9(num_classes: int, input_shape: tuple, width: int = 12) -> Classifier:
    return ResNet9(num_classes, input_shape, check_width(width))


@MODELS.register("resnet18", kind="image", check_params=check_params)
def resnet18(num_classes: int, input_shape: tuple, width: int = 64) -> Classifier:
    return ResNet18(num_classes, input_shape, check_width(width))
