"""Classification and calibration metrics.

Each factory is declared with ``@harness.metric``: the prediction metrics
consume ``labels, probs`` and return ``metric(y_true, y_prob) -> float``
(scikit-learn's argument order; ``y_prob`` is ``(N, C)``, rows are class
probabilities; ``y_true`` integer labels); ``sharpness`` consumes the model
and the train split.  The
calibration-error helpers (:func:`calibration_bins`, :func:`ece_value`) are
public so the calibration task and the reliability diagram share one binning.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl, metric

#: What the prediction metrics consume: integer labels and (N, C) probabilities.
LABELS_PROBS = ("labels", "probs")

_EPS = 1e-12


#: Confidence bins of a calibration error.
Bins = Annotated[int, Field(ge=1)]


def _arrays(y_true, y_prob):
    import numpy as np

    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 1:  # a binary score vector: probability of class 1
        p = np.stack([1 - p, p], axis=1)
    if len(p) != len(y):
        raise ValueError(f"y_true has {len(y)} samples but y_prob has {len(p)}")
    return y, p


def _metric(fn, greater_is_better: bool):
    def metric(y_true, y_prob) -> float:
        return float(fn(*_arrays(y_true, y_prob)))

    metric.greater_is_better = greater_is_better
    metric.__name__ = fn.__name__
    metric.__doc__ = fn.__doc__
    return metric


def calibration_bins(y_true, y_prob, bins: int = 15, adaptive: bool = False):
    """Bin samples on max-probability confidence; returns ``(count, acc, conf)`` per bin.

    Equal-width bins are ``(lo, hi]`` over [0, 1] (Guo et al. 2017); adaptive bins hold
    equal numbers of samples sorted by confidence (Nixon et al. 2019)."""
    import numpy as np

    y, p = _arrays(y_true, y_prob)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    if adaptive:
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, bins) if len(g)]
    else:
        which = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], conf, side="left")
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    count = np.array([len(g) for g in groups], dtype=float)
    acc = np.array([correct[g].mean() if len(g) else 0.0 for g in groups])
    mean_conf = np.array([conf[g].mean() if len(g) else 0.0 for g in groups])
    return count, acc, mean_conf


def ece_value(y_true, y_prob, bins: int = 15, adaptive: bool = False) -> float:
    """Expected calibration error: ``sum_b |b|/n |acc_b - conf_b|``."""
    import numpy as np

    count, acc, conf = calibration_bins(y_true, y_prob, bins, adaptive)
    return float(np.sum(count / count.sum() * np.abs(acc - conf)))


@metric(LABELS_PROBS, greater_is_better=True)
def accuracy():
    """Accuracy of the argmax prediction."""

    def accuracy(y, p):
        # not sklearn's accuracy_score: its input validation costs more than
        # the metric, and accuracy is computed every epoch of every run
        return (p.argmax(1) == y).mean()

    return _metric(accuracy, True)


@metric(LABELS_PROBS, greater_is_better=True)
def balanced_accuracy():
    """Balanced accuracy, the mean per-class recall (Brodersen et al., ICPR 2010)."""
    from sklearn.metrics import balanced_accuracy_score

    def balanced_accuracy(y, p):
        import warnings

        with warnings.catch_warnings():  # predicted classes absent from y_true
            warnings.simplefilter("ignore")
            return balanced_accuracy_score(y, p.argmax(1))

    return _metric(balanced_accuracy, True)


@metric(LABELS_PROBS, greater_is_better=True)
def f1(average: Literal["auto", "binary", "macro"] = "auto"):
    """F1 score: auto = binary (positive class 1) for two classes, else macro average."""
    from sklearn.metrics import f1_score

    def f1(y, p):
        mode = average if average != "auto" else ("binary" if p.shape[1] == 2 else "macro")
        if mode == "binary" and p.shape[1] != 2:
            raise ValueError(f"f1 average='binary' needs 2 classes, got {p.shape[1]}")
        return f1_score(y, p.argmax(1), average=mode, pos_label=1, zero_division=0)

    return _metric(f1, True)


@metric(LABELS_PROBS, greater_is_better=True)
def f1_macro():
    """Macro-averaged F1 score (unweighted mean of per-class F1)."""
    return f1("macro")


@metric(LABELS_PROBS, greater_is_better=True)
def g_mean():
    """G-mean, geometric mean of the per-class recalls (Kubat & Matwin, ICML 1997).

    Only classes present in ``y_true`` count (recall is undefined for the others)."""
    import numpy as np
    from sklearn.metrics import recall_score

    def g_mean(y, p):
        labels = np.unique(y)
        recalls = recall_score(y, p.argmax(1), labels=labels, average=None, zero_division=0)
        if (recalls == 0).any():
            return 0.0
        # exp(mean log r): the product of many recalls underflows (200 classes at
        # recall 0.02 multiply to 0.0 in float64; the geometric mean is 0.02)
        return float(np.exp(np.mean(np.log(recalls))))

    return _metric(g_mean, True)


@metric(LABELS_PROBS, greater_is_better=True)
def auroc():
    """AUROC: class-1 score for 2 classes, one-vs-rest macro average otherwise (Fawcett, PRL 2006).

    Multi-class: the unweighted mean over classes of class k's score against
    all others, not Hand & Till's one-vs-one M.  Classes absent from
    ``y_true`` are skipped; nan when only one class is present."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    def auroc(y, p):
        present = np.unique(y)
        if len(present) < 2:
            return float("nan")
        if p.shape[1] == 2:
            return roc_auc_score(y, p[:, 1])
        # one-vs-rest by hand: sklearn's ovr refuses y_true missing some class
        return np.mean([roc_auc_score(y == c, p[:, c]) for c in present])

    return _metric(auroc, True)


