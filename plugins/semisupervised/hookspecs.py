"""The component kind of the semi-supervised learning with out-of-domain
unlabeled data family: ``ssl_methods``, with its contract (declared through
``register_kinds``, as a third-party family would; issue 26)."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_ssl_methods(register):
    """Register semi-supervised methods for the ``semi_supervised`` task.
    ``factory(**params)`` returns an object with ``uses_unlabeled`` (bool;
    ``False``: the task passes no unlabeled rows) and ``fit(X, s, U, loss,
    training) -> harness_plugins.semisupervised.objectives.LinearModel``:
    ``X`` ``(m, d)`` labeled rows with labels ``s`` in ``{-1, +1}``, ``U``
    ``(n, d)`` unlabeled rows (numpy float64; ``n`` may be 0), ``loss`` an
    ``objectives.Loss`` (the per-sample surrogate, its adversarial budget)
    and ``training`` an ``objectives.Training`` (full-batch Adam; pass it to
    ``objectives.minimize``, which logs and raises ``harness.Diverged``).
    A method must be deterministic given its inputs (methods are compared
    paired on the same rows)."""


@hookimpl
def register_kinds(register):
    """The semi-supervised family's kind: ssl_methods."""
    register("ssl_methods", register_ssl_methods)
