"""Energy models: Gaussians with a closed-form normaliser, and an MLP energy.

``gaussian_mean`` is the model of the paper's one-dimensional Gaussian mean
estimation: E(x) = ||x - theta||^2 / (2 s^2) with ``s`` fixed, theta learned.
The objectives that do not know log Z (NCE, the compositional one) treat it
as unnormalised; MLE uses log Z = d (log s + log(2 pi) / 2), which does not
depend on theta, so MLE's answer is the sample mean.

``mlp_energy`` adds a fixed quadratic ||x||^2 / (2 b^2) to the network's
output so that exp(-E) stays integrable whatever the network learns (the
network is bounded by its final Linear of bounded inputs only on compact
sets; the quadratic dominates far away), which also keeps importance weights
under a Gaussian proposal of scale <= b bounded.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from harness import FromData

LOG_2PI = math.log(2 * math.pi)


def gaussian_mean(dim: Annotated[int, FromData], std: Annotated[float, Field(gt=0)] = 1.0,
                  init: Annotated[float, Field(ge=-1e6, le=1e6)] = 0.0):
    """Gaussian with a learned mean and fixed std: E(x) = ||x - theta||^2 / (2 std^2)."""
    import numpy as np
    import torch
    from torch import nn

    class GaussianMean(nn.Module):
        known_normalizer = True

        def __init__(self):
            super().__init__()
            self.theta = nn.Parameter(torch.full((dim,), float(init)))

        def energy(self, x):
            return ((x - self.theta) ** 2).sum(1) / (2 * std ** 2)

        def log_normalizer(self):
            return torch.tensor(dim * (math.log(std) + 0.5 * LOG_2PI))

        def estimate(self):
            return {"mean": self.theta.detach().double().numpy().copy()}

        def fit_mle(self, X) -> bool:
            with torch.no_grad():
                self.theta.copy_(torch.as_tensor(np.asarray(X).mean(0)))
            return True

    return GaussianMean()


def diag_gaussian(dim: Annotated[int, FromData]):
    """Gaussian with a learned mean and per-dimension log-scale (known normaliser)."""
    import numpy as np
    import torch
    from torch import nn

    class DiagGaussian(nn.Module):
        known_normalizer = True

        def __init__(self):
            super().__init__()
            self.theta = nn.Parameter(torch.zeros(dim))
            self.log_std = nn.Parameter(torch.zeros(dim))

        def energy(self, x):
            return (((x - self.theta) * torch.exp(-self.log_std)) ** 2).sum(1) / 2

        def log_normalizer(self):
            return self.log_std.sum() + 0.5 * dim * LOG_2PI

        def estimate(self):
            return {"mean": self.theta.detach().double().numpy().copy(),
                    "std": torch.exp(self.log_std).detach().double().numpy().copy()}

        def fit_mle(self, X) -> bool:
            X = np.asarray(X, np.float64)
            with torch.no_grad():
                self.theta.copy_(torch.as_tensor(X.mean(0)))
                self.log_std.copy_(torch.as_tensor(np.log(np.maximum(X.std(0), 1e-12))))
            return True

    return DiagGaussian()


def mlp_energy(dim: Annotated[int, FromData],
               hidden: list[Annotated[int, Field(ge=1, le=4096)]] = [64, 64],  # noqa: B006
               base_scale: Annotated[float, Field(gt=0)] = 3.0):
    """MLP energy (SiLU) plus a fixed ||x||^2 / (2 base_scale^2): normaliser unknown."""
    from torch import nn

    class MLPEnergy(nn.Module):
        known_normalizer = False

        def __init__(self):
            super().__init__()
            layers, width = [], dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.SiLU()]
                width = h
            layers.append(nn.Linear(width, 1))
            self.net = nn.Sequential(*layers)

        def energy(self, x):
            return self.net(x).squeeze(1) + (x ** 2).sum(1) / (2 * base_scale ** 2)

        def log_normalizer(self):
            return None

        def estimate(self):
            return {}

    return MLPEnergy()
