"""The augmenter contract's base classes and the classical augmenters.

An augmenter (see ``register_augmenters`` in ``harness.hookspecs``) is fit on
the train split and samples labelled rows.  :class:`Augmenter` handles what
every augmenter shares: the ``ratio``/``mode`` settings the mixing glue reads,
the per-class minimum check, flattening ``(N, *in_shape)`` inputs to rows and
back, and turning a total count into per-class counts.  Subclasses implement
``_fit(X, y, rng)`` and ``_sample(n_per_class, rng)`` on flat float64 rows.

:class:`LikelihoodAugmenter` adds ``instance_noise`` (Chae, Kim, Kim and Lin,
"A likelihood approach to nonparametric estimation of a singular
distribution using deep generative models", JMLR 2023): the generator is
fit by maximum likelihood on ``X + N(0, sigma^2)``, which makes the
likelihood of data concentrated near a low-dimensional set well defined.
The paper's estimator of the data distribution is the fitted generator's
output with the noise left out (the push-forward of the latent law, not the
noise-smoothed density that was fit), so samples are drawn with the
instance noise removed by default (``denoise: true``): ``gaussian_nb`` and
``gmm`` subtract ``sigma^2`` from their fitted variances (floored just above
zero).  ``denoise: false`` samples the smoothed fit.  ``cvae`` and ``ddpm``
sample their smoothed fit either way.  SMOTE interpolates between
neighbours and has no likelihood, so it does not take the option.

Built-ins here: ``smote`` (imbalanced-learn), ``gaussian_nb`` (class means and
one pooled diagonal variance: the GDA paper's bGMM generator) and ``gmm``
(scikit-learn ``GaussianMixture`` per class).  ``cvae``, ``ddpm`` and the
``ctgan`` package's generators live in their own modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from harness import UserError, hookimpl

if TYPE_CHECKING:  # numpy is imported lazily: this module loads at start-up
    import numpy as np

Mode = Literal["fixed", "per_batch"]
MODES = ("fixed", "per_batch")
#: Generated samples per real train sample.
Ratio = Annotated[float, Field(ge=0)]
#: Standard deviation of the Gaussian noise added before fitting.
NoiseStd = Annotated[float, Field(ge=0)]
#: Steps, units, batch sizes: at least one.
Count = Annotated[int, Field(ge=1)]
#: A learning rate.
Rate = Annotated[float, Field(gt=0)]


def draw_seed(rng: np.random.Generator) -> int:
    """An int seed for libraries that take ``random_state`` (drawn from ``rng``)."""
    return int(rng.integers(0, 2**31 - 1))


def split_total(n: int, counts: dict[int, int]) -> dict[int, int]:
    """``n`` samples shared out in proportion to ``counts`` (largest
    remainders), so generated class proportions follow the train split's."""
    import numpy as np

    classes = sorted(counts)
    total = sum(counts[c] for c in classes)
    quota = np.array([n * counts[c] / total for c in classes])
    alloc = np.floor(quota).astype(int)
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[: n - alloc.sum()]] += 1
    return {c: int(a) for c, a in zip(classes, alloc)}


