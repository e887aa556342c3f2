"""Estimators of an energy model: exact MLE, NCE and the compositional objective.

**Compositional** (Jiang et al., ICML 2023, "Learning unnormalized statistical
models via compositional optimization").  The negative log-likelihood is

    F(theta) = E_data[E_theta(x)] + log g(theta),
    g(theta) = E_{y ~ q}[exp(-E_theta(y)) / q(y)]   (= Z(theta)),

a compositional function f(g(theta)) with f = log.  A stochastic gradient
needs grad g / g, and the mini-batch ratio grad g_hat / g_hat is biased, so
the inner value is tracked by a moving average (stochastic compositional
optimisation, SCGD / SOX style):

    u_t = (1 - gamma) u_{t-1} + gamma g_hat_t(theta_t),
    gradient = mean_batch grad E(x) + grad g_hat_t(theta_t) / u_t.

u is kept in log space (log-sum-exp), which changes nothing but overflow.
``gamma = 1`` is the plain mini-batch estimate (the biased baseline).

**NCE** (Gutmann & Hyvarinen 2010): logistic regression of data against
``noise_ratio`` noise rows per data row, with log p = -E(x) - c and c the
learned log Z (or the exact log Z with ``learn_log_z: false`` where the
model knows it).

**MLE**: mean E(x) + exact log Z; the closed form where the model has one.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field


class MLE:
    """Exact maximum likelihood: needs the model's log Z."""

    needs_normalizer = True
    noise_ratio = 0.0

    def __init__(self, closed_form: bool):
        self.closed_form = closed_form
        self._value = float("nan")

    def setup(self, model) -> list:
        return []

    def fit_closed_form(self, model, X) -> bool:
        fit = getattr(model, "fit_mle", None)
        return bool(self.closed_form and fit is not None and fit(X))

    def loss(self, model, x, noise, q):
        loss = model.energy(x).mean() + model.log_normalizer()
        self._value = float(loss.detach())
        return loss

    def value(self) -> float:
        return self._value

    def log_z(self):
        return None


class NCE:
    """Noise-contrastive estimation with a learned log Z."""

    needs_normalizer = False

    def __init__(self, noise_ratio: float, learn_log_z: bool):
        self.noise_ratio = noise_ratio
        self.learn_log_z = learn_log_z
        self.c = None
        self._value = float("nan")

    def setup(self, model) -> list:
        import torch

        if not self.learn_log_z:
            if not getattr(model, "known_normalizer", False):
                from harness import UserError

                raise UserError("nce with learn_log_z: false needs a model with a known "
                                "normaliser")
            return []
        self.c = torch.nn.Parameter(torch.zeros(()))
        return [self.c]

    def fit_closed_form(self, model, X) -> bool:
        return False

    def _log_z(self, model):
        return self.c if self.c is not None else model.log_normalizer()

    def loss(self, model, x, noise, q):
        import torch.nn.functional as F

        log_nu = math.log(self.noise_ratio)
        log_z = self._log_z(model)
        g_data = -model.energy(x) - log_z - (q.log_prob(x) + log_nu)
        g_noise = -model.energy(noise) - log_z - (q.log_prob(noise) + log_nu)
        loss = F.softplus(-g_data).mean() + self.noise_ratio * F.softplus(g_noise).mean()
        self._value = float(loss.detach())
        return loss

    def value(self) -> float:
        return self._value

    def log_z(self):
        return None if self.c is None else float(self.c.detach())


class Compositional:
    """The compositional NLL with a moving-average inner estimator of Z."""

    needs_normalizer = False

    def __init__(self, gamma: float, noise_ratio: float):
        self.gamma = gamma
        self.noise_ratio = noise_ratio
        self.log_u = None
        self._value = float("nan")

    def setup(self, model) -> list:
        self.log_u = None
        return []

    def fit_closed_form(self, model, X) -> bool:
        return False

    def loss(self, model, x, noise, q):
        import torch

        log_w = -model.energy(noise) - q.log_prob(noise)
        log_g = torch.logsumexp(log_w, 0) - math.log(len(log_w))
        g_now = log_g.detach()
        if self.log_u is None:
            self.log_u = g_now
        else:
            keep = (self.log_u + math.log1p(-self.gamma) if self.gamma < 1
                    else torch.tensor(-math.inf))
            self.log_u = torch.logaddexp(keep, g_now + math.log(self.gamma))
        e_data = model.energy(x).mean()
        # d/dtheta exp(log_g - log_u) = grad g_hat / u: the SCGD gradient of log g
        loss = e_data + torch.exp(log_g - self.log_u)
        self._value = float(e_data.detach() + self.log_u)
        return loss

    def value(self) -> float:
        return self._value

    def log_z(self):
        return None if self.log_u is None else float(self.log_u)


def mle(closed_form: bool = True) -> MLE:
    """Exact maximum likelihood (closed form where the model has one, else gradient steps)."""
    return MLE(closed_form)


def nce(noise_ratio: Annotated[float, Field(gt=0, le=1000)] = 1.0,
        learn_log_z: bool = True) -> NCE:
    """Noise-contrastive estimation: logistic loss of data vs noise, log Z learned."""
    return NCE(noise_ratio, learn_log_z)


def compositional(gamma: Annotated[float, Field(gt=0, le=1)] = 0.1,
                  noise_ratio: Annotated[float, Field(gt=0, le=1000)] = 1.0) -> Compositional:
    """Compositional NLL (Jiang et al. 2023): log Z over noise, moving-average inner estimate."""
    return Compositional(gamma, noise_ratio)
