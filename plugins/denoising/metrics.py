"""Denoising metrics: PSNR and SSIM of denoised test images, and distribution
distances between a noise model's dark frames and held-out real ones.

Image metrics take lists of packed raw images ``(4, h, w)`` in [0, 1] (test
images differ in size) and average the per-image values, as the low-light
papers report them.  SSIM is scikit-image's ``structural_similarity`` on the
packed 4-channel raw (``channel_axis=0``, ``data_range=1``), not on a
demosaiced sRGB rendering.  Noise distances take two arrays of dark-frame
values in DN (any shape; the pixel value distribution is compared).
``noise_quantile_l1`` is PNNP's own training loss on dark frames, so it
favours PNNP by construction; ``flat_noise_kl`` compares flat-field noise
(frame minus its level) at a level no model was fit on, where shot and read
noise act together.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import hookimpl, metric


def psnr_value(clean, denoised, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) of one image; inf when the images are equal."""
    import numpy as np

    mse = float(np.mean((np.asarray(clean, np.float64) - np.asarray(denoised, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(data_range ** 2 / mse))


def ssim_value(clean, denoised) -> float:
    """scikit-image SSIM of one packed image (channel axis 0, data range 1)."""
    import numpy as np
    from skimage.metrics import structural_similarity

    a, b = np.asarray(clean, np.float64), np.asarray(denoised, np.float64)
    win = min(7, min(a.shape[1:]) // 2 * 2 - 1 or 1)
    return float(structural_similarity(a, b, channel_axis=0, data_range=1.0, win_size=win))


def _mean_over_images(fn, clean, denoised) -> float:
    import numpy as np

    if len(clean) != len(denoised):
        raise ValueError(f"{len(clean)} clean images but {len(denoised)} denoised ones")
    return float(np.mean([fn(c, d) for c, d in zip(clean, denoised)]))


def _edges(real, width: float):
    """Bins of ``width`` centred on multiples of it (on whole DN for width 1, so
    integer ADC output and continuous samples are binned alike) over the real
    data's 0.05-99.95 % range, plus one bin for each tail."""
    import numpy as np

    lo = np.floor(np.quantile(real, 0.0005) / width) - 0.5
    hi = np.ceil(np.quantile(real, 0.9995) / width) + 0.5
    return np.concatenate([[-np.inf], np.arange(lo, hi + 0.5) * width, [np.inf]])


def histogram_kl(real, generated, bin_width: float = 1.0, eps: float = 1e-6) -> float:
    """KL(real || generated) of histograms with ``bin_width`` (DN) bins, with
    ``eps`` added to every bin so it stays finite."""
    import numpy as np

    real = np.asarray(real, np.float64).ravel()
    generated = np.asarray(generated, np.float64).ravel()
    edges = _edges(real, bin_width)
    p = np.histogram(real, edges)[0] + eps
    q = np.histogram(generated, edges)[0] + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def quantile_l1(real, generated, levels: int = 999) -> float:
    """Mean |Q_real(u) - Q_generated(u)| over ``levels`` evenly spaced u in (0, 1), in DN."""
    import numpy as np

    u = (np.arange(levels) + 0.5) / levels
    return float(np.mean(np.abs(np.quantile(np.ravel(real), u) - np.quantile(np.ravel(generated),
                                                                              u))))


@metric(inputs=("clean", "denoised"), greater_is_better=True)
def psnr():
    """Peak signal-to-noise ratio (dB) of denoised vs clean packed raw, mean over test images."""
    return lambda clean, denoised: _mean_over_images(psnr_value, clean, denoised)


@metric(inputs=("clean", "denoised"), greater_is_better=True)
def ssim():
    """Structural similarity (scikit-image) on the packed 4-channel raw, mean over test images."""
    return lambda clean, denoised: _mean_over_images(ssim_value, clean, denoised)


@metric(inputs=("clean", "noisy"), greater_is_better=True)
def psnr_noisy():
    """PSNR of the noisy input clipped to [0, 1] (no denoising): the reference for the gain."""
    import numpy as np

    return lambda clean, noisy: _mean_over_images(
        psnr_value, clean, [np.clip(x, 0.0, 1.0) for x in noisy])


@metric(inputs=("dark_real", "dark_generated"), greater_is_better=False)
def noise_kl(bin_width: Annotated[float, Field(gt=0)] = 1.0):
    """KL divergence of held-out real dark frames to the noise model's dark frames (1 DN bins)."""
    return lambda real, generated: histogram_kl(real, generated, bin_width)


@metric(inputs=("flat_real", "flat_generated"), greater_is_better=False)
def flat_noise_kl(bin_width: Annotated[float, Field(gt=0)] = 1.0):
    """KL divergence of held-out real flat-field noise to the model's at its level (1 DN bins)."""
    return lambda real, generated: histogram_kl(real, generated, bin_width)


@metric(inputs=("dark_real", "dark_generated"), greater_is_better=False)
def noise_quantile_l1(levels: Annotated[int, Field(ge=1)] = 999):
    """Mean L1 distance (DN) between quantiles of real and generated dark frames."""
    return lambda real, generated: quantile_l1(real, generated, levels)


METRICS = {"psnr": psnr, "ssim": ssim, "psnr_noisy": psnr_noisy, "noise_kl": noise_kl,
           "noise_quantile_l1": noise_quantile_l1, "flat_noise_kl": flat_noise_kl}


@hookimpl
def register_metrics(register):
    """PSNR, SSIM and noise distribution distances."""
    for name, factory in METRICS.items():
        register(name, factory)
