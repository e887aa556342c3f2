"""The component kind of the contrastive pre-training family: ``contrastive_losses``,
with its contract (declared through ``register_kinds``, as a third-party family
would).

The ``contrastive`` task feeds metrics ``labels`` (the evaluated split's
labels), ``probs`` and ``probe_probs`` (the linear probe's class
probabilities on frozen features) and ``knn_probs`` (the k-NN vote shares);
see ``harness_plugins.representation.task``.
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_contrastive_losses(register):
    """Register contrastive losses for the ``contrastive`` task.

    ``factory(n_samples: Annotated[int, FromData], **params)`` returns a
    ``torch.nn.Module`` (its buffers follow ``.to(device)``) called as
    ``loss(z1, z2, index) -> scalar tensor``: ``z1``, ``z2`` are the
    projections ``(B, d)`` of two augmented views of the same ``B`` training
    samples (not normalised; row ``i`` of both is sample ``i``), ``index``
    the samples' ids ``(B,)`` in ``0..n_samples-1`` (fixed for the run), so
    a loss may keep per-sample state (SogCLR's moving-average normalisers,
    iSogCLR's temperatures).  Optional members: ``min_batch`` (int: the
    smallest batch the loss accepts; suite validation checks
    ``training.batch_size`` against it), ``diagnostics() -> dict[str,
    float]`` (logged per epoch under ``train/``) and ``temperatures() ->
    tensor (n_samples,)`` (per-sample temperatures the task reports as a
    distribution, by class)."""


@hookimpl
def register_kinds(register):
    """The contrastive pre-training family's kind: contrastive_losses."""
    register("contrastive_losses", register_contrastive_losses)
