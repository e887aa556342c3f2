"""Noise calibration data and the statistics noise models are fit on.

A sensor hands noise models a :class:`Calibration`: dark frames (lens
capped, no light: bias, fixed pattern, row, read and quantisation noise
only) and pairs of flat-field frames at a few light levels.  Dark frames
carry no shot noise, so the system gain K (DN per electron) is measured the
way ELD and every photon-transfer calibration measure it: from the variance
of the difference of two flat frames against their mean (the difference
cancels the fixed pattern).  Test images are never part of a calibration.

Arrays are numpy, in DN above the black level, packed Bayer ``(4, h, w)``:
channels 0, 1 (R, G1) come from even raw rows and 2, 3 (G2, B) from odd raw
rows, so noise shared along a raw row is shared by a pair of channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Calibration:
    """Calibration frames of one sensor at one gain.

    ``dark``: ``(N, 4, h, w)``; ``flat``: ``(L, 2, 4, h, w)`` (two frames per
    light level); ``white``: white level minus black level in DN;
    ``truth``: the sensor's own noise sampler (``sample(signal, generator,
    random_position)``) where the sensor is simulated, else ``None``; only the
    ``true_sensor`` oracle may use it."""

    dark: np.ndarray
    flat: np.ndarray
    white: float
    truth: Any = None


def photon_transfer_gain(dark: np.ndarray, flat: np.ndarray) -> float:
    """System gain K from flat-field pairs: var(F1 - F2) / 2 = K * mean + c.

    Least-squares slope over the light levels; the offset ``c`` absorbs the
    signal-independent noise.  Means are taken above the dark frames' mean
    so a bias does not leak into the slope's abscissa."""
    offset = float(dark.mean())
    means = flat.mean(axis=(1, 2, 3, 4)) - offset
    variances = np.array([np.var(pair[0] - pair[1]) / 2 for pair in flat])
    if len(means) < 2 or np.ptp(means) <= 0:
        raise ValueError("photon-transfer calibration needs flat frames at two or more levels")
    slope, _ = np.polyfit(means, variances, 1)
    return float(max(slope, 1e-6))


def row_means(x: np.ndarray) -> np.ndarray:
    """Per raw row mean of packed frames ``(N, 4, h, w)`` -> ``(N, 2, h)``
    (index 1: 0 = even raw rows from channels R, G1; 1 = odd rows)."""
    return np.stack([x[:, 0:2].mean(axis=(1, 3)), x[:, 2:4].mean(axis=(1, 3))], axis=1)


def row_field(rows: np.ndarray, w: int) -> np.ndarray:
    """Spread per raw row values ``(N, 2, h)`` over packed frames ``(N, 4, h, w)``."""
    field = rows[:, [0, 0, 1, 1], :, None]
    return np.broadcast_to(field, (*field.shape[:3], w)).copy()


@dataclass
class DarkStats:
    """A dark-frame decomposition into the PNNP/ELD components."""

    bias: np.ndarray          # (4,) per-channel mean
    fixed_pattern: np.ndarray  # (4, h, w) temporal mean, shrunk to its own variance
    row_sigma: float          # std of the per-row offsets
    read: np.ndarray          # residual samples: read + quantisation (fixed pattern removed)
    read_with_pattern: np.ndarray  # residual samples with the fixed pattern left in (ELD)


def decompose(dark: np.ndarray, max_samples: int = 200_000, seed: int = 0) -> DarkStats:
    """Split dark frames into bias, fixed pattern, row noise and read noise.

    The temporal mean of N frames is the fixed pattern plus 1/N of the
    temporal noise; it is shrunk by the ratio of the pattern's variance to
    its estimate's (a Wiener factor) so that noise is not counted twice.  Row
    offsets are measured the same way: a row mean holds 1/(2w) of the read
    noise variance, which is subtracted."""
    n, _, h, w = dark.shape
    dark = dark.astype(np.float64)
    bias = dark.mean(axis=(0, 2, 3))
    x = dark - bias[None, :, None, None]
    pattern = x.mean(axis=0)
    temporal = x - pattern
    v_temporal = temporal.var() * n / max(n - 1, 1)
    v_est = pattern.var()
    v_pattern = max(v_est - v_temporal / n, 0.0)
    if v_est > 0:
        pattern = pattern * np.sqrt(v_pattern / v_est)
    rows = row_means(temporal)
    v_rows = max(rows.var() - v_temporal / (2 * w), 0.0)
    read = temporal - row_field(rows, w)
    with_pattern = x - row_field(row_means(x), w)
    rng = np.random.default_rng(seed)

    def subsample(a: np.ndarray) -> np.ndarray:
        a = a.ravel()
        return a if a.size <= max_samples else rng.choice(a, max_samples, replace=False)

    return DarkStats(bias, pattern.astype(np.float32), float(np.sqrt(v_rows)),
                     subsample(read), subsample(with_pattern))
