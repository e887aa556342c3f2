"""The linear classifiers, the closed-form scheme, the generalisation-gap
metric and the GDA simulation's data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import harness
from harness import ConfigError, UserError
from harness_plugins.augmentation.gda import bgmm, train_per_class
from harness_plugins.augmentation.metrics import generalization_gap
from harness_plugins.augmentation.models import closed_form, gaussian_nb, logreg


def blobs(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 2)) + np.array([[0, 0], [3, 0], [0, 3]])[y]
    return X.astype(np.float32), y


@pytest.mark.parametrize("variance, pooled", [
    # means 1 and 12; residuals -1, 1, -2, 2, 0: squared sum 10 over N = 5 rows,
    # K = 2 classes.  Maximum likelihood (the reference code's ddof 0) is the default.
    ({}, 10 / 5), ({"variance": "ml"}, 10 / 5), ({"variance": "unbiased"}, 10 / 3)])
def test_gaussian_nb_model_is_the_hand_computed_posterior(variance, pooled):
    X = np.array([[0.0], [2.0], [10.0], [14.0], [12.0]], np.float32)
    y = np.array([0, 0, 1, 1, 1])
    model = gaussian_nb(in_shape=(1,), n_classes=2, var_smoothing=0.0, **variance).fit(X, y)
    assert float(model.var[0]) == pytest.approx(pooled)
    x = 5.0
    log_post = [math.log(2 / 5) - (x - 1) ** 2 / (2 * pooled),
                math.log(3 / 5) - (x - 12) ** 2 / (2 * pooled)]
    expected = np.exp(log_post) / np.exp(log_post).sum()
    probs = torch.softmax(model(torch.tensor([[x]])).double(), 1).numpy()[0]
    assert np.allclose(probs, expected)


def test_gaussian_nb_variance_option_is_checked():
    with pytest.raises(ValueError, match="variance must be 'ml' or 'unbiased'"):
        gaussian_nb(in_shape=(1,), n_classes=2, variance="pooled")


def test_gaussian_nb_refuses_gradient_training():
    model = gaussian_nb(in_shape=(2,), n_classes=2)
    with pytest.raises(UserError, match="closed_form"):
        model(torch.zeros(1, 2))


def test_logreg_fit_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    X, y = blobs()
    model = logreg(in_shape=(2,), n_classes=3, C=0.5).fit(X, y)
    ref = LogisticRegression(C=0.5, max_iter=1000).fit(X, y).predict_proba(X)
    probs = torch.softmax(model(torch.as_tensor(X)).double(), 1).detach().numpy()
    assert np.allclose(probs, ref, atol=1e-5)
    # binary: sklearn's single weight vector becomes logits (0, w.x + b)
    Xb, yb = X[y < 2], y[y < 2]
    model = logreg(in_shape=(2,), n_classes=2).fit(Xb, yb)
    ref = LogisticRegression(max_iter=1000).fit(Xb, yb).predict_proba(Xb)
    probs = torch.softmax(model(torch.as_tensor(Xb)).double(), 1).detach().numpy()
    assert np.allclose(probs, ref, atol=1e-5)


def test_closed_form_scheme_fits_once_and_never_steps():
    X, y = blobs()
    model = gaussian_nb(in_shape=(2,), n_classes=3)
    scheme = closed_form()
    loss = torch.nn.functional.cross_entropy

    def loss_fn(logits, targets, **extras):
        return loss(logits, targets)

    info = SimpleNamespace(X_train=torch.as_tensor(X), y_train=torch.as_tensor(y))
    scheme.setup(model, loss_fn, info)
    before = model.means.clone()
    value = scheme.step({"x": info.X_train, "y": info.y_train, "epoch": 0})
    assert torch.equal(before, model.means)
    assert value == pytest.approx(float(loss(model(info.X_train), info.y_train)))
    with pytest.raises(UserError, match="needs a model with fit"):
        closed_form().setup(torch.nn.Linear(2, 3), loss_fn, info)


def test_generalization_gap_equals_hand_computation():
    gap = generalization_gap()
    train_labels = np.array([0, 1, 1, 0])
    train_probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])  # 1 error of 4
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.4, 0.6], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1], [0.55, 0.45]])  # 3 of 5
    assert gap(train_labels, train_probs, labels, probs) == pytest.approx(abs(0.25 - 0.6))
    assert generalization_gap.inputs == ("train_labels", "train_probs", "labels", "probs")
    assert generalization_gap.greater_is_better is False


def test_bgmm_has_the_paper_parameters():
    raw = bgmm(d=4, n_samples=40000, random_state=0)
    X, y = raw.X, raw.y
    assert np.allclose(X[y == 1].mean(0), 0.5, atol=0.02)   # 1 / sqrt(4)
    assert np.allclose(X[y == 0].mean(0), -0.5, atol=0.02)
    assert np.allclose(X[y == 1].std(0), 0.6, atol=0.01)
    assert raw.meta["bayes_error"] == pytest.approx(0.5 * math.erfc(1 / 0.6 / math.sqrt(2)))
    assert np.array_equal(bgmm(d=4, n_samples=10, random_state=3).X,
                          bgmm(d=4, n_samples=10, random_state=3).X)


def test_train_per_class_keeps_n_rows_per_class():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    X = np.arange(20)[:, None]
    t = train_per_class(5)
    assert t.stage == "train"
    Xk, yk = t.apply(X, y, np.random.default_rng(0))
    assert np.bincount(yk).tolist() == [5, 3, 5]
    assert np.array_equal(y[Xk[:, 0]], yk)
    with pytest.raises(ConfigError, match=r"n = 0: .*expects int \(>= 1\)"):
        harness.create("transforms", {"name": "train_per_class", "n": 0})
