"""Discriminative vs generative linear classifiers (Zheng et al. 2023):
``logreg`` and ``gaussian_nb`` models and the ``closed_form`` training scheme.

Both are torch modules so the classification task evaluates them like any
other model (same metrics, same probabilities, same train-split inputs).
Neither is fit by the task's gradient steps:

- ``gaussian_nb`` is a *generative* classifier: class means, one pooled
  diagonal variance and class priors estimated in closed form.  Its decision
  function is linear in x, so training it by gradient descent on
  cross-entropy would turn it into logistic regression; the comparison only
  means something when it is fit by maximum likelihood.
- ``logreg`` is fit to convergence by scikit-learn's L-BFGS
  (``LogisticRegression``, L2 penalty ``C``) and copied into a linear layer,
  so it is the optimum of its objective rather than wherever a few epochs of
  SGD stop.  It remains an ordinary ``nn.Linear`` model that any optimizer
  can also train.

``training.optimizer: closed_form`` is the training scheme that calls the
model's ``fit(X, y)`` on the whole train split in its ``setup`` and then
takes no gradient steps (``step`` returns the batch loss, so ``train/loss``
is still logged); use it with ``training.epochs: 1``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import FromData, UserError, hookimpl


def _as_numpy(t):
    import numpy as np

    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def logreg(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData],
           C: Annotated[float, Field(gt=0)] = 1.0, max_iter: Annotated[int, Field(ge=1)] = 1000):
    """Logistic regression (linear layer; closed_form fits it with sklearn L-BFGS, L2 penalty C)."""
    import math

    import torch
    import torch.nn as nn

    class LogReg(nn.Module):
        """Multinomial logistic regression on flattened inputs."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(math.prod(in_shape), n_classes)

        def forward(self, x):
            return self.linear(x.flatten(1))

        def fit(self, X, y) -> LogReg:
            """Fit by L-BFGS to convergence (scikit-learn ``LogisticRegression``)."""
            import warnings

            import numpy as np
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression

            X = _as_numpy(X).reshape(len(X), -1).astype(np.float64)
            y = _as_numpy(y).astype(np.int64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=C, max_iter=max_iter).fit(X, y)
            W = np.zeros((n_classes, X.shape[1]))
            b = np.full(n_classes, -1e4)  # classes absent from train are never predicted
            if len(clf.classes_) == 2:
                # sklearn keeps one weight vector for two classes: logits (0, w.x + b)
                W[clf.classes_[1]], b[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
                b[clf.classes_[0]] = 0.0
            else:
                W[clf.classes_], b[clf.classes_] = clf.coef_, clf.intercept_
            with torch.no_grad():
                self.linear.weight.copy_(torch.as_tensor(W))
                self.linear.bias.copy_(torch.as_tensor(b))
            return self

    return LogReg()


def gaussian_nb(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData],
                var_smoothing: Annotated[float, Field(ge=0)] = 1e-9,
                variance: Literal["ml", "unbiased"] = "ml"):
    """Gaussian naive Bayes, pooled diagonal variance, fit in closed form (use closed_form).

    ``variance: ml`` (default) divides the pooled squared residuals by N, the
    maximum-likelihood estimate the reference code of Zheng et al. uses
    (per-class ``np.var`` with ddof 0, weighted by the class priors);
    ``unbiased`` divides by N - K."""
    import math

    import torch
    import torch.nn as nn

    if variance not in ("ml", "unbiased"):
        raise ValueError(f"gaussian_nb: variance must be 'ml' or 'unbiased', got {variance!r}")
    d = math.prod(in_shape)

    class PooledGaussianNB(nn.Module):
        """log p(y) + log N(x; mu_y, diag(sigma^2)) with sigma^2 shared by classes."""

        def __init__(self):
            super().__init__()
            self.register_buffer("means", torch.zeros(n_classes, d))
            self.register_buffer("var", torch.ones(d))
            self.register_buffer("log_prior", torch.zeros(n_classes))
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
            # a torch optimizer needs a parameter to be built; this one is never used
            self.unused = nn.Parameter(torch.zeros(0))

        def forward(self, x):
            if not bool(self.fitted):
                raise UserError("gaussian_nb is fit in closed form, not by gradient steps: "
                                "set training.optimizer: closed_form")
            x = x.flatten(1)
            sq = ((x[:, None, :] - self.means[None]) ** 2 / self.var).sum(-1)
            return self.log_prior - 0.5 * sq

        def fit(self, X, y) -> PooledGaussianNB:
            """Class means, pooled diagonal variance (``variance``) and class priors."""
            import numpy as np

            X = _as_numpy(X).reshape(len(X), -1).astype(np.float64)
            y = _as_numpy(y).astype(np.int64)
            counts = np.bincount(y, minlength=n_classes)
            present = np.flatnonzero(counts)
            means = np.zeros((n_classes, d))
            for c in present:
                means[c] = X[y == c].mean(0)
            resid = X - means[y]
            dof = len(X) if variance == "ml" else len(X) - len(present)
            var = (resid ** 2).sum(0) / max(dof, 1)
            var = var + var_smoothing * max(float(X.var(0).max()), 1e-12)
            with np.errstate(divide="ignore"):
                log_prior = np.where(counts > 0, np.log(counts / counts.sum()), -1e4)
            with torch.no_grad():
                self.means.copy_(torch.as_tensor(means))
                self.var.copy_(torch.as_tensor(var))
                self.log_prior.copy_(torch.as_tensor(log_prior))
                self.fitted.fill_(True)
            return self

    return PooledGaussianNB()


class ClosedForm:
    """Training scheme for models fit in closed form: ``setup`` calls
    ``model.fit(X_train, y_train)``; ``step`` only evaluates the batch loss."""

    def __init__(self):
        self.optimizer = None  # nothing for a scheduler to step

    def setup(self, model, loss_fn, info) -> None:
        """Fit ``model`` on the whole train split."""
        if not hasattr(model, "fit"):
            raise UserError(f"training.optimizer closed_form needs a model with fit(X, y) "
                            f"(logreg, gaussian_nb); {type(model).__name__} has none")
        self.model, self.loss_fn = model, loss_fn
        model.fit(info.X_train, info.y_train)

    def step(self, batch) -> float:
        """The batch loss of the fitted model; no update."""
        import torch

        with torch.no_grad():
            logits = self.model(batch["x"])
            return float(self.loss_fn(logits, batch["y"], index=batch.get("index"),
                                      epoch=batch.get("epoch", 0)))


def closed_form() -> ClosedForm:
    """Fit the model in closed form once (logreg, gaussian_nb); no gradient steps; use epochs: 1."""
    return ClosedForm()


@hookimpl
def register_models(register):
    """The linear discriminative and generative classifiers."""
    register("logreg", logreg)
    register("gaussian_nb", gaussian_nb)


@hookimpl
def register_optimizers(register):
    """The closed-form training scheme."""
    register("closed_form", closed_form)
