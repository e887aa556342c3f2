"""The component kind of the data family: dataset ``transforms``, with its
contract (declared through ``register_kinds``, as a third-party family
would).  The tasks that apply transforms accept them in their dataset
entries (``harness_plugins.classification.entries``)."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_transforms(register):
    """Register dataset transforms (``imbalance``, ``label_noise`` ...).

    ``factory(**params)`` returns an object with ``stage`` (``"full"``: before
    the split; ``"train"``: train split only; ``"trainval"``: train and
    validation splits, each separately) and ``apply(X, y, rng) -> (X, y)``
    working on numpy arrays with integer-encoded labels.  An optional
    ``bind_classes(classes) -> classes`` is called first with the original
    class values (``one_vs_rest`` resolves its positive class there and
    returns the new class list).  The factory is also called once at suite
    validation: raise ``ValueError`` there for a value out of range, so the
    suite stops before any run.
    """


@hookimpl
def register_kinds(register):
    """The data family's kind: transforms."""
    register("transforms", register_transforms)
