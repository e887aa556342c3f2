"""The component kind of the domain generalization family: ``dg_methods``,
with its contract (declared through ``register_kinds``, as a third-party
family would)."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_dg_methods(register):
    """Register domain generalization methods (ERM, DRM, CORAL, ...).

    ``factory(**params)`` returns a method with
    ``build(model, n_domains: int) -> torch.nn.Module``: ``model`` is the
    suite's classifier (a ``models`` component, freshly initialised from the
    run's ``init`` seed; its last module is the linear head), ``n_domains``
    the number of source domains.  The returned network has

    - ``forward(x) -> logits (N, C)``: the prediction at test time (and on the
      source-domain validation split every epoch), one row per sample, never
      depending on which other samples share the batch;
    - ``loss(x, y, domains) -> scalar tensor``: the training objective on one
      domain-balanced batch (``domains``: LongTensor of source-domain indices
      ``0..n_domains-1``, every domain with the same number of rows);
    - optional ``diagnostics() -> dict[str, float]``: values averaged since the
      last call (a penalty), logged per epoch under ``train/``.

    Parameters that ``build`` draws randomly (extra heads) are drawn after the
    model's, so a method that adds none trains exactly the model ERM trains.
    """


@hookimpl
def register_kinds(register):
    """The domain generalization family's kind: dg_methods."""
    register("dg_methods", register_dg_methods)
