"""PNNP-style learned noise model (Feng et al., "Physics-guided Noise Neural Proxy").

The noise model is learned from dark frames instead of assumed.  As in PNNP,
the dark frame is decoupled into physically distinct components, each
modelled by what physics says about it:

- bias (per channel) and fixed pattern / dark shading (a per-pixel map,
  constant in time): the temporal mean of the dark frames, shrunk so that
  temporal noise is not counted twice;
- row noise: one offset per raw row, Gaussian, variance from row means;
- read noise: a *proxy network* for its distribution.  The physical priors
  are built in: the network is a monotone map of a uniform variable (a
  quantile function, so it always defines a valid distribution), it does not
  depend on the signal, and it is independent per pixel;
- quantisation: the ADC rounding, applied to the sum (in training, a uniform
  dither stands in for the rounding so the loss stays differentiable).

The network is trained with a differentiable distribution loss: L1 between
the sorted generated samples and the empirical quantiles of the dark-frame
residual (the 1-Wasserstein distance in one dimension).  Shot noise uses the
gain K measured by photon transfer on flat pairs, as dark frames hold no
shot noise.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl
from harness_plugins.denoising.noise import NoiseModel, row_noise, shot


def pnnp(hidden: Annotated[int, Field(ge=1)] = 16, steps: Annotated[int, Field(ge=1)] = 1000,
         lr: Annotated[float, Field(gt=0)] = 0.02, batch: Annotated[int, Field(ge=16)] = 4096,
         fixed_pattern: bool = True,
         seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
         dark_shading: Literal["subtract", "add"] = "subtract") -> NoiseModel:
    """PNNP-style learned noise model: decoupled dark-frame components, monotone proxy network.

    ``hidden``: tanh units of the read-noise quantile network; ``steps``,
    ``lr``, ``batch``: its training with the quantile L1 loss.  The dark
    shading is the calibrated per-pixel fixed pattern (``fixed_pattern``) plus
    the per-channel black-level error.  ``dark_shading: subtract`` (PNNP's
    evaluation): it is subtracted from the real noisy input before denoising
    and generated noise holds neither; ``add``: the map (random crops) and the
    black level are added to generated noise and the input is left as it is."""
    return PNNP(hidden, steps, lr, batch, fixed_pattern, seed, dark_shading)


#: Tukey-lambda shapes of the proxy network's tail terms (lambda < 0: heavier than logistic).
TAILS = (-0.1, -0.2, -0.3)


def _quantile_net(hidden: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class QuantileNet(nn.Module):
        """Q(u) = b + a t + sum_k w_k tanh(s_k t + c_k) + sum_j v_j T_j(u), t = logit(u),
        T_j the Tukey-lambda quantile functions of TAILS; a, w, s, v >= 0 make Q
        increasing, i.e. a quantile function.  The tanh units shape the body;
        tanh saturates, so heavy tails (read noise is heavier-tailed than
        logistic, the ELD finding) come from the Tukey-lambda terms."""

        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(0.0))
            self.b = nn.Parameter(torch.tensor(0.0))
            self.w = nn.Parameter(torch.zeros(hidden))
            self.s = nn.Parameter(torch.linspace(-1.0, 0.5, hidden))
            self.c = nn.Parameter(torch.linspace(-3.0, 3.0, hidden))
            self.v = nn.Parameter(torch.full((len(TAILS),), -4.0))

        def forward(self, u):
            u = u.clamp(1e-6, 1 - 1e-6)
            t = torch.logit(u)[..., None]
            body = (F.softplus(self.w) * torch.tanh(F.softplus(self.s) * t + self.c)).sum(-1)
            lam = torch.tensor(TAILS, device=u.device)
            tails = (u[..., None] ** lam - (1 - u[..., None]) ** lam) / lam
            return (self.b + F.softplus(self.a) * t[..., 0] + body
                    + (F.softplus(self.v) * tails).sum(-1))

    return QuantileNet()


class PNNP(NoiseModel):
    """Learned from dark frames; see the module docstring."""

    learned = True

    def __init__(self, hidden=16, steps=1000, lr=0.02, batch=4096, fixed_pattern=True, seed=0,
                 dark_shading="subtract"):
        self.hidden, self.steps, self.lr, self.batch = hidden, steps, lr, batch
        self.use_pattern, self.seed = fixed_pattern, seed
        self.subtract_shading = dark_shading == "subtract"
        self.gain, self.row_sigma, self.loss = 1.0, 0.0, float("nan")
        self.bias = None
        self.pattern = None
        self.net = None

    def fit(self, calib) -> PNNP:
        """Decompose the dark frames and train the read-noise proxy network."""
        import numpy as np
        import torch

        from harness_plugins.denoising.calibration import decompose, photon_transfer_gain

        self.gain = photon_transfer_gain(calib.dark, calib.flat)
        d = decompose(calib.dark, seed=self.seed)
        self.bias = torch.as_tensor(d.bias, dtype=torch.float32)
        self.pattern = torch.as_tensor(d.fixed_pattern)
        self.row_sigma = d.row_sigma
        target = torch.as_tensor(np.sort(d.read).astype(np.float32))
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = _quantile_net(self.hidden)
        with torch.no_grad():  # start at the residual's logistic fit: faster, same optimum
            self.net.b.fill_(float(target.mean()))
            scale = float(target.std()) * np.sqrt(3) / np.pi
            self.net.a.fill_(float(np.log(np.expm1(max(scale, 1e-3)))))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        levels = (torch.arange(self.batch) + 0.5) / self.batch
        idx = (levels * len(target)).long().clamp_max(len(target) - 1)
        q_real = target[idx]
        for _ in range(self.steps):
            u = torch.rand(self.batch, generator=g)
            dither = torch.rand(self.batch, generator=g) - 0.5
            generated, _ = torch.sort(self.net(u) + dither)
            loss = (generated - q_real).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.loss = float(loss.detach())
        self.net.requires_grad_(False)
        return self

    def _pattern(self, shape, generator, device):
        import torch

        b, _, h, w = shape
        ph, pw = self.pattern.shape[1:]
        if h > ph or w > pw:  # a larger image than the dark frames: tile the pattern
            reps = (1, -(-h // ph), -(-w // pw))
            pattern = self.pattern.repeat(*reps)
        else:
            pattern = self.pattern
        ph, pw = pattern.shape[1:]
        out = torch.empty((b, 4, h, w), device=device)
        for i in range(b):
            y = int(torch.randint(ph - h + 1, (1,), generator=generator, device=device))
            x = int(torch.randint(pw - w + 1, (1,), generator=generator, device=device))
            out[i] = pattern[:, y:y + h, x:x + w].to(device)
        return out

    def dark_shading(self, h: int, w: int):
        """The calibrated dark shading at the frame's position (the sensor's
        pattern sits at its top-left corner): map plus black-level error, DN;
        None in ``add`` mode, whose input is left as it is."""
        import numpy as np

        if not self.subtract_shading:
            return None
        shading = np.broadcast_to(self.bias.numpy()[:, None, None], (4, h, w)).copy()
        if self.use_pattern:
            ph, pw = self.pattern.shape[1:]
            tiled = np.tile(self.pattern.numpy(), (1, -(-h // ph), -(-w // pw)))
            shading += tiled[:, :h, :w]
        return shading.astype(np.float32)

    def sample(self, signal, generator):
        """Shot + row + proxy read noise on the dark shading, rounded by the ADC;
        in ``subtract`` mode the shading is taken off again after the rounding
        (what the method sees of a real frame: its quantisation stays)."""
        import torch

        dev = signal.device
        net = self.net.to(dev)
        u = torch.rand(signal.shape, generator=generator, device=dev)
        noisy = shot(signal, self.gain, generator) + net(u)
        noisy = noisy + row_noise(signal.shape, self.row_sigma, generator, dev)
        shading = self.bias.to(dev)[None, :, None, None].expand(signal.shape)
        if self.use_pattern:
            shading = shading + self._pattern(signal.shape, generator, dev)
        noisy = torch.round(noisy + shading)
        return noisy - shading if self.subtract_shading else noisy

    def params(self) -> dict[str, float]:
        """K, the temporal noise sigma (read + row + quantisation), row sigma, fit loss."""
        import torch

        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            read = self.net(torch.rand(100_000, generator=g))
        sigma = float((read.var() + self.row_sigma ** 2 + 1 / 12) ** 0.5)
        return {"K": self.gain, "sigma": sigma, "row_sigma": self.row_sigma,
                "pattern_sigma": float(self.pattern.std()), "fit_loss": self.loss}


@hookimpl
def register_noise_models(register):
    """The learned PNNP-style noise model."""
    register("pnnp", pnnp)
