"""What the semi-supervised learning with out-of-domain unlabeled data family
registers: the ``semi_supervised`` task, the ``gaussian_mixture`` source, the
``error`` and ``robust_error`` metrics and the ``ssl_methods`` (issue 26).

Submodules are imported inside the hooks and import numpy/torch inside their
functions, so ``harness plugins`` / ``harness plan`` stay light."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import hookimpl, metric


@metric(inputs=("error",), greater_is_better=False)
def error():
    """Test error of the classifier: exact on the Gaussian mixture, else on the held-out rows."""
    return lambda value: float(value)


@metric(inputs=("robust_error",), greater_is_better=False)
def robust_error(epsilon: Annotated[float, Field(ge=0)] = 0.1):
    """Test error under an l2 attack of budget epsilon on the linear model (exact on mixtures)."""
    return lambda at: float(at(epsilon))


@hookimpl
def register_tasks(register):
    """The semi_supervised task."""
    from harness_plugins.semisupervised.task import semi_supervised

    register("semi_supervised", semi_supervised)


@hookimpl
def register_datasets(register):
    """Saberi et al.'s two-Gaussian mixture."""
    from harness_plugins.semisupervised.gaussian import gaussian_mixture

    register("gaussian_mixture", gaussian_mixture)


@hookimpl
def register_metrics(register):
    """Exact (or held-out) error and robust error."""
    register("error", error)
    register("robust_error", robust_error)


@hookimpl
def register_ssl_methods(register):
    """ERM, self-training and RSS."""
    from harness_plugins.semisupervised.methods import erm, rss, self_training

    register("erm", erm)
    register("self_training", self_training)
    register("rss", rss)
