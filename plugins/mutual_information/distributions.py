"""Joint distributions of (X, Y) with known mutual information, in nats.

Each distribution pairs ``dim`` coordinates of X with ``dim`` coordinates of
Y: pair i is correlated with coefficient ``rhos[i]`` and the pairs are
independent of each other (in the Gaussian case), so

- Gaussian: ``I = -1/2 sum_i log(1 - rho_i^2)``
  (``-d/2 log(1 - rho^2)`` for d equal pairs);
- multivariate Student-t with ``dof`` nu and the same scale matrix: the
  Gaussian value plus ``c(nu, d, d)`` with
  ``c(nu, m, n) = f(nu) + f(nu + m + n) - f(nu + m) - f(nu + n)``,
  ``f(x) = log Gamma(x/2) - x/2 psi(x/2)`` (Arellano-Valle, Contreras-Reyes
  and Genton 2013; the form used by the ``bmi`` benchmark of Czyz et al.
  2023).  The shared chi-square scale makes X and Y dependent even at
  rho = 0, where the MI is ``c`` alone;
- a two-component mixture of such Gaussians (correlation +rho and -rho,
  means +-``shift`` on every coordinate): no closed form; the ground truth
  is a Monte-Carlo mean of ``log p(x, y) - log p(x) - log p(y)`` over a
  large fixed-seed sample, with its standard error (``true_mi_se``).

``transform`` applies the same invertible map to X and to Y (mutual
information is invariant under invertible maps of each variable):
``cube`` (x^3), ``halfcube`` (sign(x)|x|^1.5), ``asinh``, ``wiggle``
(x + 0.3 sin 3x, strictly increasing), ``rotation`` (a fixed random
orthogonal matrix, seed 0, one for X and one for Y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TRANSFORMS = ("none", "cube", "halfcube", "asinh", "wiggle", "rotation")
#: Monte-Carlo sample size and seed of a mixture's ground truth.
MC_SAMPLES = 200_000
MC_SEED = 20231


def gaussian_mi(rhos) -> float:
    """MI of independent correlated Gaussian pairs: ``-1/2 sum log(1 - rho^2)``."""
    return float(-0.5 * sum(math.log1p(-r * r) for r in rhos))


def rho_for_mi(mi: float, dim: int) -> float:
    """The per-pair correlation giving MI ``mi`` over ``dim`` equal pairs."""
    return math.sqrt(-math.expm1(-2.0 * mi / dim))


def digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to 6, then the asymptotic series (|error|
    < 1e-12); here so that checking a suite does not import scipy."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    return acc + math.log(x) - 0.5 / x - series


def student_correction(dof: float, m: int, n: int) -> float:
    """``c(nu, m, n)``: the Student-t MI beyond the Gaussian part, in nats."""

    def f(x: float) -> float:
        return math.lgamma(x / 2) - x / 2 * digamma(x / 2)

    return f(dof) + f(dof + m + n) - f(dof + m) - f(dof + n)


def _orthogonal(dim: int, seed: int):
    import numpy as np

    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def apply_transform(name: str, a, which: int = 0):
    """``a`` (n, d) under the invertible map ``name`` (``which``: 0 for X, 1
    for Y, so the rotations of X and Y differ)."""
    import numpy as np

    if name == "none":
        return a
    if name == "cube":
        return a ** 3
    if name == "halfcube":
        return np.sign(a) * np.abs(a) ** 1.5
    if name == "asinh":
        return np.arcsinh(a)
    if name == "wiggle":
        return a + 0.3 * np.sin(3.0 * a)
    if name == "rotation":
        return a @ _orthogonal(a.shape[1], 1000 * a.shape[1] + which)
    raise ValueError(f"unknown transform {name!r}; transforms: {', '.join(TRANSFORMS)}")


@dataclass
class PairDistribution:
    """``dim`` correlated (X_i, Y_i) pairs: ``gaussian``, ``student`` or
    ``mixture``; see the module docstring for each family's MI."""

    family: str
    rhos: list[float]
    dof: float | None = None
    shift: float = 0.0
    transform: str = "none"
    true_mi: float = field(init=False, default=0.0)
    true_mi_se: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.family == "gaussian":
            self.true_mi = gaussian_mi(self.rhos)
        elif self.family == "student":
            self.true_mi = gaussian_mi(self.rhos) + student_correction(self.dof, self.dim,
                                                                       self.dim)
        elif self.family == "mixture":
            self.true_mi, self.true_mi_se = monte_carlo_mi(self, MC_SAMPLES, MC_SEED)
        else:
            raise ValueError(f"unknown family {self.family!r}")

    @property
    def dim(self) -> int:
        return len(self.rhos)

    def sample_latent(self, n: int, rng):
        """``(x, y)`` before the transform, each ``(n, dim)`` float64."""
        import numpy as np

        rho = np.asarray(self.rhos, dtype=np.float64)
        x = rng.standard_normal((n, self.dim))
        noise = rng.standard_normal((n, self.dim))
        # the mixture's second component has correlation -rho and mean -shift
        sign = (np.where(rng.random((n, 1)) < 0.5, 1.0, -1.0) if self.family == "mixture"
                else 1.0)
        y = sign * rho * x + np.sqrt(1.0 - rho ** 2) * noise
        if self.family == "student":
            scale = np.sqrt(self.dof / rng.chisquare(self.dof, size=(n, 1)))
            x, y = x * scale, y * scale
        elif self.family == "mixture":
            x, y = x + sign * self.shift, y + sign * self.shift
        return x, y

    def sample(self, n: int, rng):
        """``n`` draws of ``(x, y)`` under the transform, each ``(n, dim)``."""
        x, y = self.sample_latent(n, rng)
        return apply_transform(self.transform, x, 0), apply_transform(self.transform, y, 1)

    def log_density_ratio(self, x, y):
        """``log p(x, y) - log p(x) - log p(y)`` of latent (untransformed)
        draws: the Monte-Carlo ground truth's integrand."""
        import numpy as np
        from scipy import stats
        from scipy.special import logsumexp

        rho = np.asarray(self.rhos, dtype=np.float64)
        if self.family == "student":
            d = self.dim
            cov = np.block([[np.eye(d), np.diag(rho)], [np.diag(rho), np.eye(d)]])
            joint = stats.multivariate_t(np.zeros(2 * d), cov, df=self.dof)
            marg = stats.multivariate_t(np.zeros(d), np.eye(d), df=self.dof)
            return joint.logpdf(np.hstack([x, y])) - marg.logpdf(x) - marg.logpdf(y)

        def pair_logpdf(xs, ys, r):
            # log N((x, y); 0, [[1, r], [r, 1]]) summed over pairs
            q = (xs ** 2 - 2 * r * xs * ys + ys ** 2) / (1 - r ** 2)
            return np.sum(-np.log(2 * np.pi) - 0.5 * np.log1p(-r ** 2) - 0.5 * q, axis=1)

        def std_logpdf(a):
            return np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * a ** 2, axis=1)

        if self.family == "gaussian":
            return pair_logpdf(x, y, rho) - std_logpdf(x) - std_logpdf(y)
        s = self.shift
        joint = logsumexp([pair_logpdf(x - s, y - s, rho), pair_logpdf(x + s, y + s, -rho)],
                          axis=0) - np.log(2)
        px = logsumexp([std_logpdf(x - s), std_logpdf(x + s)], axis=0) - np.log(2)
        py = logsumexp([std_logpdf(y - s), std_logpdf(y + s)], axis=0) - np.log(2)
        return joint - px - py


def monte_carlo_mi(dist: PairDistribution, n: int, seed: int) -> tuple[float, float]:
    """(mean, standard error) of the log density ratio over ``n`` draws."""
    import numpy as np

    x, y = dist.sample_latent(n, np.random.default_rng(seed))
    values = dist.log_density_ratio(x, y)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n))
