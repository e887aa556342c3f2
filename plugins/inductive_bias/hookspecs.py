"""The component kind of the inductive-bias family: ``hypothesis_classes``
(declared through ``register_kinds``, as a third-party family would).

The ``inductive_bias`` task draws hypotheses from a class, trains each with
the suite's fixed budget and measures the bits needed to specify one that
generalises (``harness_plugins.inductive_bias.task``).
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_hypothesis_classes(register):
    """Register hypothesis classes: distributions over trained predictors.

    ``factory(in_shape, n_outputs, **params)`` (both ``Annotated[..,
    harness.FromData]``: the shape of one input row, e.g. ``(64,)`` or
    ``(1, 8, 8)``, and the number of classes) returns an object with:

    - ``sample(job) -> numpy.ndarray (n,)``: the test losses of ``job.n``
      hypotheses drawn independently from the class, each trained on the
      budget.  ``job`` is a ``harness_plugins.inductive_bias.hypotheses.Job``:
      ``X_train``/``Y_train`` (float32 tensors; ``Y`` one-hot), ``X_test``/
      ``Y_test``, ``n``, ``training`` (the suite's ``training`` section:
      ``epochs``, ``batch_size``, ``lr``), ``generator`` (a seeded
      ``torch.Generator``: the only source of randomness), ``truth`` (the
      source's ``meta["truth"]`` or None) and ``log(values, step)``.  The
      loss of a hypothesis is the mean squared error of its outputs against
      the one-hot targets over test rows and outputs (the paper's).
    - ``check(in_shape, truth)`` (optional): raise ``harness.UserError`` when
      the class cannot serve the data (a cnn on rows that are not images, the
      teacher on data without one).
    """


@hookimpl
def register_kinds(register):
    """The inductive-bias family's kind: hypothesis_classes."""
    register("hypothesis_classes", register_hypothesis_classes)
