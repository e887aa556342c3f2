"""The component kind of the regression family: ``aggregate_losses``, the
losses a regressor is fitted with when only bag-mean responses are seen
(declared through ``register_kinds``, as a third-party family would)."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_aggregate_losses(register):
    """Register losses for learning from aggregate responses.  ``factory(**params)``
    returns an object with a float attribute ``rho`` in [0, 1] (the weight of
    the within-bag spread of the predictions: 0 is the bag-level loss, 1 the
    instance-level loss; the closed-form linear solver uses it) that is
    callable as ``loss(f, ybar) -> scalar``: ``f`` the model's predictions of
    the rows of ``m`` bags of ``k`` rows, ``(m, k)``, ``ybar`` the bags'
    released mean responses ``(m,)``; numpy arrays or torch tensors (then
    differentiable); the mean over bags, so that with ``k = 1`` it is the
    ordinary mean squared error."""


@hookimpl
def register_kinds(register):
    """The regression family's kind: aggregate_losses."""
    register("aggregate_losses", register_aggregate_losses)