class Augmenter:
    """Base class: fit on ``(X, y)``, sample per-class counts.

    ``ratio``: generated samples per real train sample (mixed in by
    ``harness_plugins.augmentation.mixing``); ``mode``: ``fixed`` (one
    generated set added to the train split) or ``per_batch``;
    ``min_per_class``: the fewest train samples of a class the generator can
    fit on."""

    name = "augmenter"
    min_per_class = 2

    def __init__(self, ratio: float = 1.0, mode: Mode = "fixed"):
        if ratio < 0:
            raise ValueError(f"{self.name}: ratio must be >= 0, got {ratio!r}")
        if mode not in MODES:
            raise ValueError(f"{self.name}: unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.ratio = float(ratio)
        self.mode = mode
        self.device = "cpu"  # the mixing glue sets the run's device

    def check_counts(self, counts: dict, names: dict | None = None) -> None:
        """Raise ``UserError`` naming the first class with fewer than
        ``min_per_class`` samples (``names`` maps codes to original labels)."""
        for c, n in sorted(counts.items()):
            if n < self.min_per_class:
                label = names.get(c, c) if names else c
                raise UserError(
                    f"augmenter {self.name!r}: class {label!r} has {n} training sample(s); "
                    f"it needs at least {self.min_per_class} per class{self._min_reason()}")

    def _min_reason(self) -> str:
        return ""

    def fit(self, X, y, rng: np.random.Generator) -> Augmenter:
        """Fit on the train split: ``X`` float ``(N, *in_shape)``, ``y`` int64 ``(N,)``."""
        import numpy as np

        X = np.asarray(X)
        y = np.asarray(y, dtype=np.int64)
        self.in_shape = tuple(X.shape[1:])
        classes, counts = np.unique(y, return_counts=True)
        self.counts_ = {int(c): int(n) for c, n in zip(classes, counts)}
        self.check_counts(self.counts_)
        self._fit(X.reshape(len(X), -1).astype(np.float64), y, rng)
        return self

    def sample(self, n_per_class: dict[int, int] | int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(X_gen, y_gen)``: float32 ``(n, *in_shape)`` and int64 labels; an
        int ``n`` is shared out in the train split's class proportions."""
        import numpy as np

        if isinstance(n_per_class, int | np.integer):
            n_per_class = split_total(int(n_per_class), self.counts_)
        unknown = sorted(set(n_per_class) - set(self.counts_))
        if unknown:
            raise ValueError(f"{self.name}: cannot sample classes {unknown}: not fitted on them")
        wanted = {int(c): int(n) for c, n in n_per_class.items() if n > 0}
        if not wanted:
            return (np.zeros((0, *self.in_shape), np.float32), np.zeros(0, np.int64))
        X, y = self._sample(wanted, rng)
        return (np.asarray(X, np.float32).reshape(len(X), *self.in_shape),
                np.asarray(y, np.int64))

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _sample(self, n_per_class: dict[int, int], rng: np.random.Generator):
        raise NotImplementedError


class LikelihoodAugmenter(Augmenter):
    """An augmenter fit by maximum likelihood; ``instance_noise`` > 0 fits it
    on the data plus Gaussian noise of that standard deviation (Chae et al.);
    ``denoise`` then samples with that noise's variance removed where the
    subclass can (``_remove_instance_noise``), as the paper's estimator does."""

    def __init__(self, ratio: float = 1.0, mode: Mode = "fixed", instance_noise: float = 0.0,
                 denoise: bool = True):
        super().__init__(ratio, mode)
        if instance_noise < 0:
            raise ValueError(f"{self.name}: instance_noise must be >= 0, got {instance_noise!r}")
        self.instance_noise = float(instance_noise)
        self.denoise = bool(denoise)

    def fit(self, X, y, rng: np.random.Generator) -> LikelihoodAugmenter:
        """Fit on ``X`` (plus instance noise when set, removed again from the
        fitted model when ``denoise``)."""
        import numpy as np

        if self.instance_noise > 0:
            X = np.asarray(X, np.float64)
            X = X + rng.normal(0.0, self.instance_noise, size=X.shape)
        super().fit(X, y, rng)
        if self.instance_noise > 0 and self.denoise:
            self._remove_instance_noise(self.instance_noise ** 2)
        return self

    def _remove_instance_noise(self, variance: float) -> None:
        """Take the instance noise's ``variance`` out of the fitted model;
        generators without a separable noise term keep their smoothed fit."""


class Smote(Augmenter):
    """SMOTE through imbalanced-learn: each new row interpolates between a
    class sample and one of its ``k_neighbors`` nearest same-class neighbours."""

    name = "smote"

    def __init__(self, ratio: float = 1.0, mode: Mode = "fixed", k_neighbors: int = 5):
        super().__init__(ratio, mode)
        if k_neighbors < 1:
            raise ValueError(f"smote: k_neighbors must be >= 1, got {k_neighbors!r}")
        self.k_neighbors = int(k_neighbors)
        self.min_per_class = self.k_neighbors + 1

    def _min_reason(self) -> str:
        return f" (k_neighbors + 1; lower k_neighbors={self.k_neighbors})"

    def _fit(self, X, y, rng) -> None:
        try:
            import imblearn  # noqa: F401
        except ImportError:
            raise UserError("augmenter 'smote' needs imbalanced-learn: "
                            "pip install 'harness-bench[augment]'") from None
        # SMOTE needs the data at sampling time; fitting is keeping it
        self.X_, self.y_ = X, y

    def _sample(self, n_per_class, rng):
        from imblearn.over_sampling import SMOTE

        # imbalanced-learn's target is the class size after resampling; SMOTE
        # appends exactly the new rows after the originals
        target = {c: self.counts_[c] + n_per_class.get(c, 0) for c in self.counts_}
        smote = SMOTE(sampling_strategy=target, k_neighbors=self.k_neighbors,
                      random_state=draw_seed(rng))
        X_all, y_all = smote.fit_resample(self.X_, self.y_)
        n_real = len(self.y_)
        return X_all[n_real:], y_all[n_real:]


class GaussianNB(LikelihoodAugmenter):
    """Class-conditional Gaussian with class means and one pooled diagonal
    variance (the GDA paper's bGMM generator, fit by maximum likelihood with
    the unbiased pooled variance)."""

    name = "gaussian_nb"

    def _fit(self, X, y, rng) -> None:
        import numpy as np

        classes = sorted(self.counts_)
        self.means_ = {c: X[y == c].mean(0) for c in classes}
        resid = np.concatenate([X[y == c] - self.means_[c] for c in classes])
        dof = max(len(X) - len(classes), 1)
        var = (resid ** 2).sum(0) / dof
        # a constant feature (a border pixel) would give zero variance
        self.var_ = np.maximum(var, 1e-9 * max(float(var.max()), 1.0))

    def _remove_instance_noise(self, variance: float) -> None:
        import numpy as np

        self.var_ = np.maximum(self.var_ - variance, 1e-9 * max(float(self.var_.max()), 1.0))

    def _sample(self, n_per_class, rng):
        import numpy as np

        std = np.sqrt(self.var_)
        X = [self.means_[c] + std * rng.standard_normal((n, len(std)))
             for c, n in n_per_class.items()]
        y = [np.full(n, c) for c, n in n_per_class.items()]
        return np.concatenate(X), np.concatenate(y)


class GMM(LikelihoodAugmenter):
    """A scikit-learn ``GaussianMixture`` per class."""

    name = "gmm"

    def __init__(self, ratio: float = 1.0, mode: Mode = "fixed", instance_noise: float = 0.0,
                 n_components: int = 2, covariance_type: str = "diag",
                 reg_covar: float = 1e-3, denoise: bool = True):
        super().__init__(ratio, mode, instance_noise, denoise)
        if n_components < 1:
            raise ValueError(f"gmm: n_components must be >= 1, got {n_components!r}")
        self.n_components = int(n_components)
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)
        self.min_per_class = self.n_components

    def _min_reason(self) -> str:
        return f" (one per mixture component; lower n_components={self.n_components})"

    def _fit(self, X, y, rng) -> None:
        from sklearn.mixture import GaussianMixture

        self.models_ = {}
        for c in sorted(self.counts_):
            gm = GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                                 reg_covar=self.reg_covar, random_state=draw_seed(rng))
            self.models_[c] = gm.fit(X[y == c])

    def _remove_instance_noise(self, variance: float) -> None:
        """sigma^2 (times I) off every component's covariance; ``sample``
        reads ``covariances_``.  Full and tied matrices are clipped to
        positive eigenvalues."""
        import numpy as np

        for gm in self.models_.values():
            cov = np.asarray(gm.covariances_, np.float64)
            floor = 1e-9 * max(float(np.abs(cov).max()), 1.0)
            if self.covariance_type in ("diag", "spherical"):
                gm.covariances_ = np.maximum(cov - variance, floor)
                continue
            vals, vecs = np.linalg.eigh(cov)
            vals = np.maximum(vals - variance, floor)
            gm.covariances_ = (vecs * vals[..., None, :]) @ np.swapaxes(vecs, -1, -2)

    def _sample(self, n_per_class, rng):
        import numpy as np

        Xs, ys = [], []
        for c, n in n_per_class.items():
            gm = self.models_[c]
            # GaussianMixture.sample draws from its own random_state
            gm.random_state = draw_seed(rng)
            X, _ = gm.sample(n)
            Xs.append(X)
            ys.append(np.full(n, c))
        return np.concatenate(Xs), np.concatenate(ys)


