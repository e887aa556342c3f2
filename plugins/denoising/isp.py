"""Inverse and forward image signal processing (ISP) for raw-like images.

Real low-light raw sets (SID, ELD) are tens of gigabytes; instead clean
raw-like images are made from ordinary sRGB photographs by undoing a camera
pipeline, as in Brooks et al. 2019 ("Unprocessing images for learned raw
denoising"): inverse sRGB gamma, inverse colour correction (camera RGB from
linear sRGB), inverse white balance, then an RGGB Bayer mosaic packed into 4
channels at half resolution, the layout the low-light U-Nets take.

The forward pipeline turns a packed raw image back into sRGB for reports:
each 2x2 Bayer cell becomes one RGB pixel (R, mean of the two greens, B), so
a forward pass of an unprocessed image returns the photograph at half
resolution.  Everything is numpy on ``float`` arrays in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: linear sRGB -> camera RGB.  Rows sum to 1 so grey stays grey; the
#: off-diagonal cross-talk is of the size real colour filters show.
RGB2CAM = ((0.80, 0.15, 0.05),
           (0.10, 0.80, 0.10),
           (0.05, 0.20, 0.75))


@dataclass(frozen=True)
class Camera:
    """The fixed pipeline parameters of the simulated camera."""

    red_gain: float = 2.0
    blue_gain: float = 1.6
    rgb2cam: tuple = field(default=RGB2CAM)

    @property
    def cam2rgb(self) -> np.ndarray:
        """Colour correction matrix: camera RGB -> linear sRGB."""
        return np.linalg.inv(np.asarray(self.rgb2cam, dtype=np.float64))

    @property
    def wb(self) -> np.ndarray:
        """White-balance gains for (R, G, B)."""
        return np.array([self.red_gain, 1.0, self.blue_gain])


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB gamma (IEC 61966-2-1 transfer function)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB gamma of linear intensities in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def unprocess(rgb: np.ndarray, camera: Camera = Camera()) -> np.ndarray:
    """sRGB ``(H, W, 3)`` in [0, 1] -> linear camera RGB ``(H, W, 3)``."""
    lin = srgb_to_linear(rgb)
    cam = lin @ np.asarray(camera.rgb2cam).T
    # clip after white balance: a sensor cannot record negative light, and
    # dividing by gains >= 1 keeps highlights below saturation
    return np.clip(cam / camera.wb, 0.0, 1.0)


def process(cam: np.ndarray, camera: Camera = Camera()) -> np.ndarray:
    """Linear camera RGB ``(H, W, 3)`` -> sRGB in [0, 1] (inverse of :func:`unprocess`)."""
    lin = np.clip(cam * camera.wb, 0.0, None) @ camera.cam2rgb.T
    return linear_to_srgb(lin)


def mosaic(cam: np.ndarray) -> np.ndarray:
    """RGGB Bayer mosaic of camera RGB ``(H, W, 3)`` -> ``(H, W)`` (H, W even)."""
    h, w, _ = cam.shape
    out = np.empty((h, w), dtype=cam.dtype)
    out[0::2, 0::2] = cam[0::2, 0::2, 0]
    out[0::2, 1::2] = cam[0::2, 1::2, 1]
    out[1::2, 0::2] = cam[1::2, 0::2, 1]
    out[1::2, 1::2] = cam[1::2, 1::2, 2]
    return out


def pack(bayer: np.ndarray) -> np.ndarray:
    """Bayer ``(H, W)`` -> packed ``(4, H/2, W/2)`` in R, G1, G2, B order."""
    return np.stack([bayer[0::2, 0::2], bayer[0::2, 1::2],
                     bayer[1::2, 0::2], bayer[1::2, 1::2]])


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed ``(4, h, w)`` -> Bayer ``(2h, 2w)`` (inverse of :func:`pack`)."""
    _, h, w = packed.shape
    out = np.empty((2 * h, 2 * w), dtype=packed.dtype)
    out[0::2, 0::2], out[0::2, 1::2] = packed[0], packed[1]
    out[1::2, 0::2], out[1::2, 1::2] = packed[2], packed[3]
    return out


def to_raw(rgb: np.ndarray, camera: Camera = Camera()) -> np.ndarray:
    """sRGB photograph ``(H, W, 3)`` -> clean packed raw ``(4, H//2, W//2)`` float32.

    An odd last row or column is dropped so the mosaic tiles exactly."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    return pack(mosaic(unprocess(rgb[:h, :w], camera))).astype(np.float32)


def to_srgb(packed: np.ndarray, camera: Camera = Camera()) -> np.ndarray:
    """Packed raw ``(4, h, w)`` -> sRGB ``(h, w, 3)``: one RGB pixel per Bayer cell."""
    p = np.asarray(packed, dtype=np.float64)
    cam = np.stack([p[0], (p[1] + p[2]) / 2, p[3]], axis=-1)
    return process(np.clip(cam, 0.0, 1.0), camera)
