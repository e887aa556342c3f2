"""``generalization_gap``: |train 0-1 loss - test 0-1 loss| (the quantity the
GDA paper bounds).  With augmentation the train split includes the
generated rows, so the train loss is the augmented empirical risk, as in
the paper."""

from __future__ import annotations

import harness
from harness import hookimpl


def zero_one_loss(labels, probs) -> float:
    """Fraction of rows whose arg-max class is not the label."""
    import numpy as np

    labels = np.asarray(labels)
    if not len(labels):
        return float("nan")
    return float(np.mean(np.asarray(probs).argmax(1) != labels))


@harness.metric(inputs=("train_labels", "train_probs", "labels", "probs"),
                greater_is_better=False)
def generalization_gap():
    """|train 0-1 loss - test 0-1 loss| (generalisation gap; Zheng et al. 2023)."""

    def gap(train_labels, train_probs, labels, probs) -> float:
        return abs(zero_one_loss(train_labels, train_probs) - zero_one_loss(labels, probs))

    return gap


@hookimpl
def register_metrics(register):
    """The generalisation-gap metric."""
    register("generalization_gap", generalization_gap)
