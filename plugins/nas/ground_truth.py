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


#: Seed of the cells a sampled ground truth trains: one draw for every run
#: seed, so the tables of different seeds score the same cells.
SAMPLE_SEED = 201


def sampled_cells(size: int, sample: int | None) -> list[int] | None:
    """The indices (sorted) of ``sample`` cells of a space of ``size``, drawn
    once with ``SAMPLE_SEED``; None (every cell) without a sample or when it
    covers the space."""
    import numpy as np

    if sample is None or sample >= size:
        return None
    return sorted(np.random.default_rng(SAMPLE_SEED).choice(size, sample, replace=False)
                  .tolist())


def build_table(space, train: Callable[[tuple[str, ...]], tuple[float, float]],
                log: Callable[[str], None] | None = None,
                cells: list[int] | None = None) -> dict:
    """Train every genotype, or the ``cells`` (indices) of a sampled ground
    truth: ``train(genotype) -> (val_accuracy, test_accuracy)``; arrays in
    :meth:`SearchSpace.all_genotypes` order, NaN for cells not trained."""
    import numpy as np

    val = np.full(space.size, np.nan)
    test = np.full(space.size, np.nan)
    todo = set(range(space.size)) if cells is None else set(cells)
    for i, genotype in enumerate(space.all_genotypes()):
        if i not in todo:
            continue
        val[i], test[i] = train(genotype)
        if log:
            log(f"ground truth {i + 1}/{space.size}: {space.format(genotype)} "
                f"val {val[i]:.4f} test {test[i]:.4f}")
    return {"val_accuracy": val, "test_accuracy": test}


def val_test_agreement(table: dict) -> float:
    """Kendall's tau between the trained cells' validation and test accuracies:
    how far the table ranks cells by more than its test set's noise (near 0:
    regret differences between selectors are noise)."""
    import numpy as np
    from scipy.stats import kendalltau

    val, test = np.asarray(table["val_accuracy"]), np.asarray(table["test_accuracy"])
    keep = ~(np.isnan(val) | np.isnan(test))
    if keep.sum() < 3:
        return float("nan")
    return float(kendalltau(val[keep], test[keep]).statistic)


def regret_and_rank(accuracies, index: int, own: float | None = None) -> tuple[float, int]:
    """(best accuracy - accuracy of ``index``, rank of ``index``: 1 + the
    number of architectures strictly better).  In a sampled table (NaN for
    cells not trained) both are among the trained cells, with ``own`` (the
    selected cell's own test accuracy) where its entry is NaN."""
    import numpy as np

    acc = np.array(accuracies, dtype=np.float64)
    if np.isnan(acc[index]) and own is not None:
        acc[index] = own
    mine = acc[index]
    return float(np.nanmax(acc) - mine), int(1 + np.sum(acc > mine))
