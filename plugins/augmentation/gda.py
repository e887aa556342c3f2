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

from typing import Annotated

from pydantic import Field

from harness import hookimpl
from harness.data import RawDataset


def bgmm(d: Annotated[int, Field(ge=1)] = 10, n_samples: Annotated[int, Field(ge=2)] = 20000,
         sigma: Annotated[float, Field(gt=0)] = 0.6,
         random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> RawDataset:
    """Binary Gaussian mixture: class means +-1/sqrt(d) per coordinate, sigma 0.6 (GDA paper)."""
    import numpy as np

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


def train_per_class(n: Annotated[int, Field(ge=1)]) -> TrainPerClass:
    """Keep n training rows per class (all of a smaller class); val and test untouched."""
    return TrainPerClass(n)


@hookimpl
def register_datasets(register):
    """The GDA simulation's binary Gaussian mixture."""
    register("bgmm", bgmm)


@hookimpl
def register_transforms(register):
    """The per-class training-size transform."""
    register("train_per_class", train_per_class)
