"""Linear classifiers and the objectives the semi-supervised methods minimise.

A model is ``f(x) = theta . x + b`` (``b = 0`` without an intercept) with
labels ``s = +-1``.  The per-sample loss of a margin ``t = s f(x)`` is either

- ``ramp`` (the default): ``clamp(1 - gamma t, 0, 1)``.  For the 0-1 loss and
  the transport cost ``c(z, x) = |z - x|_2`` the paper's robust loss
  ``phi_gamma(x, s) = sup_z 1{s f(z) <= 0} - gamma c(z, x)`` is
  ``clamp(1 - gamma t / |theta|, 0, 1)`` (moving ``x`` across the boundary
  costs its distance ``t / |theta|``); the authors' simulation code uses the
  raw margin ``t``, i.e. ``phi`` at ``gamma |theta|``, and so does this
  module;
- ``logistic``: ``log(1 + exp(-t))``, the usual convex surrogate.

The robust (adversarial) loss replaces ``t`` by ``t - eps |theta|``, the
margin left after an l2 attack of budget ``eps`` on a linear model.

``minimize`` runs full-batch Adam (float64, zero initialisation, so a run is
a deterministic function of its data) with L2 weight decay on ``theta``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Loss:
    """The per-sample surrogate: ``name`` (ramp | logistic), its slope ``gamma``
    and the adversarial budget ``epsilon`` (0 = the non-robust loss)."""

    name: str = "ramp"
    gamma: float = 2.0
    epsilon: float = 0.0

    def margins(self, theta, bias, X, s):
        """``s f(x) - eps |theta|`` per row."""
        import torch

        t = s * (X @ theta + bias)
        if self.epsilon:
            t = t - self.epsilon * torch.linalg.vector_norm(theta)
        return t

    def of_margins(self, t):
        """The loss of each margin."""
        import torch

        if self.name == "ramp":
            return torch.clamp(1.0 - self.gamma * t, 0.0, 1.0)
        return torch.nn.functional.softplus(-t)

    def __call__(self, theta, bias, X, s):
        """Per-row loss of labels ``s`` (+-1)."""
        return self.of_margins(self.margins(theta, bias, X, s))


@dataclass
class Training:
    """Full-batch Adam: ``steps``, ``lr``, ``weight_decay`` (on theta), whether
    the model has an intercept, and a ``log(step, values)`` callback."""

    steps: int = 200
    lr: float = 0.05
    weight_decay: float = 1e-3
    intercept: bool = True
    log_every: int = 50
    log: Callable[[int, dict], None] | None = None


@dataclass
class LinearModel:
    """A fitted ``f(x) = theta . x + b`` (numpy) and its training history."""

    theta: Any
    bias: float
    history: list = field(default_factory=list)

    def decision(self, X):
        """``f(x)`` per row (numpy)."""
        import numpy as np

        return np.asarray(X, np.float64) @ self.theta + self.bias

    def probs(self, X):
        """``(N, 2)`` probabilities ``[P(y=0), P(y=1)] = [1 - sigma(f), sigma(f)]``."""
        import numpy as np

        p1 = 0.5 * (1.0 + np.tanh(0.5 * self.decision(X)))
        return np.stack([1.0 - p1, p1], axis=1)

    def predict_sign(self, X):
        """``+1`` where ``f > 0``, else ``-1``."""
        import numpy as np

        return np.where(self.decision(X) > 0, 1.0, -1.0)


def minimize(objective: Callable, d: int, training: Training, phase: str = "") -> LinearModel:
    """Minimise ``objective(theta, bias, step) -> scalar tensor`` from zero by
    full-batch Adam; ``training.log`` gets ``{"loss": ..}`` every
    ``log_every`` steps and at the end.  A NaN/inf loss raises ``harness.Diverged``."""
    import torch

    from harness import Diverged

    theta = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=training.intercept)
    groups = [{"params": [theta], "weight_decay": training.weight_decay}]
    if training.intercept:
        groups.append({"params": [bias], "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=training.lr)
    history = []
    for step in range(training.steps):
        opt.zero_grad()
        loss = objective(theta, bias, step)
        value = loss.item()
        if not math.isfinite(value):
            raise Diverged(f"{phase or 'training'} loss became {value} at step {step}")
        if loss.requires_grad:
            loss.backward()
            opt.step()
        last = step + 1 == training.steps
        if (step + 1) % training.log_every == 0 or last:
            history.append((step + 1, value))
            if training.log is not None:
                training.log(step + 1, {"loss": value})
    return LinearModel(theta.detach().numpy().copy(), float(bias.detach()), history)


def as_tensors(*arrays):
    """float64 tensors of numpy arrays."""
    import numpy as np
    import torch

    return [torch.as_tensor(np.asarray(a, np.float64)) for a in arrays]
