"""``generalization_gap``: |train 0-1 loss - test 0-1 loss| (the quantity the
GDA paper bounds), and ``nll_generalization_gap``: the same for the negative
log-likelihood loss, the paper's other measure.  With augmentation the train
split includes the generated rows, so the train loss is the augmented
empirical risk, as in the paper.

The NLL of a row is the model's own ``nll(logits, labels)`` where it has one
(``bgmm_mean``: the paper's Gaussian NLL ||x - y theta||^2 / (2 sigma^2)),
else the cross-entropy -log softmax(logits)[y]."""

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


def row_nll(model, logits, labels):
    """Per-row negative log-likelihood: ``model.nll`` when the model defines
    one, else the cross-entropy of softmax(logits)."""
    import numpy as np

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if hasattr(model, "nll"):
        return np.asarray(model.nll(logits, labels), np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(1))
    return log_norm - shifted[np.arange(len(labels)), labels]


def _logits(model, x, batch_size: int = 4096):
    import numpy as np
    import torch

    model.eval()
    with torch.no_grad():
        parts = [model(x[i:i + batch_size]).double().cpu().numpy()
                 for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


@harness.metric(inputs=("model", "train_x", "train_labels", "logits", "labels"),
                greater_is_better=False)
def nll_generalization_gap():
    """|train NLL - test NLL| (the model's own NLL, else cross-entropy; Zheng et al. 2023)."""

    def gap(model, train_x, train_labels, logits, labels) -> float:
        import numpy as np

        if not len(labels) or not len(train_labels):
            return float("nan")
        train = row_nll(model, _logits(model, train_x), train_labels)
        test = row_nll(model, logits, labels)
        return float(abs(np.mean(train) - np.mean(test)))

    return gap


@hookimpl
def register_metrics(register):
    """The generalisation-gap metrics (0-1 and NLL)."""
    register("generalization_gap", generalization_gap)
    register("nll_generalization_gap", nll_generalization_gap)
