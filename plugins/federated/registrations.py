"""What the federated learning family registers: the ``federated`` task, its
metrics, the strategies FedAvg, FedProx, SCAFFOLD and FedLEx, and the
partition check before a suite runs (submodules import torch lazily)."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    from harness_plugins.federated.task import FederatedTask

    def federated():
        """Federated learning: clients on a partition, a strategy's rounds, global test metrics."""
        return FederatedTask()

    register("federated", federated)


@hookimpl
def register_metrics(register):
    from harness_plugins.federated import metrics

    for fn in (metrics.rounds_to_target, metrics.client_accuracy_mean,
               metrics.client_accuracy_worst, metrics.bytes_total, metrics.bytes_per_round):
        register(fn.__name__, fn)


@hookimpl
def register_federated_strategies(register):
    from harness_plugins.federated import strategies

    register("fedavg", strategies.fedavg)
    register("fedprox", strategies.fedprox)
    register("scaffold", strategies.scaffold)
    register("fedlex", strategies.fedlex)


@hookimpl
def before_suite(suite, runs):
    """Stop a federated suite whose partition leaves a client without data,
    naming the suite file and key, before any run starts."""
    if not any(spec.task == "federated" for spec in runs):
        return
    from harness.plugins import get_registry
    from harness_plugins.federated.task import check_partitions

    check_partitions(suite, runs, get_registry())
