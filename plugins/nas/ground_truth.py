"""Ground truth for small spaces: every architecture trained once.

For a space small enough (``tiny``; ``skip_trap`` when asked), the task trains
every genotype with the evaluate phase's budget and seeds and keeps the table
of validation and test accuracies. The table is shared between the runs of a
suite through ``harness.shared.shared_arrays`` (an MLflow artifact tagged with
a key of space, dataset, budget, seeds and code), so it is computed once per
(space, dataset, budget, seed), not once per run. Because the evaluate phase
trains the selected genotype with the same budget and seeds, its test accuracy
equals the table's entry (on a deterministic device)."""

from __future__ import annotations

from collections.abc import Callable

#: Spaces larger than this are never enumerated.
MAX_GROUND_TRUTH = 1024
#: ``ground_truth: auto`` enumerates spaces up to this size; larger ones
#: (up to ``MAX_GROUND_TRUTH``) only when a suite asks (``true``).
AUTO_GROUND_TRUTH = 256


def build_table(space, train: Callable[[tuple[str, ...]], tuple[float, float]],
                log: Callable[[str], None] | None = None) -> dict:
    """Train every genotype: ``train(genotype) -> (val_accuracy,
    test_accuracy)``; arrays in :meth:`SearchSpace.all_genotypes` order."""
    import numpy as np

    val, test = [], []
    for i, genotype in enumerate(space.all_genotypes()):
        v, t = train(genotype)
        val.append(v)
        test.append(t)
        if log:
            log(f"ground truth {i + 1}/{space.size}: {space.format(genotype)} "
                f"val {v:.4f} test {t:.4f}")
    return {"val_accuracy": np.asarray(val, dtype=np.float64),
            "test_accuracy": np.asarray(test, dtype=np.float64)}


def regret_and_rank(accuracies, index: int) -> tuple[float, int]:
    """(best accuracy - accuracy of ``index``, rank of ``index``: 1 + the
    number of architectures strictly better)."""
    import numpy as np

    acc = np.asarray(accuracies, dtype=np.float64)
    mine = acc[index]
    return float(acc.max() - mine), int(1 + np.sum(acc > mine))
