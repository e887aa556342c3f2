"""The two-Gaussian mixture of Saberi et al. (ICLR 2024), its exact errors and its shift.

Labeled data: ``y = +-1`` with probability 1/2 each and ``x | y ~ N(y mu, Sigma)``.
Unlabeled, out-of-domain data: ``x' ~ 1/2 N(mu1, Sigma) + 1/2 N(-mu1, Sigma)`` with
``mu1 = mu + delta |mu| v``, ``v`` a unit vector orthogonal to ``mu`` (the authors'
simulation draws ``v`` at random, which in high dimension is nearly orthogonal to
``mu``; a fixed orthogonal ``v`` keeps the shift the same for every seed).  The
suite names the shift by the total variation distance between the labeled and the
unlabeled feature marginals; ``delta`` is solved for it by bisection on the TV,
which is computed by quadrature (below).

``mu = mean_norm * (1, ..., 1) / sqrt(d)``; ``Sigma = sigma^2 diag(l_1 .. l_d)``
with ``l_k`` geometric from ``condition^-1/2`` to ``condition^1/2`` (geometric
mean 1): ``condition = 1`` is the isotropic mixture, larger values the
non-isotropic one.

Exact errors of a linear classifier ``f(x) = theta . x + b`` (predict +1 where
``f > 0``) under an l2 adversary of budget ``eps`` (``eps = 0``: the plain
error): with ``s = sqrt(theta' Sigma theta)``,
``err = 1/2 Phi((eps |theta| - theta.mu - b) / s) + 1/2 Phi((eps |theta| - theta.mu + b) / s)``.

Total variation between two mixtures of two Gaussians with one covariance: TV
is invariant under the whitening map ``Sigma^-1/2``, and after it the two
densities differ only in the span of the (whitened) means, so TV is a 2-D
integral of ``|p - q| / 2``, done on a uniform grid (error below 1e-6 for the
shifts used here; the tests compare it with the closed forms of a single
Gaussian pair and of an orthogonally translated mixture).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from harness import UserError
from harness.data import RawDataset

#: Grid points per axis of the TV quadrature.
TV_GRID = 1201


def phi_cdf(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class GaussianMixture:
    """The in-domain mixture ``+-mu`` with covariance ``sigma^2 diag(spectrum)``."""

    d: int
    mean_norm: float
    sigma: float
    condition: float

    @property
    def mu(self):
        """The class mean of y = +1."""
        import numpy as np

        return np.full(self.d, self.mean_norm / math.sqrt(self.d))

    @property
    def variances(self):
        """The diagonal of Sigma."""
        import numpy as np

        if self.d == 1:
            return np.array([self.sigma ** 2])
        exps = np.linspace(-0.5, 0.5, self.d)
        return self.sigma ** 2 * self.condition ** exps

    @property
    def direction(self):
        """The unit vector, orthogonal to mu, the unlabeled means move along."""
        import numpy as np

        if self.d < 2:
            raise UserError("a shifted Gaussian mixture needs d >= 2")
        v = np.where(np.arange(self.d) % 2 == 0, 1.0, -1.0)
        e = self.mu / np.linalg.norm(self.mu)
        v = v - (v @ e) * e
        if np.linalg.norm(v) < 1e-12:  # d odd and small: any other axis will do
            v = np.zeros(self.d)
            v[0] = 1.0
            v = v - (v @ e) * e
        return v / np.linalg.norm(v)

    def shifted_mean(self, delta: float):
        """``mu1 = mu + delta |mu| v``."""
        return self.mu + delta * self.mean_norm * self.direction

    def bayes_error(self) -> float:
        """The error of the best linear classifier: Phi(-|Sigma^-1/2 mu|)."""
        import numpy as np

        return phi_cdf(-float(np.sqrt((self.mu ** 2 / self.variances).sum())))

    def sample(self, n: int, rng, mean=None):
        """``n`` draws ``(X, s)``: ``s = +-1`` with probability 1/2, ``X = s m + noise``
        (``m`` = ``mean``, default mu)."""
        import numpy as np

        m = self.mu if mean is None else mean
        s = rng.choice(np.array([-1.0, 1.0]), size=n)
        noise = rng.standard_normal((n, self.d)) * np.sqrt(self.variances)
        return s[:, None] * m + noise, s


def linear_error(theta, bias: float, mu, variances, epsilon: float = 0.0) -> float:
    """Exact (robust, for ``epsilon > 0``) error of ``sign(theta . x + b)`` on the
    mixture ``+-mu`` with covariance ``diag(variances)`` (see the module docstring)."""
    import numpy as np

    theta = np.asarray(theta, np.float64)
    norm = float(np.linalg.norm(theta))
    s = float(np.sqrt((theta ** 2 * np.asarray(variances)).sum()))
    proj = float(theta @ np.asarray(mu, np.float64))
    budget = epsilon * norm
    if s == 0.0:  # a constant prediction: one class always right, or none
        return 0.5 if abs(bias) > budget else 1.0
    return 0.5 * phi_cdf((budget - proj - bias) / s) + 0.5 * phi_cdf((budget - proj + bias) / s)


def mixture_tv(means_p, means_q, variances, grid: int = TV_GRID) -> float:
    """TV between ``1/2 sum N(p_k, Sigma)`` and ``1/2 sum N(q_k, Sigma)`` (two
    means each, ``Sigma = diag(variances)``), whose whitened means span at most
    two dimensions: a 2-D quadrature of ``|p - q| / 2``."""
    import numpy as np

    w = 1.0 / np.sqrt(np.asarray(variances, np.float64))
    P = np.asarray(means_p, np.float64) * w
    Q = np.asarray(means_q, np.float64) * w
    stacked = np.vstack([P, Q])
    _, sv, vt = np.linalg.svd(stacked, full_matrices=False)
    rank = int((sv > 1e-10 * max(1.0, sv.max(initial=0.0))).sum())
    if rank > 2:
        raise ValueError("mixture_tv: the whitened means span more than two dimensions")
    basis = np.zeros((2, stacked.shape[1]))
    basis[:rank] = vt[:rank]
    p2, q2 = P @ basis.T, Q @ basis.T
    reach = float(np.abs(stacked @ basis.T).max(initial=0.0)) + 8.0
    axis = np.linspace(-reach, reach, grid)
    step = axis[1] - axis[0]
    gx, gy = np.meshgrid(axis, axis, indexing="ij")

    def density(means):
        out = np.zeros_like(gx)
        for mx, my in means:
            out += np.exp(-0.5 * ((gx - mx) ** 2 + (gy - my) ** 2))
        return out / (len(means) * 2 * math.pi)

    return float(0.5 * np.abs(density(p2) - density(q2)).sum() * step * step)


@functools.lru_cache(maxsize=64)
def shift_for_tv(problem: GaussianMixture, tv: float) -> tuple[float, float]:
    """``(delta, achieved TV)`` with ``TV(P0_X, P1_X) = tv`` (Brent's method on delta)."""
    import numpy as np

    if tv == 0.0:
        return 0.0, 0.0
    mu = problem.mu

    def tv_of(delta: float) -> float:
        mu1 = problem.shifted_mean(delta)
        return mixture_tv(np.stack([mu, -mu]), np.stack([mu1, -mu1]), problem.variances)

    from scipy.optimize import brentq

    hi = 0.5
    while tv_of(hi) < tv:
        hi *= 2
        if hi > 1e3:
            raise UserError(f"shift {tv}: no shift of this mixture reaches that total variation")
    delta = brentq(lambda x: tv_of(x) - tv, 0.0, hi, xtol=1e-9, rtol=1e-12)
    return delta, tv_of(delta)


def gaussian_mixture(d: Annotated[int, Field(ge=2)] = 10,
                     mean_norm: Annotated[float, Field(gt=0)] = 1.0,
                     sigma: Annotated[float, Field(gt=0)] = 0.6,
                     condition: Annotated[float, Field(ge=1)] = 1.0) -> RawDataset:
    """Saberi et al.'s two-Gaussian mixture in R^d (means +-mu, isotropic or not); exact errors.

    ``mean_norm``: |mu|; ``sigma``: noise scale; ``condition``: the covariance's
    condition number (1 = isotropic).  No rows: the ``semi_supervised`` task
    draws m labeled and n shifted unlabeled samples per seed and scores a
    classifier by its exact error."""
    problem = GaussianMixture(d, float(mean_norm), float(sigma), float(condition))
    return RawDataset("gaussian_mixture", problem, None,
                      meta={"bayes_error": problem.bayes_error(), "exact": True})
