"""Metrics of the ``pde`` task: error against the exact solution on the fixed
test set, and the residual's spread there."""

from __future__ import annotations

import harness


@harness.metric(inputs=("u_pred", "u_true"), greater_is_better=False)
def relative_l2():
    """Relative L2 error ||u - u*|| / ||u*|| on the test set."""
    from harness_plugins.pde.task import relative_l2 as value

    return value


@harness.metric(inputs=("u_pred", "u_true"), greater_is_better=False)
def max_error():
    """Largest |u - u*| on the test set."""

    def value(u_pred, u_true) -> float:
        import numpy as np

        return float(np.max(np.abs(np.asarray(u_pred) - np.asarray(u_true))))

    return value


@harness.metric(inputs=("residual",), greater_is_better=False)
def residual_variance():
    """Variance of the PDE residual over the test set."""

    def value(residual) -> float:
        import numpy as np

        return float(np.var(np.asarray(residual, np.float64)))

    return value


@harness.metric(inputs=("residual",), greater_is_better=False)
def residual_mse():
    """Mean squared PDE residual over the test set."""

    def value(residual) -> float:
        import numpy as np

        return float(np.mean(np.asarray(residual, np.float64) ** 2))

    return value
