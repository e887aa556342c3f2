"""What the contrastive pre-training family registers: the ``contrastive``
task, its metrics and the ``contrastive_losses`` (issue 26).

Submodules are imported inside the hooks: importing this module (at every
``harness`` start-up) loads neither torch nor scikit-learn."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    """The contrastive pre-training task."""
    from harness_plugins.representation.task import contrastive

    register("contrastive", contrastive)


@hookimpl
def register_metrics(register):
    """Probe and k-NN accuracy; the learned temperatures' frequency correlation."""
    from harness_plugins.representation.probe import knn_accuracy, probe_accuracy
    from harness_plugins.representation.temperatures import tau_frequency_correlation

    register("probe_accuracy", probe_accuracy)
    register("knn_accuracy", knn_accuracy)
    register("tau_frequency_correlation", tau_frequency_correlation)


@hookimpl
def register_contrastive_losses(register):
    """InfoNCE (NT-Xent), SogCLR, iSogCLR and GroCo."""
    from harness_plugins.representation.groco import groco
    from harness_plugins.representation.losses import infonce, isogclr, sogclr

    register("infonce", infonce)
    register("sogclr", sogclr)
    register("isogclr", isogclr)
    register("groco", groco)
