"""Physics noise models for low-light raw images: gaussian, poisson_gaussian, eld.

A noise model is fit on a sensor's :class:`~harness_plugins.denoising.calibration.Calibration`
(dark and flat-field frames, never test images) and then samples noisy raw
values from clean ones, in DN above the black level (``sample(signal,
generator)``, torch tensors ``(B, 4, h, w)``).  The low-light pipeline (ELD,
Wei et al. 2020) around it is :func:`low_light`: the clean image is scaled
down by the amplification ratio, noise is added, the result is normalised
and scaled back up.

- ``gaussian``: homoscedastic N(0, sigma), sigma from the dark frames; the
  classical baseline.
- ``poisson_gaussian``: shot noise Poisson(x / K) K plus N(0, sigma).
- ``eld``: shot + Tukey-lambda read noise + row noise + quantisation +
  per-channel bias, optionally with the gain sampled per image (log K
  uniform; log sigma_read and log sigma_row each linear in log K with its
  own slope and residual, the slopes of ELD's released SonyA7S2 parameters
  by default) as ELD trains; its inputs are clipped to [0, 1] as ELD's data
  pipeline clips them.

A model may declare ``input_range`` (the clip of amplified inputs, in
training and at test; default ``(None, 1.0)``: saturation only) and
``dark_shading(h, w)`` (a calibrated per-pixel offset in DN that its method
subtracts from a real noisy frame before denoising; default ``None``):
:func:`model_input` applies both to the sensor's test inputs.
- ``true_sensor``: the simulated sensor's own noise, an oracle upper bound.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from harness import hookimpl


class NoiseModel:
    """Base class: ``fit(calibration) -> self``, ``sample(signal, generator)``,
    ``params() -> dict`` (fitted values, logged by the task)."""

    learned = False
    #: (low, high) clip of amplified inputs in [0, 1] units; None: unclipped
    input_range: tuple[float | None, float | None] = (None, 1.0)

    def dark_shading(self, h: int, w: int):
        """The ``(4, h, w)`` DN offset (fixed pattern and black-level error)
        this model's method subtracts from real frames, or None."""
        return None

    def fit(self, calib) -> NoiseModel:
        """Estimate the parameters from calibration frames; returns self."""
        raise NotImplementedError

    def sample(self, signal, generator):
        """Noisy DN for clean DN ``signal`` ``(B, 4, h, w)`` (torch)."""
        raise NotImplementedError

    def params(self) -> dict[str, float]:
        """Fitted parameters by name."""
        return {}


def shot(signal, gain: float, generator):
    """Poisson shot noise in DN: Poisson(signal / K) * K."""
    import torch

    return torch.poisson(signal.clamp_min(0) / gain, generator=generator) * gain