@metric(LABELS_PROBS, greater_is_better=False)
def log_loss():
    """Log loss, the mean negative log-likelihood of the true class (labels = range(C))."""
    import numpy as np
    from sklearn.metrics import log_loss as sk_log_loss

    def log_loss(y, p):
        p = np.clip(p, _EPS, 1.0)
        return sk_log_loss(y, p / p.sum(1, keepdims=True), labels=np.arange(p.shape[1]))

    return _metric(log_loss, False)


@metric(LABELS_PROBS, greater_is_better=False)
def nll():
    """Negative log-likelihood -mean log p[y] of the probabilities as given (no renormalising).

    Probabilities are clipped at 1e-12; ``log_loss`` renormalises rows like scikit-learn."""
    import numpy as np

    def nll(y, p):
        return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, None)))

    return _metric(nll, False)


@metric(LABELS_PROBS, greater_is_better=False)
def brier():
    """Brier score (Brier 1950): mean over samples of ``sum_k (p_k - onehot_k)^2``."""
    import numpy as np

    def brier(y, p):
        onehot = np.eye(p.shape[1])[y]
        return np.mean(np.sum((p - onehot) ** 2, axis=1))

    return _metric(brier, False)


@metric(LABELS_PROBS, greater_is_better=False)
def ece(bins: Bins = 15):
    """Expected calibration error with equal-width confidence bins (Guo et al., ICML 2017)."""

    def ece(y, p):
        return ece_value(y, p, bins)

    return _metric(ece, False)


@metric(LABELS_PROBS, greater_is_better=False)
def adaptive_ece(bins: Bins = 15):
    """Adaptive ECE: top-label confidence in equal-mass bins (after Nixon et al., CVPRW 2019).

    Only the predicted class's probability is binned; Nixon et al.'s adaptive
    calibration error (ACE) bins every class's probability."""

    def adaptive_ece(y, p):
        return ece_value(y, p, bins, adaptive=True)

    return _metric(adaptive_ece, False)


@metric(LABELS_PROBS, greater_is_better=False)
def mce(bins: Bins = 15):
    """Maximum calibration error over non-empty equal-width bins (Naeini et al., AAAI 2015)."""
    import numpy as np

    def mce(y, p):
        count, acc, conf = calibration_bins(y, p, bins)
        return float(np.max(np.abs(acc - conf)[count > 0]))

    return _metric(mce, False)


