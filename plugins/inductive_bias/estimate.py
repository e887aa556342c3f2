"""The inductive bias of a class from its sampled test losses (Boopathy et al. 2024).

The inductive bias needed to reach a target loss eps is -log2 P(L <= eps),
L the test loss of a hypothesis drawn from the class.  Well-generalising
hypotheses are rare (P is far below 1/n for n samples), so P is read from a
parametric model of the loss distribution fit to the samples, as the
authors' code does: a scaled non-central chi-squared with location 0
(``scipy.stats.ncx2.fit(losses, floc=0)``; a sum of squared errors of
Gaussian-like outputs is one).  Where the fitted CDF underflows (log CDF =
-inf), the tail is taken from Sankaran's normal approximation of the
non-central chi-squared, log P ~ log Phi(z) (the authors' fallback, kept
here in log space).  ``normal`` fits a Gaussian instead; ``empirical`` is
the plain fraction of samples below the target (infinite bits when none).

The error estimate is a bootstrap over the sampled hypotheses: the fit and
the bits recomputed on resamples; its standard deviation is the estimate's
standard error from the finite number of hypotheses (the quantity the paper
bounds in terms of the number of samples).
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def sankaran_log_cdf(x: float, df: float, nc: float, scale: float) -> float:
    """log P(scale * X <= x), X ~ noncentral chi2(df, nc), by Sankaran's (1963)
    power transform of X to an approximately normal variable."""
    from scipy.special import log_ndtr

    y = x / scale
    k, lam = df, nc
    h = 1 - (2 / 3) * (k + lam) * (k + 3 * lam) / (k + 2 * lam) ** 2
    p = (k + 2 * lam) / (k + lam) ** 2
    m = (h - 1) * (1 - 3 * h)
    z = (((y / (k + lam)) ** h - (1 + h * p * (h - 1 - 0.5 * (2 - h) * m * p)))
         / (h * math.sqrt(2 * p) * (1 + 0.5 * m * p)))
    return float(log_ndtr(z))


def fit_log_cdf(losses, target: float, fit: str) -> tuple[float, dict]:
    """(log P(L <= target) under the fitted distribution, the fit's parameters)."""
    import numpy as np
    from scipy import stats

    losses = np.asarray(losses, np.float64)
    if np.ptp(losses) <= 1e-12 * max(1.0, abs(losses.mean())):
        # one loss repeated (a class of one hypothesis): P is 0 or 1 exactly
        return (0.0 if losses[0] <= target else -math.inf), {"degenerate": 1.0}
    if fit == "empirical":
        frac = float(np.mean(losses <= target))
        return (math.log(frac) if frac > 0 else -math.inf), {}
    if fit == "normal":
        mu, sd = float(losses.mean()), float(losses.std(ddof=1))
        return float(stats.norm.logcdf(target, mu, sd)), {"mean": mu, "sd": sd}
    with np.errstate(all="ignore"):
        k0, lam0, s0 = moment_start(losses)
        df, nc, _, scale = stats.ncx2.fit(losses, k0, lam0, floc=0, scale=s0)
        log_p = float(stats.ncx2.logcdf(target, df, nc, loc=0, scale=scale))
    if not math.isfinite(log_p) and log_p != 0:
        log_p = sankaran_log_cdf(target, df, nc, scale)
    return min(log_p, 0.0), {"df": float(df), "nc": float(nc), "scale": float(scale)}


def moment_start(losses) -> tuple[float, float, float]:
    """(df, nc, scale) matching the losses' mean, variance and third central
    moment: the start of the likelihood fit (scipy's default start fails on
    narrow distributions far from 0, which need a large df).

    A scaled ncx2 has mean s(k + l), variance 2 s^2 (k + 2 l) and third
    central moment 8 s^3 (k + 3 l); eliminating k and l leaves
    8 m s^2 - 8 v s + mu3 = 0.  Without a root giving k > 0, l >= 0 it is a
    central chi-squared matching the mean and variance."""
    import numpy as np

    x = np.asarray(losses, np.float64)
    m, v = float(x.mean()), float(x.var())
    mu3 = float(((x - m) ** 3).mean())
    disc = 64 * v * v - 32 * m * mu3
    if disc >= 0:
        for s in ((8 * v - math.sqrt(disc)) / (16 * m), (8 * v + math.sqrt(disc)) / (16 * m)):
            if s > 0:
                a, b = m / s, v / (2 * s * s)
                k, lam = 2 * a - b, b - a
                if k > 0 and lam >= 0:
                    return k, lam, s
    return 2 * m * m / v, 0.0, v / (2 * m)


def bits(losses, target: float, fit: str = "ncx2") -> tuple[float, dict]:
    """-log2 P(L <= target) and the fit's parameters."""
    log_p, params = fit_log_cdf(losses, target, fit)
    return (-log_p / LN2 if log_p != 0 else 0.0), params


def bootstrap_se(losses, target: float, fit: str, resamples: int, seed: int) -> float:
    """Standard deviation of the bits over ``resamples`` bootstrap resamples of the
    losses (NaN with fewer than 2 resamples or when a resample's bits are infinite)."""
    import numpy as np

    if resamples < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    losses = np.asarray(losses, np.float64)
    values = [bits(losses[rng.integers(0, len(losses), len(losses))], target, fit)[0]
              for _ in range(resamples)]
    values = np.asarray(values)
    return float(values.std(ddof=1)) if np.isfinite(values).all() else float("inf")


def ks_distance(losses, params: dict) -> float:
    """Kolmogorov-Smirnov distance between the losses and a fitted ncx2 (NaN otherwise)."""
    import numpy as np
    from scipy import stats

    if "df" not in params:
        return float("nan")
    dist = stats.ncx2(params["df"], params["nc"], loc=0, scale=params["scale"])
    return float(stats.kstest(np.asarray(losses, np.float64), dist.cdf).statistic)