def tukey_lambda(shape, lam: float, scale: float, generator, device):
    """Tukey-lambda samples by the inverse CDF: ((u^l - (1-u)^l) / l) * scale."""
    import torch

    u = torch.rand(shape, generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
    if abs(lam) < 1e-6:
        q = torch.log(u / (1 - u))
    else:
        q = (u ** lam - (1 - u) ** lam) / lam
    return q * scale


def row_noise(shape, sigma: float, generator, device):
    """Offsets shared along each raw row of packed frames ``(B, 4, h, w)``:
    R and G1 share even raw rows, G2 and B odd ones."""
    import torch

    b, _, h, w = shape
    rows = torch.randn((b, 2, h, 1), generator=generator, device=device) * sigma
    return rows[:, [0, 0, 1, 1]].expand(b, 4, h, w)


def quantisation(shape, generator, device):
    """Uniform quantisation error of an ADC with a 1 DN step."""
    import torch

    return torch.rand(shape, generator=generator, device=device) - 0.5


def low_light(clean, model: NoiseModel, ratio: float, white: float, generator):
    """Noisy amplified input for clean packed raw ``clean`` in [0, 1].

    signal = clean * white / ratio; noisy = model.sample(signal); input =
    noisy / white * ratio clipped to the model's ``input_range`` (saturation
    at 1 by default; ELD also clips at 0)."""
    noisy = model.sample(clean * (white / ratio), generator)
    low, high = getattr(model, "input_range", (None, 1.0))
    return (noisy * (ratio / white)).clamp(low, high)


def model_input(model: NoiseModel, noisy, ratio: float, white: float):
    """The denoiser's input from a sensor's amplified noisy image ``(4, h, w)``
    (numpy, [0, 1] units): minus the model's ``dark_shading`` (DN, amplified
    like the signal) where its method subtracts one, clipped to its
    ``input_range``.  The sensor has already saturated the frame at 1, so a
    pixel within the shading of saturation is corrected from 1, not from its
    unclipped value (a real raw file is saturated before correction too)."""
    import numpy as np

    out = np.asarray(noisy, np.float32)
    shading = model.dark_shading(*out.shape[1:])
    if shading is not None:
        out = out - np.asarray(shading, np.float32) * np.float32(ratio / white)
    low, high = getattr(model, "input_range", (None, 1.0))
    return np.clip(out, low, high) if low is not None or high is not None else out


def gaussian() -> NoiseModel:
    """Homoscedastic Gaussian noise N(0, sigma), sigma from dark frames (classical baseline)."""
    return Gaussian()


class Gaussian(NoiseModel):
    """N(0, sigma) added to the signal."""

    def __init__(self, sigma: float = 1.0):
        self.sigma = sigma

    def fit(self, calib) -> Gaussian:
        """sigma = standard deviation of the dark frames."""
        self.sigma = float(calib.dark.std())
        return self

    def sample(self, signal, generator):
        """signal + N(0, sigma)."""
        import torch

        noise = torch.randn(signal.shape, generator=generator, device=signal.device)
        return signal + noise * self.sigma

    def params(self) -> dict[str, float]:
        """sigma."""
        return {"sigma": self.sigma}


def poisson_gaussian() -> NoiseModel:
    """Heteroscedastic shot + read noise: Poisson(x/K) K + N(0, sigma) (K from flat pairs)."""
    return PoissonGaussian()


class PoissonGaussian(NoiseModel):
    """Shot noise with gain K plus Gaussian read noise; variance K x + sigma^2."""

    def __init__(self, gain: float = 1.0, sigma: float = 1.0):
        self.gain, self.sigma = gain, sigma

    def fit(self, calib) -> PoissonGaussian:
        """K by photon transfer; sigma = std of the dark frames."""
        from harness_plugins.denoising.calibration import photon_transfer_gain

        self.gain = photon_transfer_gain(calib.dark, calib.flat)
        self.sigma = float(calib.dark.std())
        return self

    def sample(self, signal, generator):
        """Poisson(signal / K) K + N(0, sigma)."""
        import torch

        noise = torch.randn(signal.shape, generator=generator, device=signal.device)
        return shot(signal, self.gain, generator) + noise * self.sigma

    def params(self) -> dict[str, float]:
        """K and sigma."""
        return {"K": self.gain, "sigma": self.sigma}


#: Slopes of log sigma against log K in ELD's released SonyA7S2 parameters
#: (camera_params/release/SonyA7S2_params.npy: G_scale, the Tukey-lambda
#: read noise, and R_scale, the row noise); their residual sigmas are 0.263
#: and 0.294.
ELD_READ_SLOPE, ELD_ROW_SLOPE = 0.462, 0.528


def eld(gain_spread: Annotated[float, Field(ge=1)] = 1.0,
        sigma_jitter: Annotated[float, Field(ge=0)] = 0.0,
        read_slope: Annotated[float, Field(ge=0)] = ELD_READ_SLOPE,
        row_slope: Annotated[float, Field(ge=0)] = ELD_ROW_SLOPE,
        row_jitter: Annotated[float, Field(ge=0)] | None = None,
        clip: bool = True) -> NoiseModel:
    """ELD physics model (Wei et al. 2020): shot + Tukey-lambda read + row + quantisation + bias.

    ``gain_spread`` > 1 samples log K ~ U(log K/spread, log K*spread) per image
    (1 is the calibrated gain alone); the read and row sigmas then follow
    log sigma = log sigma_0 + slope log(K/K0) + N(0, s) with their own slopes
    (``read_slope``, ``row_slope``: ELD's SonyA7S2 values by default; 1 and 1
    scale both with K) and independent residuals (``sigma_jitter`` for read,
    ``row_jitter`` for row, which defaults to ``sigma_jitter``).  ``clip``:
    inputs clipped to [0, 1] as ELD's pipeline does (false: saturation only)."""
    return ELD(gain_spread, sigma_jitter, read_slope, row_slope,
               sigma_jitter if row_jitter is None else row_jitter, clip)


class ELD(NoiseModel):
    """The ELD noise formation model with parameters from dark and flat frames."""

    def __init__(self, gain_spread: float = 1.0, sigma_jitter: float = 0.0,
                 read_slope: float = ELD_READ_SLOPE, row_slope: float = ELD_ROW_SLOPE,
                 row_jitter: float = 0.0, clip: bool = True):
        self.gain_spread, self.sigma_jitter = gain_spread, sigma_jitter
        self.read_slope, self.row_slope, self.row_jitter = read_slope, row_slope, row_jitter
        self.input_range = (0.0, 1.0) if clip else (None, 1.0)
        self.gain, self.lam, self.read_scale, self.row_sigma = 1.0, 0.0, 1.0, 0.0
        self.bias = [0.0] * 4

    def fit(self, calib) -> ELD:
        """K by photon transfer; bias per channel; row sigma from row means;
        Tukey-lambda shape by probability-plot correlation and scale by its slope."""
        from scipy import stats

        from harness_plugins.denoising.calibration import decompose, photon_transfer_gain

        self.gain = photon_transfer_gain(calib.dark, calib.flat)
        d = decompose(calib.dark, max_samples=20_000)
        self.bias = [float(b) for b in d.bias]
        self.row_sigma = d.row_sigma
        read = d.read_with_pattern
        self.lam = float(stats.ppcc_max(read, brack=(-0.3, 0.3), dist="tukeylambda"))
        (_, _), (slope, _, _) = stats.probplot(read, sparams=(self.lam,), dist="tukeylambda")
        self.read_scale = float(slope)
        return self

    def sample(self, signal, generator):
        """ELD noise at the calibrated gain, or at a gain drawn per image."""
        import torch

        b = signal.shape[0]
        dev = signal.device
        gain = torch.full((b, 1, 1, 1), self.gain, device=dev)
        if self.gain_spread > 1:
            log_k = torch.rand((b, 1, 1, 1), generator=generator, device=dev)
            gain = self.gain * self.gain_spread ** (2 * log_k - 1)
        read, row = self.level_scales(gain, generator)
        noisy = torch.poisson(signal.clamp_min(0) / gain, generator=generator) * gain
        noisy = noisy + read * tukey_lambda(signal.shape, self.lam, self.read_scale,
                                            generator, dev)
        noisy = noisy + row * row_noise(signal.shape, self.row_sigma, generator, dev)
        noisy = noisy + quantisation(signal.shape, generator, dev)
        bias = torch.tensor(self.bias, device=dev, dtype=signal.dtype)[None, :, None, None]
        return noisy + bias

    def level_scales(self, gain, generator):
        """(read, row) sigma multipliers for per-image gains ``gain`` ``(B, 1, 1, 1)``:
        (K / K0)^slope times exp(N(0, residual)), drawn independently."""
        import torch

        log_ratio = torch.log(gain / self.gain)
        read = torch.exp(self.read_slope * log_ratio)
        row = torch.exp(self.row_slope * log_ratio)
        if self.sigma_jitter > 0:
            read = read * torch.exp(self.sigma_jitter * torch.randn(
                gain.shape, generator=generator, device=gain.device))
        if self.row_jitter > 0:
            row = row * torch.exp(self.row_jitter * torch.randn(
                gain.shape, generator=generator, device=gain.device))
        return read, row

    def params(self) -> dict[str, float]:
        """K, Tukey lambda and scale, row sigma."""
        return {"K": self.gain, "lambda": self.lam, "read_scale": self.read_scale,
                "row_sigma": self.row_sigma}


def true_sensor() -> NoiseModel:
    """Oracle: the simulated sensor's own noise (an upper bound; needs a simulated sensor)."""
    return TrueSensor()


class TrueSensor(NoiseModel):
    """Samples from the sensor's true noise process (fixed pattern at random positions)."""

    def __init__(self):
        self.truth = None

    def fit(self, calib) -> TrueSensor:
        """Take the sensor's sampler; a real camera has none to give."""
        if calib.truth is None:
            raise ValueError("noise model 'true_sensor' needs a simulated sensor that knows its "
                             "noise; this sensor provides calibration frames only")
        self.truth = calib.truth
        return self

    def sample(self, signal, generator):
        """The sensor's noise with its fixed pattern at a random position."""
        return self.truth.sample(signal, generator, random_position=True)


def noise_std(model: NoiseModel, shape=(4, 4, 64, 64), seed: int = 0) -> float:
    """Standard deviation of a model's dark-frame noise (signal 0), bias removed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = model.sample(torch.zeros(shape), g)
    return float((x - x.mean(dim=(0, 2, 3), keepdim=True)).std()) if math.prod(shape) else 0.0


@hookimpl
def register_noise_models(register):
    """The physics noise models and the sensor oracle."""
    register("gaussian", gaussian)
    register("poisson_gaussian", poisson_gaussian)
    register("eld", eld)
    register("true_sensor", true_sensor)
