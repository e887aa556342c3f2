"""Quality figures of generated data against held-out real data.

Both figures are computed per class (generated rows of class c against real
held-out rows of class c) and averaged with the held-out class sizes as
weights, so a generator that puts good-looking rows under the wrong label is
caught:

- ``c2st``: classifier two-sample test accuracy (Lopez-Paz & Oquab 2017).  A
  5-nearest-neighbour classifier tries to tell generated from real rows in
  stratified 5-fold cross-validation on equal-sized samples; 0.5 means
  indistinguishable, 1.0 perfectly separable.  k-NN rather than a linear
  model because a generator can match means and variances (which a linear
  test sees) and still miss the shape of the data.
- ``mmd``: the squared maximum mean discrepancy with a Gaussian kernel whose
  bandwidth is the median pairwise distance of the pooled rows (biased
  V-statistic; 0 for identical samples).

The held-out data is the validation split: the generator never sees it and
the test split stays untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Rows per side and class at most (pairwise kernels are quadratic).
MAX_ROWS = 500
#: Fewest held-out rows of a class for its figure (5-fold CV needs 5 per side).
MIN_ROWS = 5


def _rows(X) -> np.ndarray:
    import numpy as np

    X = np.asarray(X, np.float64)
    return X.reshape(len(X), -1)


def c2st_accuracy(real, fake, seed: int = 0) -> float:
    """Cross-validated accuracy of a 5-NN classifier telling ``fake`` rows from
    ``real`` ones, on equal-sized random subsets (0.5 = indistinguishable)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    real, fake = _rows(real), _rows(fake)
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake), MAX_ROWS)
    if n < MIN_ROWS:
        return float("nan")
    real = real[rng.choice(len(real), n, replace=False)]
    fake = fake[rng.choice(len(fake), n, replace=False)]
    X = np.concatenate([real, fake])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    knn = KNeighborsClassifier(min(5, n - n // 5))
    return float(cross_val_score(knn, X, y, cv=folds).mean())


def mmd_rbf(real, fake, seed: int = 0) -> float:
    """Squared MMD (biased) with a Gaussian kernel, median-heuristic bandwidth."""
    import numpy as np
    from scipy.spatial.distance import cdist

    real, fake = _rows(real), _rows(fake)
    rng = np.random.default_rng(seed)
    if len(real) > MAX_ROWS:
        real = real[rng.choice(len(real), MAX_ROWS, replace=False)]
    if len(fake) > MAX_ROWS:
        fake = fake[rng.choice(len(fake), MAX_ROWS, replace=False)]
    if not len(real) or not len(fake):
        return float("nan")
    pooled = np.concatenate([real, fake])
    d2 = cdist(pooled, pooled, "sqeuclidean")
    median = np.median(d2[np.triu_indices(len(pooled), 1)]) if len(pooled) > 1 else 0.0
    gamma = 1.0 / median if median > 0 else 1.0
    K = np.exp(-gamma * d2)
    n = len(real)
    return float(K[:n, :n].mean() + K[n:, n:].mean() - 2 * K[:n, n:].mean())


def generated_quality(X_gen, y_gen, X_ref, y_ref, seed: int = 0) -> dict[str, float]:
    """``{"c2st": .., "mmd": ..}`` of generated against real held-out rows,
    per class and averaged by held-out class size; classes with fewer than
    ``MIN_ROWS`` rows on either side are left out (NaN when none is left)."""
    import numpy as np

    X_gen, X_ref = _rows(X_gen), _rows(X_ref)
    y_gen, y_ref = np.asarray(y_gen), np.asarray(y_ref)
    scores: dict[str, list[float]] = {"c2st": [], "mmd": []}
    weights: list[int] = []
    for c in np.unique(y_ref):
        real, fake = X_ref[y_ref == c], X_gen[y_gen == c]
        if min(len(real), len(fake)) < MIN_ROWS:
            continue
        scores["c2st"].append(c2st_accuracy(real, fake, seed))
        scores["mmd"].append(mmd_rbf(real, fake, seed))
        weights.append(len(real))
    if not weights:
        return {"c2st": float("nan"), "mmd": float("nan")}
    return {k: float(np.average(v, weights=weights)) for k, v in scores.items()}
