"""What the adversarial robustness family registers: ``attacks`` (FGSM, PGD),
adversarial training schemes as ``optimizers`` (``pgd_at``, ``trades``,
``dro_at``) for the classification task, and robust-evaluation ``metrics``.

The modules named here import torch only inside functions, so ``harness
plugins`` and ``harness plan`` stay torch-free.
"""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_attacks(register):
    """FGSM and PGD (L-inf and L2)."""
    from harness_plugins.robustness import attacks

    register("fgsm", attacks.fgsm)
    register("pgd", attacks.pgd)


@hookimpl
def register_optimizers(register):
    """The adversarial training schemes."""
    from harness_plugins.robustness import training

    register("pgd_at", training.pgd_at)
    register("trades", training.trades)
    register("dro_at", training.dro_at)


@hookimpl
def register_metrics(register):
    """Robust and worst-class accuracy."""
    from harness_plugins.robustness import metrics

    register("robust_accuracy", metrics.robust_accuracy)
    register("worst_class_robust_accuracy", metrics.worst_class_robust_accuracy)
    register("worst_class_accuracy", metrics.worst_class_accuracy)
