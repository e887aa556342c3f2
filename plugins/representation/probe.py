"""Judging a frozen encoder: a linear probe and k-NN on its features, and the
metrics the ``contrastive`` task feeds from them.

- Linear probe: scikit-learn's multinomial logistic regression (L2, ``C``,
  lbfgs) on the train split's features, standardised with the train
  statistics; its class probabilities on the evaluated split are
  ``probe_probs`` (and ``probs``, so the classification metrics apply).
- k-NN (Wu et al., CVPR 2018, the protocol of the SimCLR/GroCo papers'
  k-NN numbers): cosine similarity to the train split's features, the ``k``
  nearest vote for their labels with weights ``exp(s / T)``; the vote shares
  are ``knn_probs``.  ``T = None`` gives plain majority votes.
"""

from __future__ import annotations

import harness


def encode(model, X, batch_size: int, as_inputs=None):
    """Features of the rows of ``X`` (tensor on the model's device) in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            x = X[i:i + batch_size]
            out.append(model(as_inputs(x) if as_inputs is not None else x).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def linear_probe(train_f, train_y, eval_f, n_classes: int, C: float = 1.0,
                 max_iter: int = 1000, seed: int = 0):
    """Class probabilities ``(N, n_classes)`` of a logistic regression fit on
    frozen train features (numpy in, numpy out)."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean = train_f.mean(0, keepdims=True)
    std = train_f.std(0, keepdims=True)
    std[~(std > 0)] = 1.0
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # a probe that stops at max_iter is still the probe the suite asked for
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((train_f - mean) / std, train_y)
    probs = np.zeros((len(eval_f), n_classes))
    probs[:, clf.classes_] = clf.predict_proba((eval_f - mean) / std)
    return probs


def knn_probs(train_f, train_y, eval_f, n_classes: int, k: int = 20,
              temperature: float | None = 0.07, chunk: int = 1024):
    """Vote shares ``(N, n_classes)`` of the ``k`` cosine-nearest train
    features (weights ``exp(s / temperature)``, or 1 each when None); torch
    in, numpy out."""
    import torch
    import torch.nn.functional as F

    bank = F.normalize(train_f.float(), dim=1)
    labels = torch.as_tensor(train_y, device=bank.device).long()
    k = min(k, len(bank))
    out = []
    for i in range(0, len(eval_f), chunk):
        q = F.normalize(eval_f[i:i + chunk].float(), dim=1)
        sims, idx = (q @ bank.T).topk(k, dim=1)
        weights = torch.exp(sims / temperature) if temperature else torch.ones_like(sims)
        votes = torch.zeros(len(q), n_classes, device=bank.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[idx], weights)
        out.append(votes / votes.sum(1, keepdim=True))
    return torch.cat(out).cpu().numpy() if out else torch.zeros(0, n_classes).numpy()


def _accuracy():
    """A new accuracy callable: the registry writes each metric's declared
    inputs onto the callable its factory returns, so two metrics must never
    return the same function object."""
    import numpy as np

    def accuracy(labels, probs) -> float:
        return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())

    return accuracy


@harness.metric(inputs=("labels", "probe_probs"), greater_is_better=True)
def probe_accuracy():
    """Accuracy of a linear probe (logistic regression) on the frozen encoder's features."""
    return _accuracy()


@harness.metric(inputs=("labels", "knn_probs"), greater_is_better=True)
def knn_accuracy():
    """Accuracy of weighted k-NN (cosine) on the frozen encoder's features."""
    return _accuracy()
