"""The component kind of the calibration family: post-hoc ``calibrators``,
with its contract (declared through ``register_kinds``, as a third-party
family would)."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_calibrators(register):
    """Register post-hoc calibrators.  ``factory(**params)`` returns an object
    with ``fit(logits, y) -> self`` and ``predict_proba(logits) -> (N, C)
    numpy array``; logits and y may be numpy arrays or tensors."""


@hookimpl
def register_kinds(register):
    """The calibration family's kind: calibrators."""
    register("calibrators", register_calibrators)
