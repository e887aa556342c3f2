"""Denoisers: learned (``unet``, ``dncnn``) and non-learned (``bm3d``, ``identity``).

Every factory returns a ``torch.nn.Module`` mapping packed raw ``(B, C, h, w)``
to a denoised image of the same shape; ``in_channels`` (4 for RGGB) is offered
by the task (``harness.FromData``).  A module whose attribute ``trainable`` is
false is applied as it is (no parameters, no training).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import FromData, hookimpl


def unet(in_channels: Annotated[int, FromData], width: Annotated[int, Field(ge=1)] = 16,
         depth: Annotated[int, Field(ge=1)] = 4, residual: bool = False):
    """Low-light raw U-Net (SID/ELD: conv3x3-LeakyReLU pairs, max-pool, transposed-conv skips).

    ``width``: channels of the first level (SID uses 32), doubled per level;
    ``depth``: number of down-sampling steps; ``residual``: predict the noise
    and subtract it instead of predicting the clean image."""
    return _unet(in_channels, width, depth, residual)


def _unet(channels: int, width: int, depth: int, residual: bool):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2))

    class UNet(nn.Module):
        trainable = True

        def __init__(self):
            super().__init__()
            widths = [width * 2 ** i for i in range(depth + 1)]
            self.down = nn.ModuleList([block(channels, widths[0])] + [
                block(widths[i], widths[i + 1]) for i in range(depth)])
            self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                     for i in reversed(range(depth))])
            self.merge = nn.ModuleList([block(2 * widths[i], widths[i])
                                        for i in reversed(range(depth))])
            self.out = nn.Conv2d(widths[0], channels, 1)

        def forward(self, x):
            h, w = x.shape[-2:]
            m = 2 ** depth
            # pad (edge-replicate: works for any size) to a multiple of 2^depth so every
            # skip lines up; crop back after
            ph, pw = (-h) % m, (-w) % m
            y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
            skips = []
            for i, level in enumerate(self.down):
                y = level(y if i == 0 else F.max_pool2d(y, 2))
                skips.append(y)
            for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
                y = merge(torch.cat([up(y), skip], dim=1))
            y = self.out(y)[..., :h, :w]
            return x - y if residual else y

    return UNet()


def dncnn(in_channels: Annotated[int, FromData], depth: Annotated[int, Field(ge=2)] = 10,
          width: Annotated[int, Field(ge=1)] = 32):
    """DnCNN (Zhang et al. 2017): conv-BN-ReLU stack predicting the noise (residual learning)."""
    import torch.nn as nn

    layers: list = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]
    layers.append(nn.Conv2d(width, in_channels, 3, padding=1))

    class DnCNN(nn.Module):
        trainable = True

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x - self.body(x)

    return DnCNN()


def identity(in_channels: Annotated[int, FromData]):
    """No denoising: the noisy input itself (the floor every denoiser must beat)."""
    import torch.nn as nn

    class Identity(nn.Module):
        trainable = False

        def forward(self, x):
            return x

    return Identity()


BM3D_MISSING = ("denoiser 'bm3d' needs the bm3d package, an optional extra: "
                "pip install 'harness-bench[denoise]'")


def bm3d(in_channels: Annotated[int, FromData],
         sigma: Annotated[float, Field(gt=0)] | None = None):
    """BM3D (Dabov et al. 2007, the bm3d package; extra 'denoise'), per packed channel.

    ``sigma``: noise standard deviation of the amplified input; ``None``
    estimates it per channel (wavelet median absolute deviation, scikit-image)."""
    import importlib.util

    import torch.nn as nn

    class BM3D(nn.Module):
        trainable = False

        def forward(self, x):
            import numpy as np
            import torch

            if importlib.util.find_spec("bm3d") is None:
                from harness import UserError

                raise UserError(BM3D_MISSING)
            import bm3d as lib
            from skimage.restoration import estimate_sigma

            arr = x.detach().cpu().numpy().astype(np.float64)
            out = np.empty_like(arr)
            for i in np.ndindex(arr.shape[:2]):
                s = sigma if sigma is not None else max(float(estimate_sigma(arr[i])), 1e-4)
                out[i] = lib.bm3d(arr[i], sigma_psd=s)
            return torch.as_tensor(out, dtype=x.dtype, device=x.device)

    return BM3D()


@hookimpl
def register_denoisers(register):
    """Learned and classical denoisers."""
    register("unet", unet)
    register("dncnn", dncnn)
    register("bm3d", bm3d)
    register("identity", identity)
