"""Data for the GDA simulation and small-data regimes: the ``bgmm`` dataset
source and the ``train_per_class`` transform.

``bgmm`` is the binary Gaussian mixture of Zheng et al. (2023), "Toward
understanding generative data augmentation": labels +-1 with equal
probability, ``x = y * mu + sigma * N(0, I_d)`` with ``mu = 1/sqrt(d)`` in
every coordinate (so ``|mu| = 1``) and ``sigma = 0.6``.  The pool is fixed by
``random_state`` (like ``synthetic``): every seed draws its own split of it.

``train_per_class: m`` keeps ``m`` random training rows of each class (all
of a smaller class), leaving validation and test untouched: the m_S of the
simulation and the 50/100/200-per-class regimes of the augmentation suite.
"""

from __future__ import annotations

from harness import hookimpl
from harness.data import RawDataset


def bgmm(d: int = 10, n_samples: int = 20000, sigma: float = 0.6,
         random_state: int = 0) -> RawDataset:
    """Binary Gaussian mixture: class means +-1/sqrt(d) per coordinate, sigma 0.6 (GDA paper)."""
    import numpy as np

    if d < 1 or n_samples < 2:
        raise ValueError(f"bgmm needs d >= 1 and n_samples >= 2, got d={d!r}, "
                         f"n_samples={n_samples!r}")
    if sigma <= 0:
        raise ValueError(f"bgmm: sigma must be > 0, got {sigma!r}")
    rng = np.random.default_rng(random_state)
    y = rng.integers(0, 2, n_samples)
    sign = (2 * y - 1)[:, None]
    X = sign / np.sqrt(d) + sigma * rng.standard_normal((n_samples, d))
    return RawDataset("bgmm", X.astype(np.float64), y,
                      meta={"d": d, "sigma": sigma, "bayes_error": _bayes_error(sigma)})


def _bayes_error(sigma: float) -> float:
    """Phi(-|mu| / sigma) with |mu| = 1: the error of the optimal classifier."""
    import math

    return 0.5 * math.erfc(1.0 / sigma / math.sqrt(2.0))


class TrainPerClass:
    """Keep ``n`` random rows per class of the train split."""

    stage = "train"

    def __init__(self, n: int):
        self.n = n

    def apply(self, X, y, rng):
        import numpy as np

        y = np.asarray(y)
        keep = [rng.permutation(np.flatnonzero(y == c))[: self.n] for c in np.unique(y)]
        idx = np.sort(np.concatenate(keep)) if keep else np.arange(0)
        return X[idx], y[idx]

    def __repr__(self) -> str:
        return f"TrainPerClass(n={self.n!r})"


def train_per_class(n: int) -> TrainPerClass:
    """Keep n training rows per class (all of a smaller class); val and test untouched."""
    if n < 1:
        raise ValueError(f"train_per_class n must be at least 1, got {n!r}")
    return TrainPerClass(n)


@hookimpl
def register_datasets(register):
    """The GDA simulation's binary Gaussian mixture."""
    register("bgmm", bgmm)


@hookimpl
def register_transforms(register):
    """The per-class training-size transform."""
    register("train_per_class", train_per_class)
