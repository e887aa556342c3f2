"""Metrics ``top_k_accuracy`` and ``prototype_margin``.

``@harness.metric`` declares what a metric consumes and which way is better.
The callable a factory returns is called positionally with the task's values
of ``inputs``, in that order, and returns a float, logged as
``test/<name>`` (``test/top_k_accuracy:k-3`` when the suite sets ``k: 3``).
Every task offering ``labels`` and ``probs`` (classification, calibration,
the example ``prototypes`` task) can use ``top_k_accuracy``;
``prototype_margin`` needs ``distances``, which only ``prototypes`` offers,
so a classification suite naming it is rejected at validation.
"""

from __future__ import annotations

from harness import hookimpl, metric


@metric(inputs=("labels", "probs"), greater_is_better=True)
def top_k_accuracy(k: int = 2):
    """Top-k accuracy: the true class is among the k most probable (ties: lower class first)."""
    if k < 1:
        raise ValueError(f"top_k_accuracy k must be >= 1, got {k!r}")

    def score(labels, probs):
        import numpy as np

        # labels: int64 (N,); probs: float64 (N, C), rows summing to 1
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return float((top == labels[:, None]).any(axis=1).mean())

    return score


@metric(inputs=("labels", "distances"), greater_is_better=True)
def prototype_margin():
    """Mean distance margin: nearest wrong prototype minus the true class's prototype."""

    def margin(labels, distances):
        import numpy as np

        rows = np.arange(len(labels))
        wrong = np.array(distances, dtype=np.float64)
        true = wrong[rows, labels].copy()
        wrong[rows, labels] = np.inf
        return float((wrong.min(axis=1) - true).mean())

    return margin


@hookimpl
def register_metrics(register):
    register("top_k_accuracy", top_k_accuracy)
    register("prototype_margin", prototype_margin)
