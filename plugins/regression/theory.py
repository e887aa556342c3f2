"""Asymptotic risk of the bag-level, instance-level and interpolating
least-squares estimators on linear-Gaussian data, with and without the
Laplace mechanism, and the bag size it implies.

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
formula is the limit when the clip bound rarely binds.  For rho > 0 see
:func:`interpolating_risk`.  Both were derived here (the paper's own theorem
was not available offline, so its formula is not quoted or compared) and are
checked against simulation in ``tests/test_regression_aggregate.py``.
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
                     sizes=None, rho: float = 0.0) -> tuple[int, float]:
    """``(k, risk)`` minimising :func:`interpolating_risk` at ``rho`` over
    ``sizes`` (default 1..n).  For the bag-level estimator (rho = 0) with
    ``m >= d`` bags the excess risk is ``(k sigma^2 + 8 C^2 / epsilon^2) d /
    (n - d k)`` up to the rounding of ``n // k``, which grows with ``k``: the
    smallest bag is best; with rho > 0 the within-bag penalty shrinks the
    estimate, and under strong privacy a larger bag can win."""
    best = (0, math.inf)
    for k in sizes or range(1, n + 1):
        risk = interpolating_risk(n, d, k, rho, sigma2, signal2, epsilon, clip)
        if risk < best[1]:
            best = (int(k), risk)
    return best


def _solve_v(alpha: float, psi: float, rho: float) -> float:
    """The root ``v > 0`` of ``v (alpha/(1 + psi v) + (1 - alpha) rho/(1 + rho psi v)) = 1``:
    the limit of tr(M^-1)/d for the interpolating estimator's Gram matrix."""
    def g(v):
        return v * (alpha / (1 + psi * v) + (1 - alpha) * rho / (1 + rho * psi * v)) - 1.0

    lo, hi = 0.0, 1.0
    while g(hi) < 0:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def interpolating_risk(n: int, d: int, k: int, rho: float, sigma2: float, signal2: float,
                       epsilon: float | None = None, clip: float | None = None) -> float:
    """The asymptotic test risk of the interpolating estimator (``rho`` in [0, 1];
    0 = bag-level, 1 = instance-level) on linear-Gaussian data, ``d/n -> psi``.

    Derivation (ours; see the README of reports/aggregate_responses): rotating
    the rows by an orthogonal matrix whose first ``m`` rows are the normalised
    bag indicators leaves Gaussian rows Gaussian, so the estimator is weighted
    least squares on ``n`` i.i.d. N(0, I) rows: ``m = n/k`` bag rows (weight 1,
    target ``u.theta + noise`` of variance ``s^2``) and ``n - m`` within-bag
    rows (weight rho, target 0).  With ``A``, ``B`` the two rows' Gram
    matrices / n (free Wisharts), ``M = A + rho B``, excess risk = bias
    ``rho^2 |theta|^2 tr(B M^-2 B)/d`` + variance ``s^2 tr(M^-1 A M^-1)/n``;
    the subordination of ``M`` to ``B`` (E[M^-1 | B] = (rho B + c)^-1 with
    ``c = alpha/(1 + psi v)``) and the Marchenko-Pastur law of ``B`` give, with
    ``alpha = 1/k``, ``psi = d/n``, ``v`` from :func:`_solve_v`,
    ``T' = -(1-alpha) rho^2 psi/(1 + rho psi v)^2``, ``q = v^2/(1 + v^2 T')``,
    ``w = 1/(1 - alpha psi q/(1 + psi v)^2)``:

        bias = |theta|^2 w (1 - 2 c v + c^2 q),  variance = s^2 psi (v - w (v - c q)).

    At rho = 0 this is :func:`bag_level_risk`; at psi -> 0 the instance-level
    bias is ``|theta|^2 (1 - 1/k)^2``.  Checked against simulation in
    tests/test_regression_aggregate.py.  ``nan`` for rho > 0 with d >= n."""
    if rho == 0:
        return bag_level_risk(n, d, k, sigma2, signal2, epsilon, clip)
    m = n // k
    n_used = m * k
    alpha, psi = 1.0 / k, d / n_used
    if psi >= 1:
        return math.nan
    s2 = effective_noise(sigma2, k, epsilon, clip)
    v = _solve_v(alpha, psi, rho)
    c = alpha / (1 + psi * v)
    t_prime = -(1 - alpha) * rho ** 2 * psi / (1 + rho * psi * v) ** 2
    q = v * v / (1 + v * v * t_prime)
    w = 1.0 / (1 - alpha * psi * q / (1 + psi * v) ** 2)
    bias = signal2 * w * (1 - 2 * c * v + c * c * q)
    variance = s2 * psi * (v - w * (v - c * q))
    return float(sigma2) + bias + variance
