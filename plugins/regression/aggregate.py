"""Learning from aggregate responses (Javanmard et al., ICLR 2024): bags, the
aggregate a learner sees, the Laplace mechanism, and the losses.

The training rows are grouped into bags of ``k`` rows (a seeded random
permutation cut into ``n // k`` bags; the ``n % k`` rows left over are not
used); the learner sees every row's features but only each bag's mean
response ``ybar_B``.  For predictions ``f_i`` of a bag's rows, with mean
``fbar_B``, the identity

    sum_i (ybar_B - f_i)^2 = k (ybar_B - fbar_B)^2 + sum_i (f_i - fbar_B)^2

makes the instance-level loss the bag-level loss plus a penalty on the spread
of the predictions inside a bag.  The interpolating estimator weighs that
penalty by ``rho`` in [0, 1]; per bag and divided by ``k`` (the scale of one
row):

    interpolating_rho = (ybar_B - fbar_B)^2 + (rho / k) sum_i (f_i - fbar_B)^2,

so ``rho = 0`` is the bag-level loss and ``rho = 1`` the instance-level loss
``(1/k) sum_i (ybar_B - f_i)^2``.  Every loss here is the mean over bags of
that per-bag value: with ``k = 1`` each is the ordinary squared error.

Differential privacy (the paper's mechanism): each response is clipped to
``[centre - C, centre + C]`` so one response moves a bag's sum by at most its
sensitivity ``2C``; Laplace noise of scale ``2C / (k epsilon)`` on each bag
mean makes the released means epsilon-DP with respect to any one response
(label DP: features are public; bags are disjoint, so the bags compose in
parallel).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: The interpolation weight: 0 is the bag-level loss, 1 the instance-level loss.
Rho = Annotated[float, Field(ge=0, le=1)]


def make_bags(n: int, k: int, seed: int):
    """``(n // k, k)`` row indices: a permutation of ``range(n)`` drawn from
    ``seed``, cut into consecutive bags; the last ``n % k`` rows are left out."""
    import numpy as np

    if not 1 <= k <= n:
        raise ValueError(f"bag size {k} must be between 1 and the {n} training rows")
    order = np.random.default_rng(seed).permutation(n)
    m = n // k
    return order[: m * k].reshape(m, k)


def laplace_scale(sensitivity: float, k: int, epsilon: float) -> float:
    """Laplace scale on a bag's mean response: ``sensitivity / (k epsilon)``,
    where ``sensitivity`` bounds how far one response can move a bag's sum."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return float(sensitivity) / (k * float(epsilon))


def aggregate_responses(y, bags, *, epsilon: float | None = None, clip: float | None = None,
                        centre: float = 0.0, seed: int = 0):
    """Each bag's mean response, as released to the learner: ``(m,)``.

    With ``epsilon``, responses are first clipped to ``centre +- clip`` and
    Laplace noise of scale ``laplace_scale(2 clip, k, epsilon)`` is added to
    each mean (noise drawn from ``seed``)."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    if epsilon is None:
        return y[bags].mean(axis=1)
    if clip is None or not clip > 0:
        raise ValueError("the Laplace mechanism needs a clip bound > 0")
    clipped = np.clip(y, centre - clip, centre + clip)
    means = clipped[bags].mean(axis=1)
    scale = laplace_scale(2.0 * clip, bags.shape[1], epsilon)
    return means + np.random.default_rng(seed).laplace(0.0, scale, size=len(means))


def bag_loss(f, ybar):
    """Mean over bags of ``(ybar_B - fbar_B)^2``; ``f`` is ``(m, k)``, ``ybar`` ``(m,)``."""
    return ((ybar - f.mean(1)) ** 2).mean()


def instance_loss(f, ybar):
    """Mean over rows of ``(ybar_B - f_i)^2``: every row fitted to its bag's mean."""
    return ((ybar[:, None] - f) ** 2).mean()


def interpolating_loss(f, ybar, rho: float):
    """Mean over bags of ``(ybar_B - fbar_B)^2 + (rho / k) sum_i (f_i - fbar_B)^2``."""
    fbar = f.mean(1)
    spread = ((f - fbar[:, None]) ** 2).mean(1)
    return ((ybar - fbar) ** 2 + rho * spread).mean()


class AggregateLoss:
    """An aggregate loss with its interpolation weight ``rho`` (what the
    closed-form linear solver needs) and a callable ``(f (m, k), ybar (m,))
    -> scalar`` on numpy arrays or torch tensors."""

    def __init__(self, name: str, rho: float):
        self.name = name
        self.rho = float(rho)

    def __call__(self, f, ybar):
        if self.rho == 0.0:
            return bag_loss(f, ybar)
        if self.rho == 1.0:
            return instance_loss(f, ybar)
        return interpolating_loss(f, ybar, self.rho)

    def __repr__(self) -> str:
        return f"AggregateLoss({self.name!r}, rho={self.rho})"


def bag():
    """Bag-level loss: each bag's mean prediction fitted to its mean response (rho = 0)."""
    return AggregateLoss("bag", 0.0)


def instance():
    """Instance-level loss: every row's prediction fitted to its bag's mean response (rho = 1)."""
    return AggregateLoss("instance", 1.0)


def interpolating(rho: Rho = 0.5):
    """The interpolating estimator: bag-level loss + rho x the within-bag spread (Javanmard et al.).

    ``rho`` = 0 is the bag-level loss, 1 the instance-level loss."""
    return AggregateLoss("interpolating", rho)


def solve_linear(X, ybar, bags, rho: float, l2: float = 0.0):
    """The linear model ``(w, b)`` minimising the interpolating loss exactly.

    Rows: ``sqrt(k) (xbar_B, 1)`` with target ``sqrt(k) ybar_B`` for each bag
    (the bag-level term), and ``sqrt(rho) (x_i - xbar_B, 0)`` with target 0
    for each row (the within-bag spread; the intercept cancels in it).  Least
    squares on them (minimum norm when under-determined, as the ridgeless
    limit) is the minimiser; ``l2`` adds a ridge on ``w``."""
    import numpy as np

    X = np.asarray(X, dtype=np.float64)
    m, k = bags.shape
    d = X.shape[1]
    xb = X[bags]                      # (m, k, d)
    xbar = xb.mean(1)                 # (m, d)
    rows = [np.sqrt(k) * np.hstack([xbar, np.ones((m, 1))])]
    targets = [np.sqrt(k) * np.asarray(ybar, dtype=np.float64)]
    if rho > 0 and k > 1:
        dev = (xb - xbar[:, None, :]).reshape(m * k, d)
        rows.append(np.sqrt(rho) * np.hstack([dev, np.zeros((m * k, 1))]))
        targets.append(np.zeros(m * k))
    if l2 > 0:
        rows.append(np.sqrt(l2 * m * k) * np.hstack([np.eye(d), np.zeros((d, 1))]))
        targets.append(np.zeros(d))
    A, t = np.vstack(rows), np.concatenate(targets)
    gram = A.T @ A
    # the normal equations when they are well posed (a d x d solve instead of
    # an SVD of the stacked rows), else minimum-norm least squares
    if np.linalg.cond(gram) < 1e10:
        coef = np.linalg.solve(gram, A.T @ t)
    else:
        coef = np.linalg.lstsq(A, t, rcond=None)[0]
    return coef[:d], float(coef[d])
