"""The GDA simulation's learner (theta = mean(y x)), its NLL generalisation
gap and the paper's count of m_S (issue 23, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import UserError
from harness_plugins.augmentation.gda import bgmm_mean, train_size
from harness_plugins.augmentation.metrics import generalization_gap, nll_generalization_gap
from harness_plugins.augmentation.models import logreg


def _logits(model, X):
    with torch.no_grad():
        return model(torch.as_tensor(X)).double().numpy()


def test_bgmm_mean_is_the_papers_estimator_without_intercept():
    # y in {0, 1} -> {-1, +1}: theta = mean((-1)(1, 2), (+1)(3, 0), (+1)(1, 4)) = (1, 2/3)
    X = np.array([[1.0, 2.0], [3.0, 0.0], [1.0, 4.0]], np.float32)
    y = np.array([0, 1, 1])
    model = bgmm_mean(in_shape=(2,), n_classes=2, sigma=0.5).fit(X, y)
    assert np.allclose(model.theta.numpy(), [1.0, 2.0 / 3.0], atol=1e-6)
    # no intercept: a point on theta's orthogonal line through 0 is a tie,
    # and the prediction is sign(theta . x)
    x = np.array([[2.0, -3.0], [-1.0, 1.0], [0.5, 0.1]], np.float32)
    assert (_logits(model, x).argmax(1) == (x @ np.array([1.0, 2 / 3]) > 0)).all()
    logit = _logits(model, np.array([[2.0, 1.0]], np.float32))[0]
    theta = np.array([1.0, 2 / 3])
    want = [-np.sum((np.array([2.0, 1.0]) + theta) ** 2) / (2 * 0.25),
            -np.sum((np.array([2.0, 1.0]) - theta) ** 2) / (2 * 0.25)]
    assert np.allclose(logit, want, atol=1e-5)


def test_bgmm_mean_refuses_gradient_training_and_multiclass():
    with pytest.raises(UserError, match="closed_form"):
        bgmm_mean(in_shape=(2,), n_classes=2)(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="binary learner"):
        bgmm_mean(in_shape=(2,), n_classes=3)


def _papers_gaps(theta, X_tr, y_tr, X_te, y_te, sigma):
    """The reference code's 0-1 and NLL losses, written out independently."""

    def zero_one(X, y):
        pred = (X @ theta >= 0).astype(int)
        return np.mean(pred != y)

    def nll(X, y):
        s = (2 * y - 1)[:, None]
        return np.sum((X - s * theta) ** 2) / (2 * sigma ** 2 * len(y))

    return (abs(zero_one(X_tr, y_tr) - zero_one(X_te, y_te)),
            abs(nll(X_tr, y_tr) - nll(X_te, y_te)))


def test_gaps_of_bgmm_mean_are_the_papers():
    rng = np.random.default_rng(0)
    d, sigma = 10, 0.6

    def draw(n):
        y = np.repeat([0, 1], n // 2)
        X = (2 * y - 1)[:, None] / np.sqrt(d) + sigma * rng.standard_normal((n, d))
        return X.astype(np.float32), y

    X_tr, y_tr = draw(20)
    X_te, y_te = draw(4000)
    model = bgmm_mean(in_shape=(d,), n_classes=2, sigma=sigma).fit(X_tr, y_tr)
    theta = ((2 * y_tr - 1)[:, None] * X_tr.astype(np.float64)).mean(0)
    want_01, want_nll = _papers_gaps(theta, X_tr.astype(np.float64), y_tr,
                                     X_te.astype(np.float64), y_te, sigma)
    logits_te = _logits(model, X_te)
    probs = lambda z: np.exp(z - z.max(1, keepdims=True))  # noqa: E731  (argmax only)
    got_01 = generalization_gap()(y_tr, probs(_logits(model, X_tr)), y_te, probs(logits_te))
    got_nll = nll_generalization_gap()(model, torch.as_tensor(X_tr), y_tr, logits_te, y_te)
    assert got_01 == pytest.approx(want_01)
    assert got_nll == pytest.approx(want_nll, rel=1e-5)
    assert want_nll > 0.05  # 20 training rows in 10 dimensions: a real gap


def test_nll_gap_of_a_model_without_nll_is_the_cross_entropy_gap():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    X = (rng.standard_normal((300, 2)) + 1.5 * y[:, None]).astype(np.float32)
    model = logreg(in_shape=(2,), n_classes=2).fit(X[:50], y[:50])
    lt, le = _logits(model, X[:50]), _logits(model, X[50:])
    ce = lambda z, t: float(torch.nn.functional.cross_entropy(  # noqa: E731
        torch.as_tensor(z), torch.as_tensor(t)))
    got = nll_generalization_gap()(model, torch.as_tensor(X[:50]), y[:50], le, y[50:])
    assert got == pytest.approx(abs(ce(lt, y[:50]) - ce(le, y[50:])), rel=1e-6)


def test_train_size_counts_all_classes_together():
    y = np.r_[np.zeros(50, int), np.ones(30, int)]
    X = np.arange(80, dtype=float)[:, None]
    Xk, yk = train_size(10).apply(X, y, np.random.default_rng(0))
    assert np.bincount(yk).tolist() == [5, 5]
    _, yk = train_size(7).apply(X, y, np.random.default_rng(0))
    assert np.bincount(yk).tolist() == [4, 3]


def test_bgmm_reaches_the_learner_as_drawn_not_standardised():
    """Standardising on m_S = 10 rows would move the origin (an intercept for a
    learner that has none) and rescale the NLL; the simulation uses raw x."""
    from harness.plugins import get_registry
    from harness_plugins.augmentation.gda import bgmm as bgmm_source
    from harness_plugins.classification.prepare import prepare_dataset

    entry = {"source": "bgmm", "params": {"d": 4, "n_samples": 2000},
             "transforms": [["train_size", {"n": 10}]],
             "split": {"val": 0.1, "test": 0.5}, "label": "bgmm/m10"}
    data = prepare_dataset(entry, 3, registry=get_registry())
    raw = bgmm_source(d=4, n_samples=2000)
    rows = {tuple(np.round(r, 5)) for r in raw.X.astype(np.float32)}
    assert len(data.y_train) == 10 and np.bincount(data.y_train).tolist() == [5, 5]
    assert all(tuple(np.round(r, 5)) in rows for r in data.X_train)
    assert all(tuple(np.round(r, 5)) in rows for r in data.X_test[:50])