def smote(ratio: Ratio = 1.0, mode: Mode = "fixed", k_neighbors: Count = 5) -> Smote:
    """SMOTE (Chawla et al. 2002) via imbalanced-learn: interpolate same-class neighbours."""
    return Smote(ratio, mode, k_neighbors)


def gaussian_nb(ratio: Ratio = 1.0, mode: Mode = "fixed", instance_noise: NoiseStd = 0.0,
                denoise: bool = True) -> GaussianNB:
    """Class-conditional Gaussian, pooled diagonal variance (bGMM generator, Zheng et al. 2023).

    ``instance_noise``: fit on the data plus N(0, sigma^2); ``denoise``: sample
    with sigma^2 taken off the fitted variance (Chae et al.'s estimator)."""
    return GaussianNB(ratio, mode, instance_noise, denoise)


def gmm(ratio: Ratio = 1.0, mode: Mode = "fixed", instance_noise: NoiseStd = 0.0,
        n_components: Count = 2, covariance_type: Literal["full", "tied", "diag", "spherical"]
        = "diag", reg_covar: Annotated[float, Field(ge=0)] = 1e-3, denoise: bool = True) -> GMM:
    """Gaussian mixture per class (scikit-learn GaussianMixture, EM).

    ``instance_noise``/``denoise`` as for ``gaussian_nb``: with ``denoise``
    sigma^2 I comes off every component's covariance before sampling."""
    return GMM(ratio, mode, instance_noise, n_components, covariance_type, reg_covar, denoise)


@hookimpl
def register_augmenters(register):
    """The classical augmenters: smote, gaussian_nb, gmm."""
    register("smote", smote)
    register("gaussian_nb", gaussian_nb)
    register("gmm", gmm)
