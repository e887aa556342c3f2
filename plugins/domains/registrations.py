"""What the domain generalization family registers: the ``domain_generalization``
task, its domain dataset sources, its metrics and its ``dg_methods``.

Submodules are imported inside the hooks: ``harness plugins`` and ``harness
plan`` import no torch, sklearn or pandas through this module."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    from harness_plugins.domains.task import domain_generalization

    register("domain_generalization", domain_generalization)


@hookimpl
def register_datasets(register):
    """Sources with a domain per sample: rotated, coloured digits; an image folder per domain."""
    from harness_plugins.domains import sources

    register("rotated_digits", sources.rotated_digits)
    register("colored_digits", sources.colored_digits)
    register("domain_folders", sources.domain_folders)


@hookimpl
def register_metrics(register):
    from harness_plugins.domains import metrics

    register("target_accuracy", metrics.target_accuracy)
    register("source_accuracy", metrics.source_accuracy)


@hookimpl
def register_dg_methods(register):
    from harness_plugins.domains.methods import METHODS

    for name, factory in METHODS.items():
        register(name, factory)
