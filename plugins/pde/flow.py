"""A small normalising flow on a box, the generative sampler of adversarial
adaptive sampling: a learnable diagonal Gaussian, affine coupling layers
(RealNVP, Dinh et al. 2017) when the box has two or more coordinates, and a
sigmoid that squashes R^d into the box.  ``sample(n, generator)`` returns
points and their log-density (differentiable in the flow's parameters, the
reparameterisation that lets the sampler ascend the residual)."""

from __future__ import annotations


def box_flow(low: list[float], high: list[float], couplings: int = 4, hidden: int = 32):
    """The flow module for the box [low, high] (one entry per coordinate)."""
    import math

    import torch
    import torch.nn as nn

    d = len(low)

    class Coupling(nn.Module):
        """x_b -> x_b * exp(s(x_a)) + t(x_a) for a fixed split (a, b) of the coordinates."""

        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)
            self.net = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                     nn.Tanh(), nn.Linear(hidden, 2 * d))
            nn.init.zeros_(self.net[-1].weight)  # starts as the identity
            nn.init.zeros_(self.net[-1].bias)

        def forward(self, x):
            s, t = self.net(x * self.mask).chunk(2, dim=1)
            s = torch.tanh(s) * (1 - self.mask)
            t = t * (1 - self.mask)
            return x * s.exp() + t, s.sum(1)

    class BoxFlow(nn.Module):
        """z ~ N(0, I) -> Gaussian(loc, scale) -> couplings -> sigmoid -> the box."""

        def __init__(self):
            super().__init__()
            self.loc = nn.Parameter(torch.zeros(d))
            self.log_scale = nn.Parameter(torch.zeros(d))
            masks = [(torch.arange(d) % 2 == k % 2).float() for k in range(couplings)]
            self.layers = nn.ModuleList(Coupling(m) for m in masks) if d > 1 else nn.ModuleList()
            self.register_buffer("low", torch.tensor(low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(high, dtype=torch.float32))

        def sample(self, n: int, generator):
            """``(x, log q(x))`` for ``n`` draws."""
            z = torch.randn(n, d, generator=generator)
            log_q = -0.5 * (z ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi)
            h = self.loc + self.log_scale.exp() * z
            log_q = log_q - self.log_scale.sum()
            for layer in self.layers:
                h, log_det = layer(h)
                log_q = log_q - log_det
            unit = torch.sigmoid(h)
            # d sigmoid / dh = s (1 - s); then the box's scale
            log_q = log_q - (torch.log(unit * (1 - unit) + 1e-12)).sum(1)
            log_q = log_q - torch.log(self.high - self.low).sum()
            return self.low + (self.high - self.low) * unit, log_q

    return BoxFlow()
