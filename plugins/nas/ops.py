"""Candidate operations on a cell edge (the NAS-Bench-201 set).

Imported only when a network is built (it needs torch); the vocabulary of
names lives in :mod:`harness_plugins.nas.spaces` so that suite validation
stays torch-free.  Every operation maps ``(N, C, H, W)`` to the same shape.
"""

from __future__ import annotations

import torch
from torch import nn


class Zero(nn.Module):
    """The ``none`` operation: the edge carries nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: NAS-Bench-201's convolution block."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def build_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    """The operation ``name`` on ``channels`` channels.  Supernets use
    ``affine=False`` batch norm (as DARTS does) so that the op weights alpha,
    not a learnt BN scale, carry the importance of an op."""
    if name == "none":
        return Zero()
    if name == "skip":
        return nn.Identity()
    if name == "conv1x1":
        return ReLUConvBN(channels, channels, 1, affine=affine)
    if name == "conv3x3":
        return ReLUConvBN(channels, channels, 3, affine=affine)
    if name == "avgpool3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown operation {name!r}")


class ResidualReduction(nn.Module):
    """Between stages: halve the resolution and double the channels
    (NAS-Bench-201's residual block: two conv blocks plus a pooled 1x1
    shortcut)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)
