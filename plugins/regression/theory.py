"""Closed-form risk of the bag-level least-squares estimator on linear-Gaussian
data, with and without the Laplace mechanism, and the bag size it implies.

Setting: ``x ~ N(0, I_d)``, ``y = x.theta + e`` with ``e ~ N(0, sigma^2)``,
``n`` training rows in ``m = n // k`` bags of ``k``.  A bag's mean features
``xbar_B ~ N(0, I/k)`` and mean response ``ybar_B = xbar_B.theta + ebar_B``
with ``ebar_B ~ N(0, sigma^2/k)``; with the Laplace mechanism (scale
``b = 2C/(k epsilon)``) the mean gets noise of variance ``2 b^2`` more.
Scaling by ``sqrt(k)``, the bag-level loss is ordinary least squares on
``m`` rows of standard Gaussian features with noise variance

    s^2 = sigma^2 + k * 2 b^2 = sigma^2 + 8 C^2 / (k epsilon^2).

Its test risk on an individual response is ``sigma^2 + |theta_hat -
theta|^2``; in the proportional limit ``d / m -> gamma`` (Hastie et al.,
2022, isotropic features):

    gamma < 1:  sigma^2 + s^2 gamma / (1 - gamma)
    gamma > 1:  sigma^2 + |theta|^2 (1 - 1/gamma) + s^2 / (gamma - 1)

(the minimum-norm interpolator when ``m < d``).  Clipping is ignored: the
formula is the limit when the clip bound rarely binds.  Derived here from the
reduction above, not copied from the paper; ``tests/test_regression_theory``
checks it against simulation.  For ``rho > 0`` (instance-level and
interpolating estimators) the bag's mean and within-bag deviations enter one
linear system whose limit needs the paper's fixed-point equations, which were
not available offline: no closed form is given for them here.
"""

from __future__ import annotations

import math


def effective_noise(sigma2: float, k: int, epsilon: float | None = None,
                    clip: float | None = None) -> float:
    """``s^2``: the noise variance of the ``sqrt(k)``-scaled bag means."""
    if epsilon is None:
        return float(sigma2)
    scale = 2.0 * float(clip) / (k * float(epsilon))  # Laplace scale on a bag mean
    return float(sigma2) + k * 2.0 * scale ** 2


def bag_level_risk(n: int, d: int, k: int, sigma2: float, signal2: float,
                   epsilon: float | None = None, clip: float | None = None) -> float:
    """The asymptotic test risk (individual responses, squared error) of
    least squares on the bag-level loss; ``inf`` at ``d = m``."""
    m = n // k
    if m < 1:
        raise ValueError(f"bag size {k} leaves no bag of {n} rows")
    gamma = d / m
    s2 = effective_noise(sigma2, k, epsilon, clip)
    if gamma < 1:
        return float(sigma2) + s2 * gamma / (1.0 - gamma)
    if gamma == 1:
        return math.inf
    return float(sigma2) + float(signal2) * (1.0 - 1.0 / gamma) + s2 / (gamma - 1.0)


def optimal_bag_size(n: int, d: int, sigma2: float, signal2: float,
                     epsilon: float | None = None, clip: float | None = None,
                     sizes=None) -> tuple[int, float]:
    """``(k, risk)`` minimising :func:`bag_level_risk` over ``sizes``
    (default 1..n).  With ``m >= d`` bags the excess risk is
    ``(k sigma^2 + 8 C^2 / epsilon^2) d / (n - d k)`` up to the rounding of
    ``n // k``, which grows with ``k``: for the bag-level estimator bagging
    buys no accuracy under this mechanism, the smallest bag is best."""
    best = (0, math.inf)
    for k in sizes or range(1, n + 1):
        risk = bag_level_risk(n, d, k, sigma2, signal2, epsilon, clip)
        if risk < best[1]:
            best = (int(k), risk)
    return best