@metric(LABELS_PROBS, greater_is_better=False)
def classwise_ece(bins: Bins = 15, adaptive: bool = True):
    """Class-wise calibration error: every class's probability binned, mean over classes (Nixon et al., CVPRW 2019).

    ``adaptive=True`` (equal-mass bins per class) is Nixon et al.'s adaptive
    calibration error ACE, ``adaptive=False`` (equal-width bins) their static
    calibration error SCE; per class ``sum_b |b|/n |freq_b - conf_b|``."""  # noqa: E501
    import numpy as np

    def classwise_ece(y, p):
        inner = np.linspace(0, 1, bins + 1)[1:-1]
        errors = []
        for k in range(p.shape[1]):
            pk, hit = p[:, k], (y == k).astype(float)
            if adaptive:
                groups = np.array_split(np.argsort(pk, kind="stable"), bins)
            else:
                which = np.searchsorted(inner, pk, side="left")
                groups = [np.flatnonzero(which == b) for b in range(bins)]
            errors.append(sum(len(g) * abs(hit[g].mean() - pk[g].mean())
                              for g in groups if len(g)) / len(y))
        return float(np.mean(errors))

    return _metric(classwise_ece, False)


def _norm(tensors):
    import torch

    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


class Sharpness:
    """Top Hessian eigenvalue of the mean loss by power iteration on Hessian-vector
    products (double backprop), on the first ``n_samples`` samples, model in eval mode."""

    greater_is_better = False
    needs_model = True

    def __init__(self, iters: int, n_samples: int, batch_size: int = 256):
        self.iters, self.n_samples, self.batch_size = iters, n_samples, batch_size

    def __call__(self, model, loss_fn, X, y, epoch: int = 0) -> float:
        """Sharpness of ``model`` at the first ``n_samples`` of the train split ``X, y``.

        ``loss_fn(logits, y, index=, epoch=)`` is the run's loss (``index`` = positions in
        the train split); pass None for plain cross-entropy, and do so for losses that
        update per-sample state when called."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        device = params[0].device
        X = torch.as_tensor(X[:self.n_samples], device=device)
        if X.is_floating_point():  # numpy float64 data with a float32 model
            X = X.to(params[0].dtype)
        y = torch.as_tensor(y[:self.n_samples], device=device).long()
        if loss_fn is None:
            from harness_plugins.classification.losses import two_class_logits

            # a single-logit model's f as logits [0, f]: cross-entropy is then its BCE
            loss_fn = lambda logits, t, **_: torch.nn.functional.cross_entropy(  # noqa: E731
                two_class_logits(logits), t)
        gen = torch.Generator().manual_seed(0)
        v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
        was = model.training
        model.eval()
        try:
            eig = float("nan")
            for _ in range(self.iters):
                vnorm = _norm(v)
                v = [vi / vnorm for vi in v]
                hv = self._hvp(model, loss_fn, params, X, y, v, epoch)
                eig = float(sum((a * b).sum() for a, b in zip(v, hv)))
                v = hv
                if float(_norm(hv)) == 0:
                    return 0.0
        finally:
            model.train(was)
        return eig

    def _hvp(self, model, loss_fn, params, X, y, v, epoch):
        import torch

        n = len(X)
        out = [torch.zeros_like(p) for p in params]
        # chunks keep double-backprop memory bounded; weights make the sum the full-set mean
        for i in range(0, n, self.batch_size):
            xb, yb = X[i:i + self.batch_size], y[i:i + self.batch_size]
            index = torch.arange(i, i + len(xb), device=X.device)
            loss = loss_fn(model(xb), yb, index=index, epoch=epoch) * (len(xb) / n)
            g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            dot = sum((gi * vi).sum() for gi, vi in zip(g, v) if gi is not None)
            hv = torch.autograd.grad(dot, params, allow_unused=True)
            for o, h in zip(out, hv):
                if h is not None:
                    o.add_(h)
        return out


@metric(("model", "train_x", "train_y"), greater_is_better=False)
def sharpness(iters: Annotated[int, Field(ge=1)] = 20,
              n_samples: Annotated[int, Field(ge=1)] = 512):
    """Sharpness: top Hessian eigenvalue of the train loss, power iteration (Yao et al. 2020).

    Consumes the trained model and the train split (inputs ``model, train_x,
    train_y``), with plain cross-entropy so it is comparable across methods
    and stateful losses are not stepped again; lower is flatter.  Power
    iteration on Hessian-vector products as in PyHessian."""
    power = Sharpness(iters, n_samples)

    def sharpness(model, X, y) -> float:
        return power(model, None, X, y)

    return sharpness


@hookimpl
def register_metrics(register):
    """Register the classification and calibration metrics."""
    for factory in (accuracy, balanced_accuracy, f1, f1_macro, g_mean, auroc, log_loss, nll,
                    brier, ece, adaptive_ece, mce, classwise_ece, sharpness):
        register(factory.__name__, factory)
