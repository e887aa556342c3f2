"""The GDA simulation's data and learner, and small-data regimes: the
``bgmm`` dataset source, the ``train_size`` and ``train_per_class``
transforms and the ``bgmm_mean`` model.

``bgmm`` is the binary Gaussian mixture of Zheng et al. (2023), "Toward
understanding generative data augmentation": labels +-1 with equal
probability, ``x = y * mu + sigma * N(0, I_d)`` with ``mu = 1/sqrt(d)`` in
every coordinate (so ``|mu| = 1``) and ``sigma = 0.6``.  The pool is fixed by
``random_state`` (like ``synthetic``): every seed draws its own split of it.
Its features are not standardised by the classification task (the metadata
says ``standardize: False``): the paper's analysis is on the mixture as drawn.

``train_per_class: m`` keeps ``m`` random training rows of each class (all
of a smaller class), leaving validation and test untouched: the m_S of the
simulation and the 50/100/200-per-class regimes of the augmentation suite.
``train_size: m`` keeps ``m`` training rows in all, shared evenly over the
classes (the first ``m mod K`` classes get one more), which is how the GDA
paper counts m_S (its code draws m samples with ``make_blobs``, m/2 a class).

``bgmm_mean`` is the learner the paper analyses on the bGMM: theta =
mean(y_i x_i) over the (augmented) train split with y in {-1, +1}, no
intercept and no regulariser; it predicts sign(theta . x) and its loss is
the Gaussian negative log-likelihood ||x - y theta||^2 / (2 sigma^2).  Its
logits are the two class-conditional log-densities -||x -+ theta||^2 /
(2 sigma^2), so the arg-max is the paper's prediction and minus the true
class's logit is the paper's NLL (``nll_generalization_gap`` reads it
through the model's ``nll``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import FromData, UserError, hookimpl
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
    # standardize False: the learner has no intercept and its NLL is on the
    # mixture's own scale, so the features must reach it as drawn
    return RawDataset("bgmm", X.astype(np.float64), y,
                      meta={"d": d, "sigma": sigma, "bayes_error": _bayes_error(sigma),
                            "standardize": False})


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


class TrainSize:
    """Keep ``n`` random rows of the train split in all, shared evenly over classes."""

    stage = "train"

    def __init__(self, n: int):
        self.n = n

    def apply(self, X, y, rng):
        import numpy as np

        y = np.asarray(y)
        classes = np.unique(y)
        share = [self.n // len(classes) + (i < self.n % len(classes))
                 for i in range(len(classes))]
        keep = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, share)]
        idx = np.sort(np.concatenate(keep)) if keep else np.arange(0)
        return X[idx], y[idx]

    def __repr__(self) -> str:
        return f"TrainSize(n={self.n!r})"


def train_size(n: Annotated[int, Field(ge=1)]) -> TrainSize:
    """Keep n training rows in all, shared evenly over classes (the GDA paper's m_S)."""
    return TrainSize(n)


def bgmm_mean(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData],
              sigma: Annotated[float, Field(gt=0)] = 0.6):
    """GDA paper's bGMM learner: theta = mean(y x), y = +-1, no intercept (use closed_form).

    ``sigma``: the mixture's noise level in its NLL loss ||x - y theta||^2 /
    (2 sigma^2) (the paper uses the true 0.6)."""
    import math

    import torch
    import torch.nn as nn

    if n_classes != 2:
        raise ValueError(f"bgmm_mean is a binary learner; the dataset has {n_classes} classes")
    d = math.prod(in_shape)

    class MeanEstimator(nn.Module):
        """Logits -||x - s_c theta||^2 / (2 sigma^2), s = (-1, +1)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("theta", torch.zeros(d))
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
            # a torch optimizer needs a parameter to be built; this one is never used
            self.unused = nn.Parameter(torch.zeros(0))

        def forward(self, x):
            if not bool(self.fitted):
                raise UserError("bgmm_mean is fit in closed form, not by gradient steps: "
                                "set training.optimizer: closed_form")
            x = x.flatten(1)
            signs = torch.tensor([-1.0, 1.0], dtype=x.dtype, device=x.device)
            diff = x[:, None, :] - signs[None, :, None] * self.theta.to(x.dtype)
            return -(diff ** 2).sum(-1) / (2 * sigma ** 2)

        def fit(self, X, y) -> MeanEstimator:
            """theta = (1/n) sum_i (2 y_i - 1) x_i over the whole train split."""
            import numpy as np

            X = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, np.float64)
            y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, np.int64)
            X = X.reshape(len(X), -1)
            theta = ((2 * y - 1)[:, None] * X).mean(0) if len(X) else np.zeros(d)
            with torch.no_grad():
                self.theta.copy_(torch.as_tensor(theta))
                self.fitted.fill_(True)
            return self

        def nll(self, logits, labels):
            """Per-row ||x - y theta||^2 / (2 sigma^2): minus the true class's logit."""
            import numpy as np

            logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
            return -logits[np.arange(len(labels)), labels]

    return MeanEstimator()


@hookimpl
def register_models(register):
    """The GDA paper's bGMM learner."""
    register("bgmm_mean", bgmm_mean)


@hookimpl
def register_datasets(register):
    """The GDA simulation's binary Gaussian mixture."""
    register("bgmm", bgmm)


@hookimpl
def register_transforms(register):
    """The training-size transforms: in all and per class."""
    register("train_size", train_size)
    register("train_per_class", train_per_class)
