"""Image classifiers of the papers harness reproduces: ResNet, pre-activation
ResNet, Wide ResNet and VGG with batch norm, for any channel count and image size.

The CIFAR variants (3x3 stem, no max-pool) are the defaults, as in the
papers' CIFAR experiments; ``stem: imagenet`` gives the 7x7 stride-2 stem
with max-pool for larger images.  Every network ends in global average
pooling, so MNIST's 1x28x28, CIFAR's 3x32x32 and a 64x64 folder all work.
``width`` scales the channels (64 in the papers; small widths keep tests and
CPU benchmarks fast).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl
from harness_plugins.classification.models import InShape, NClasses, outputs

Width = Annotated[int, Field(ge=1, le=1024)]
Head = Annotated[int, Field(ge=1)] | None


def _image_shape(name: str, in_shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        from harness import ConfigError

        # a suite input, not a method failure: said once, the run planned again
        raise ConfigError("model", name, f"{name} needs image data (C, H, W); this dataset "
                          f"has shape {tuple(in_shape)}: use the mlp model or an image dataset")
    return tuple(in_shape)


def _stem(c_in: int, width: int, stem: str):
    import torch.nn as nn

    if stem == "imagenet":
        return [nn.Conv2d(c_in, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    return [nn.Conv2d(c_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True)]


def _blocks():
    """The residual block classes (built lazily: torch is imported on first use)."""
    import torch.nn as nn
    import torch.nn.functional as F

    class BasicBlock(nn.Module):
        """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut, then ReLU (He et al. 2016)."""

        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                              nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class PreActBlock(nn.Module):
        """BN-ReLU-conv3x3 twice, identity or projected shortcut from the first
        activation (He et al. 2016, *Identity Mappings*); ``dropout`` between
        the convolutions as in Wide ResNets."""

        def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(c_in)
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.shortcut = None
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

        def forward(self, x):
            out = F.relu(self.bn1(x))
            short = self.shortcut(out) if self.shortcut is not None else x
            out = self.conv1(out)
            out = self.conv2(self.dropout(F.relu(self.bn2(out))))
            return out + short

    return BasicBlock, PreActBlock


def _resnet(name: str, in_shape, n_classes: int, depths: list[int], width: int, stem: str,
            preact: bool, head):
    import torch.nn as nn

    c, _, _ = _image_shape(name, in_shape)
    basic, pre = _blocks()
    block = pre if preact else basic
    layers: list = ([nn.Conv2d(c, width, 3, 1, 1, bias=False)] if preact and stem == "cifar"
                    else _stem(c, width, stem))
    c_in = width
    for stage, n in enumerate(depths):
        c_out = width * 2 ** stage
        for i in range(n):
            layers.append(block(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
            c_in = c_out
    if preact:
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, outputs(n_classes, head))]
    return nn.Sequential(*layers)


def resnet18(in_shape: InShape, n_classes: NClasses, width: Width = 64,
             stem: Literal["cifar", "imagenet"] = "cifar", head: Head = None):
    """ResNet-18 (He et al., CVPR 2016); CIFAR stem (3x3, no max-pool), or stem=imagenet (7x7/2).

    Four stages of two basic blocks, ``width`` x (1, 2, 4, 8) channels,
    global average pooling, one linear layer (``head`` outputs, as for mlp)."""
    return _resnet("resnet18", in_shape, n_classes, [2, 2, 2, 2], width, stem, False, head)


def resnet34(in_shape: InShape, n_classes: NClasses, width: Width = 64,
             stem: Literal["cifar", "imagenet"] = "cifar", head: Head = None):
    """ResNet-34 (He et al., CVPR 2016): stages of 3, 4, 6, 3 basic blocks; CIFAR stem by default.

    Parameters as resnet18."""
    return _resnet("resnet34", in_shape, n_classes, [3, 4, 6, 3], width, stem, False, head)


def preact_resnet18(in_shape: InShape, n_classes: NClasses, width: Width = 64,
                    stem: Literal["cifar", "imagenet"] = "cifar", head: Head = None):
    """Pre-activation ResNet-18 (He et al., ECCV 2016, Identity Mappings in Deep Residual Networks).

    BN-ReLU before each convolution; the common CIFAR network of SAM and
    robustness papers."""
    return _resnet("preact_resnet18", in_shape, n_classes, [2, 2, 2, 2], width, stem, True,
                   head)


def wide_resnet(in_shape: InShape, n_classes: NClasses,
                depth: Annotated[int, Field(ge=10, le=100)] = 28,
                widen_factor: Annotated[int, Field(ge=1, le=20)] = 10,
                dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                width: Width = 16, head: Head = None):
    """Wide ResNet WRN-depth-k (Zagoruyko & Komodakis, BMVC 2016); WRN-28-10 by default.

    (depth - 4) / 6 pre-activation blocks per stage, ``width`` x k x (1, 2, 4)
    channels (16 in the paper), ``dropout`` between the block's convolutions
    (0.3 in the paper's dropout rows).  Dropout makes a run train alone in
    batch mode."""
    import torch.nn as nn

    if (depth - 4) % 6:
        from harness import ConfigError

        raise ConfigError("model.depth", depth, "a Wide ResNet's depth is 6n + 4 "
                          "(10, 16, 22, 28, 34, 40, ...)")
    c, _, _ = _image_shape("wide_resnet", in_shape)
    n = (depth - 4) // 6
    _, pre = _blocks()
    layers: list = [nn.Conv2d(c, width, 3, 1, 1, bias=False)]
    c_in = width
    for stage in range(3):
        c_out = width * widen_factor * 2 ** stage
        for i in range(n):
            layers.append(pre(c_in, c_out, 2 if stage > 0 and i == 0 else 1, dropout))
            c_in = c_out
    layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Linear(c_in, outputs(n_classes, head))]
    return nn.Sequential(*layers)


#: VGG configurations (Simonyan & Zisserman 2015): channels, "M" = 2x2 max-pool.
VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
}


def _vgg(name: str, config: list, in_shape, n_classes: int, width: int, head):
    import torch.nn as nn

    c, h, w = _image_shape(name, in_shape)
    layers: list = []
    for v in config:
        if v == "M":
            if min(h, w) >= 2:  # small images (MNIST, 8x8) run out of pixels first
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        out = max(1, v * width // 64)
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, outputs(n_classes, head))]
    return nn.Sequential(*layers)


def vgg11(in_shape: InShape, n_classes: NClasses, width: Width = 64, head: Head = None):
    """VGG-11 with batch norm (Simonyan & Zisserman, ICLR 2015), CIFAR form: one linear head.

    ``width`` scales the channels (64 in the paper)."""
    return _vgg("vgg11", VGG_CONFIGS[11], in_shape, n_classes, width, head)


def vgg16(in_shape: InShape, n_classes: NClasses, width: Width = 64, head: Head = None):
    """VGG-16 with batch norm (Simonyan & Zisserman, ICLR 2015), CIFAR form: one linear head.

    ``width`` scales the channels (64 in the paper)."""
    return _vgg("vgg16", VGG_CONFIGS[16], in_shape, n_classes, width, head)


@hookimpl
def register_models(register):
    """ResNet-18/34, pre-activation ResNet-18, Wide ResNet, VGG-11/16 (batch norm)."""
    register("resnet18", resnet18)
    register("resnet34", resnet34)
    register("preact_resnet18", preact_resnet18)
    register("wide_resnet", wide_resnet)
    register("vgg11", vgg11)
    register("vgg16", vgg16)
