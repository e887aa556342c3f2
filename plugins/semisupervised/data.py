"""One run's data for the ``semi_supervised`` task: m labeled rows, n shifted
unlabeled rows, and the in-domain test (exact or a held-out split).

Gaussian mixture (``gaussian_mixture`` source): labeled rows from the in-domain
mixture, unlabeled rows from the mixture with means moved so that the TV
distance between the two feature marginals is the entry's ``shift``
(``harness_plugins.semisupervised.gaussian``); the test error is exact, and a
drawn test sample of ``test_size`` rows feeds sample metrics (``accuracy``).

Tables (``keel`` and any source of numeric features with two classes): a
stratified ``test`` fraction is held out; the other rows are the in-domain
pool, whose statistics standardise the features.  ``m`` labeled rows are drawn
from the pool uniformly (at least one per class); the unlabeled rows are drawn
with replacement from the rest of the pool with importance weights
``w_i ~ exp(beta z_i)``, ``z`` the standardised projection on a direction (the
pool's first principal component, or a random one): a covariate shift.  Its TV
distance to the uniform distribution on the same rows, ``1/2 sum |w_i - 1/N|``,
is computed exactly, and ``beta`` is solved for the entry's ``shift``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import UserError


@dataclass
class SslData:
    """Labeled ``(X, s)`` with ``s = +-1``, unlabeled ``U`` (with the labels
    ``U_s`` it came with, for diagnostics only), and the test side: ``exact``
    (``mu``, ``variances``) for the mixture, and a test sample ``(X_test, s_test)``."""

    X: Any
    s: Any
    U: Any
    U_s: Any
    X_test: Any
    s_test: Any
    exact: dict | None = None
    info: dict = field(default_factory=dict)


def prepare_mixture(problem, entry: dict, seed: int) -> SslData:
    """Draw the labeled, unlabeled and test samples of the Gaussian mixture."""
    import numpy as np

    from harness_plugins.semisupervised.gaussian import shift_for_tv

    delta, tv = shift_for_tv(problem, float(entry["shift"]))
    rng = np.random.default_rng(seed)
    X, s = problem.sample(entry["labeled"], rng)
    U, U_s = problem.sample(entry["unlabeled"], rng, mean=problem.shifted_mean(delta))
    X_test, s_test = problem.sample(entry["test_size"], rng)
    return SslData(X, s, U, U_s, X_test, s_test,
                   exact={"mu": problem.mu, "variances": problem.variances},
                   info={"shift/tv": tv, "shift/delta": delta,
                         "bayes_error": problem.bayes_error()})


def _binary_labels(y, label: str):
    """``+-1`` labels of a two-class label vector (the larger code is +1)."""
    import numpy as np

    classes = np.unique(np.asarray(y))
    if len(classes) != 2:
        raise UserError(f"dataset {label!r} has {len(classes)} classes: the semi_supervised "
                        f"task trains binary linear classifiers")
    return np.where(np.asarray(y) == classes[1], 1.0, -1.0)


def resampling_tv(weights) -> float:
    """TV between the distribution ``weights`` (summing to 1) on N rows and the
    uniform one on the same rows."""
    import numpy as np

    return float(0.5 * np.abs(weights - 1.0 / len(weights)).sum())


def shift_weights(z, tv: float) -> tuple[Any, float, float]:
    """``(weights, beta, achieved TV)`` of ``w ~ exp(beta z)`` with TV = ``tv``
    (bisection on beta; TV grows with beta up to ``1 - 1/N``)."""
    import numpy as np

    def weights(beta):
        a = beta * z
        w = np.exp(a - a.max())
        return w / w.sum()

    n = len(z)
    if tv == 0.0:
        return np.full(n, 1.0 / n), 0.0, 0.0
    if tv >= 1.0 - 1.0 / n - 1e-9:
        raise UserError(f"shift {tv}: a reweighting of {n} rows reaches TV < {1 - 1 / n:.4f}")
    lo, hi = 0.0, 1.0
    while resampling_tv(weights(hi)) < tv:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise UserError(f"shift {tv}: the pool's projection is too concentrated to reach it")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if resampling_tv(weights(mid)) < tv:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    beta = 0.5 * (lo + hi)
    w = weights(beta)
    return w, beta, resampling_tv(w)


def _stratified_test(s, fraction: float, rng):
    """Indices of a stratified test split (at least one row per class)."""
    import numpy as np

    test = []
    for c in (-1.0, 1.0):
        idx = rng.permutation(np.flatnonzero(s == c))
        test.append(idx[: max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(test))


def prepare_table(raw, entry: dict, seed: int) -> SslData:
    """Split a two-class table into test, labeled and covariate-shifted unlabeled rows."""
    import numpy as np

    label = entry.get("label", raw.name)
    X = np.asarray(raw.X, dtype=np.float64).reshape(len(raw.X), -1)
    s = _binary_labels(raw.y, label)
    rng = np.random.default_rng(seed)
    test = _stratified_test(s, entry["test"], rng)
    pool = np.setdiff1d(np.arange(len(s)), test)
    mean, std = X[pool].mean(0), X[pool].std(0)
    X = (X - mean) / np.where(std > 0, std, 1.0)
    m = entry["labeled"]
    if m + 1 > len(pool):
        raise UserError(f"dataset {label!r}: {m} labeled rows leave no unlabeled pool "
                        f"(the pool has {len(pool)} rows after the test split)")
    # one labeled row per class first, so ERM sees both classes
    first = [rng.choice(pool[s[pool] == c]) for c in (-1.0, 1.0)]
    rest = rng.permutation(np.setdiff1d(pool, first))
    labeled = np.concatenate([first, rest[: m - 2]]) if m >= 2 else rest[:m]
    others = np.setdiff1d(pool, labeled)
    z = _direction_scores(X[others], entry["direction"], rng)
    w, beta, tv = shift_weights(z, float(entry["shift"]))
    drawn = rng.choice(others, size=entry["unlabeled"], replace=True, p=w)
    return SslData(X[labeled], s[labeled], X[drawn], s[drawn], X[test], s[test],
                   info={"shift/tv": tv, "shift/beta": beta})


def _direction_scores(X, direction: str, rng):
    """Standardised projections of the rows on the shift direction."""
    import numpy as np

    centred = X - X.mean(0)
    if direction == "pc1":
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        v = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    else:
        v = rng.standard_normal(X.shape[1])
        v /= np.linalg.norm(v)
    z = centred @ v
    sd = z.std()
    return z / sd if sd > 0 else z
