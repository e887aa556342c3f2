"""Two augmented views per sample, in torch on the run's device.

Images arrive normalised (per-channel standardised, ``(B, C, H, W)``) and
get, per image, with the run's augmentation generator:

1. random resized crop: a box of ``area ~ U(crop_scale)`` of the image and
   aspect ratio ``exp(U(log crop_ratio))`` at a uniform position, resampled
   bilinearly to the full size (one ``affine_grid``/``grid_sample``), and a
   horizontal flip with probability ``flip`` (a negative x scale of the same
   affine map);
2. colour jitter with probability ``jitter_p`` at strength ``jitter``, in the
   normalised space (no clipping): brightness adds ``U(-j, j)`` standard
   deviations, contrast scales deviations from the image mean by ``U(1-j,
   1+j)``, saturation (3 channels) blends with the grey image by ``U(1-j,
   1+j)``; the order of the three is fixed;
3. Gaussian blur with probability ``blur_p``, ``sigma ~ U(blur_sigma)``
   pixels, a kernel of about a tenth of the image side (odd, at least 3),
   reflect padding.

Tabular rows (standardised features) get Gaussian feature noise of ``noise``
standard deviations and masking: each feature is set to 0 (the train mean)
with probability ``mask``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Prob = Annotated[float, Field(ge=0, le=1)]
Area = Annotated[float, Field(gt=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


class Views(BaseModel):
    """The ``views:`` section: which augmentations make the two views."""

    model_config = ConfigDict(extra="forbid")
    #: auto: image augmentations for (C, H, W) data, tabular ones otherwise
    kind: Literal["auto", "image", "tabular"] = "auto"
    crop_scale: tuple[Area, Area] = (0.2, 1.0)
    crop_ratio: tuple[Positive, Positive] = (3 / 4, 4 / 3)
    flip: Prob = 0.5
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.4
    jitter_p: Prob = 0.8
    blur_p: Prob = 0.5
    blur_sigma: tuple[Positive, Positive] = (0.1, 2.0)
    noise: Annotated[float, Field(ge=0)] = 0.2
    mask: Annotated[float, Field(ge=0, lt=1)] = 0.3


def _uniform(lo: float, hi: float, n: int, gen, device):
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def resized_crop(x, cfg: dict, gen):
    """Random resized crop and horizontal flip of a normalised batch."""
    import torch
    import torch.nn.functional as F

    b, dev = len(x), x.device
    area = _uniform(*cfg["crop_scale"], b, gen, dev)
    log_r = _uniform(math.log(cfg["crop_ratio"][0]), math.log(cfg["crop_ratio"][1]), b, gen, dev)
    ratio = torch.exp(log_r)
    # width and height as fractions of the image side (the grid spans [-1, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * torch.rand(b, generator=gen, device=dev) - 1) * (1 - w)
    cy = (2 * torch.rand(b, generator=gen, device=dev) - 1) * (1 - h)
    flip = torch.rand(b, generator=gen, device=dev) < cfg["flip"]
    sx = torch.where(flip, -w, w)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(x, strength: float, p: float, gen):
    """Brightness, contrast and (3 channels) saturation jitter in the normalised space."""
    import torch

    if strength <= 0 or p <= 0:
        return x
    b, c, dev = len(x), x.shape[1], x.device
    apply = (torch.rand(b, generator=gen, device=dev) < p).to(x.dtype)[:, None, None, None]
    shift = _uniform(-strength, strength, b, gen, dev)[:, None, None, None]
    out = x + shift
    scale = _uniform(1 - strength, 1 + strength, b, gen, dev)[:, None, None, None]
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = mean + scale * (out - mean)
    sat = _uniform(1 - strength, 1 + strength, b, gen, dev)[:, None, None, None]
    if c == 3:
        grey = out.mean(dim=1, keepdim=True)
        out = grey + sat * (out - grey)
    return apply * out + (1 - apply) * x


def gaussian_blur(x, sigma_range: tuple[float, float], p: float, gen):
    """Per-image Gaussian blur (separable, reflect padding) with probability ``p``."""
    import torch
    import torch.nn.functional as F

    if p <= 0:
        return x
    b, c, h, w = x.shape
    dev = x.device
    k = max(3, int(round(0.1 * min(h, w))) | 1)
    sigma = _uniform(*sigma_range, b, gen, dev)
    apply = torch.rand(b, generator=gen, device=dev) < p
    r = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
    kernel = torch.exp(-r[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (b, k)
    weight = kernel.repeat_interleave(c, 0)  # (b * c, k)
    pad = k // 2
    flat = x.reshape(1, b * c, h, w)
    mode = "reflect" if min(h, w) > pad else "replicate"
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode=mode), weight[:, None, :, None],
                    groups=b * c)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode=mode), weight[:, None, None, :],
                    groups=b * c)
    blurred = flat.reshape(b, c, h, w)
    return torch.where(apply[:, None, None, None], blurred, x)


def image_view(x, cfg: dict, gen):
    """One augmented view of a normalised image batch ``(B, C, H, W)``."""
    x = resized_crop(x, cfg, gen)
    x = colour_jitter(x, cfg["jitter"], cfg["jitter_p"], gen)
    return gaussian_blur(x, tuple(cfg["blur_sigma"]), cfg["blur_p"], gen)


def tabular_view(x, cfg: dict, gen):
    """One augmented view of standardised rows ``(B, F)``: noise, then masking."""
    import torch

    if cfg["noise"] > 0:
        x = x + cfg["noise"] * torch.randn(x.shape, generator=gen, device=x.device,
                                           dtype=x.dtype)
    if cfg["mask"] > 0:
        keep = torch.rand(x.shape, generator=gen, device=x.device) >= cfg["mask"]
        x = x * keep.to(x.dtype)
    return x


def view_maker(cfg: dict, in_shape: tuple, label: str = "dataset"):
    """``view(x, generator)`` for data of ``in_shape`` under ``cfg`` (``Views``)."""
    from harness import UserError

    image = len(in_shape) == 3
    kind = cfg["kind"]
    if kind == "image" and not image:
        raise UserError(f"views.kind is 'image' but dataset {label!r} has rows of shape "
                        f"{tuple(in_shape)}, not images (C, H, W); use kind: auto or tabular")
    if kind == "image" or (kind == "auto" and image):
        return lambda x, gen: image_view(x, cfg, gen)
    return lambda x, gen: tabular_view(x.reshape(len(x), -1), cfg, gen).reshape(x.shape)
