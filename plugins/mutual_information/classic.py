"""Non-parametric MI estimators: KSG (k nearest neighbours) and binning.

KSG is Kraskov, Stoegbauer and Grassberger's (2004) estimator 1:
``I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >``, where eps_i is
the max-norm distance from point i to its k-th neighbour in the joint space
and n_x(i), n_y(i) count the points strictly closer than eps_i in each
marginal space (KD-trees of scipy).  Its bias is small for near-independent
variables and grows with the MI and the dimension (the paper's figures 4 and
6 at N = 10^4).

Binning is the plug-in estimator on a grid of equal-frequency (quantile)
bins per coordinate: a cell of X is the tuple of its coordinates' bins, so
X has up to ``bins^dx`` cells; the Miller-Madow correction
``-(B_xy - B_x - B_y + 1) / (2N)`` over occupied cells removes the
first-order bias of the plug-in entropies, which is what makes
independent variables come out near zero.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field


def ksg_mi(x, y, k: int = 3) -> float:
    """KSG estimator 1 of I(X; Y) in nats (``x`` (n, dx), ``y`` (n, dy))."""
    import numpy as np
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    joint = np.hstack([x, y])
    # k + 1: the query point is its own nearest neighbour
    eps = cKDTree(joint).query(joint, k=[k + 1], p=np.inf)[0][:, 0]
    # strictly closer than eps: shrink the radius by one ulp
    radius = np.nextafter(eps, 0)
    nx = cKDTree(x).query_ball_point(x, radius, p=np.inf, return_length=True) - 1
    ny = cKDTree(y).query_ball_point(y, radius, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


def _cells(a, bins: int):
    """Each row's cell index on a grid of ``bins`` quantile bins per column."""
    import numpy as np

    codes = np.zeros(len(a), dtype=np.int64)
    for j in range(a.shape[1]):
        ranks = np.argsort(np.argsort(a[:, j], kind="stable"), kind="stable")
        codes = codes * bins + (ranks * bins) // len(a)
    return codes


def binned_mi(x, y, bins: int, miller_madow: bool = True) -> float:
    """Plug-in MI on quantile bins, with the Miller-Madow correction."""
    import numpy as np

    n = len(x)
    cx, cy = _cells(np.asarray(x), bins), _cells(np.asarray(y), bins)
    _, joint_counts = np.unique(np.stack([cx, cy], axis=1), axis=0, return_counts=True)
    _, x_counts = np.unique(cx, return_counts=True)
    _, y_counts = np.unique(cy, return_counts=True)

    def entropy(counts) -> float:
        p = counts / n
        return float(-np.sum(p * np.log(p)))

    mi = entropy(x_counts) + entropy(y_counts) - entropy(joint_counts)
    if miller_madow:
        mi -= (len(joint_counts) - len(x_counts) - len(y_counts) + 1) / (2 * n)
    return mi


def default_bins(n: int, dx: int, dy: int) -> int:
    """Bins per coordinate so that the joint grid has about n / 5 cells."""
    return max(2, int((n / 5) ** (1.0 / (dx + dy))))


class KSG:
    """Kraskov-Stoegbauer-Grassberger estimator 1 with ``k`` neighbours."""

    def __init__(self, k: int):
        self.k = k
        self.min_samples = k + 1

    def estimate(self, x, y, seed: int) -> float:
        return ksg_mi(x, y, self.k)


class Binning:
    """Plug-in estimator on quantile bins."""

    min_samples = 2

    def __init__(self, bins: int | None, miller_madow: bool):
        self.bins = bins
        self.miller_madow = miller_madow

    def estimate(self, x, y, seed: int) -> float:
        bins = self.bins or default_bins(len(x), x.shape[1], y.shape[1])
        return binned_mi(x, y, bins, self.miller_madow)


def ksg(k: Annotated[int, Field(ge=1)] = 3) -> KSG:
    """KSG k-nearest-neighbour MI estimator (Kraskov et al. 2004, estimator 1)."""
    return KSG(k)


def binning(bins: Annotated[int, Field(ge=2)] | None = None,
            miller_madow: bool = True) -> Binning:
    """Plug-in MI on equal-frequency bins per coordinate (Miller-Madow corrected).

    ``bins``: bins per coordinate (default: a joint grid of about n/5 cells)."""
    return Binning(bins, miller_madow)
