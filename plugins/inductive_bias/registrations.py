"""What the inductive-bias measurement family registers: the ``inductive_bias``
task, the ``teacher_task`` source, its metrics and its ``hypothesis_classes``.
Submodules are imported inside the hooks so that ``harness plugins`` /
``harness plan`` import no torch, scipy or numpy here."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    """The inductive_bias task."""
    from harness_plugins.inductive_bias.task import inductive_bias

    register("inductive_bias", inductive_bias)


@hookimpl
def register_datasets(register):
    """Classification by a random linear teacher, of any input dimension."""
    from harness_plugins.inductive_bias.sources import teacher_task

    register("teacher_task", teacher_task)


@hookimpl
def register_metrics(register):
    """Bits of inductive bias, their standard error, the empirical bits, the mean loss."""
    from harness_plugins.inductive_bias import metrics

    for name in ("inductive_bias_bits", "inductive_bias_bits_se", "empirical_bits",
                 "hypothesis_loss"):
        register(name, getattr(metrics, name))


@hookimpl
def register_hypothesis_classes(register):
    """Linear, MLP, CNN (trained on the budget), random features, the teacher."""
    from harness_plugins.inductive_bias import hypotheses

    for name in ("linear", "mlp", "cnn", "random_features", "teacher"):
        register(name, getattr(hypotheses, name))
