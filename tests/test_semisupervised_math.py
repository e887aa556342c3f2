"""The semi-supervised family's mathematics: exact errors of a linear classifier
on the two-Gaussian mixture, total variation of the shifts, and the methods'
special cases (RSS without unlabeled data is ERM; self-training with correct
pseudo-labels is supervised training on the union)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness_plugins.semisupervised.data import resampling_tv, shift_weights
from harness_plugins.semisupervised.gaussian import (
    GaussianMixture,
    linear_error,
    mixture_tv,
    phi_cdf,
    shift_for_tv,
)
from harness_plugins.semisupervised.methods import Erm, Rss, SelfTraining
from harness_plugins.semisupervised.objectives import Loss, Training


def test_exact_error_of_the_mean_direction_is_the_bayes_error():
    p = GaussianMixture(d=4, mean_norm=1.5, sigma=0.5, condition=1.0)
    # theta = mu, b = 0 on the isotropic mixture: Phi(-|mu| / sigma), by hand Phi(-3)
    assert linear_error(p.mu, 0.0, p.mu, p.variances) == pytest.approx(0.0013498980316301)
    assert p.bayes_error() == pytest.approx(0.0013498980316301)
    # the opposite direction is wrong everywhere but the same tails
    assert linear_error(-p.mu, 0.0, p.mu, p.variances) == pytest.approx(1 - 0.0013498980316301)


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_exact_error_matches_a_monte_carlo_estimate(epsilon):
    p = GaussianMixture(d=6, mean_norm=1.0, sigma=0.8, condition=10.0)
    rng = np.random.default_rng(3)
    theta, bias = rng.standard_normal(6), 0.25
    X, s = p.sample(400_000, rng)
    wrong = s * (X @ theta + bias) <= epsilon * np.linalg.norm(theta)
    exact = linear_error(theta, bias, p.mu, p.variances, epsilon)
    se = math.sqrt(exact * (1 - exact) / len(s))
    assert 0.05 < exact < 0.95
    assert abs(wrong.mean() - exact) < 4 * se


def test_tv_of_a_single_gaussian_pair_is_its_closed_form():
    variances = np.array([0.25, 1.0, 4.0])
    delta = np.array([0.4, -0.5, 1.0])
    zero = np.zeros(3)
    # both "mixtures" are one Gaussian: TV = 2 Phi(|Sigma^-1/2 delta| / 2) - 1
    closed = 2 * phi_cdf(math.sqrt((delta ** 2 / variances).sum()) / 2) - 1
    got = mixture_tv(np.stack([zero, zero]), np.stack([delta, delta]), variances)
    assert got == pytest.approx(closed, abs=2e-5)


def test_tv_of_an_orthogonally_translated_mixture_is_the_translation_s():
    # the mixture +-mu moved by t orthogonal to mu differs from itself only
    # along t: TV = 2 Phi(|t| / (2 sigma)) - 1
    p = GaussianMixture(d=8, mean_norm=1.0, sigma=0.6, condition=1.0)
    t = 0.45 * p.direction
    got = mixture_tv(np.stack([p.mu, -p.mu]), np.stack([p.mu + t, -p.mu + t]), p.variances)
    assert got == pytest.approx(2 * phi_cdf(0.45 / 1.2) - 1, abs=2e-5)


@pytest.mark.parametrize("condition", [1.0, 10.0])
def test_the_shift_reaches_the_requested_tv(condition):
    p = GaussianMixture(d=10, mean_norm=1.0, sigma=0.6, condition=condition)
    delta, tv = shift_for_tv(p, 0.2)
    assert tv == pytest.approx(0.2, abs=1e-6) and delta > 0
    mu1 = p.shifted_mean(delta)
    assert abs(mu1 @ p.mu - p.mu @ p.mu) < 1e-12  # the move is orthogonal to mu
    assert shift_for_tv(p, 0.0) == (0.0, 0.0)


def test_resampling_tv_by_hand_and_the_solved_covariate_shift():
    assert resampling_tv(np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.5)
    z = np.random.default_rng(0).standard_normal(400)
    w, beta, tv = shift_weights(z, 0.3)
    assert tv == pytest.approx(0.3, abs=1e-8) and beta > 0
    assert w.sum() == pytest.approx(1.0)
    # higher projections are drawn more often
    assert w[np.argmax(z)] == w.max()


def _data(seed=0, m=12, n=200, mean_norm=1.0, sigma=0.6):
    p = GaussianMixture(d=5, mean_norm=mean_norm, sigma=sigma, condition=1.0)
    rng = np.random.default_rng(seed)
    X, s = p.sample(m, rng)
    U, us = p.sample(n, rng)
    return p, X, s, U, us


@pytest.mark.parametrize("loss", [Loss("ramp", 2.0, 0.0), Loss("logistic", 1.0, 0.0),
                                  Loss("ramp", 2.0, 0.2)])
def test_rss_without_unlabeled_data_is_erm(loss):
    _, X, s, U, _ = _data()
    training = Training(steps=60, lr=0.05, weight_decay=1e-3, intercept=True)
    erm = Erm().fit(X, s, U, loss, training)
    rss = Rss(lam=1.0, gamma_unlabeled=0.5).fit(X, s, U[:0], loss, training)
    assert np.array_equal(rss.theta, erm.theta) and rss.bias == erm.bias
    # and with unlabeled rows it is something else
    other = Rss(lam=1.0, gamma_unlabeled=0.5).fit(X, s, U, loss, training)
    assert not np.allclose(other.theta, erm.theta)


def test_self_training_with_all_correct_pseudo_labels_is_training_on_the_union():
    # well-separated clusters: the labeled fit labels every unlabeled row right
    p, X, s, U, us = _data(mean_norm=4.0, sigma=0.5)
    loss = Loss("logistic", 1.0, 0.0)
    training = Training(steps=80, lr=0.05, weight_decay=1e-3, intercept=True)
    first = Erm().fit(X, s, U, loss, training)
    assert np.array_equal(first.predict_sign(U), us)
    st = SelfTraining(rounds=1, unlabeled_weight=1.0, threshold=0.0).fit(X, s, U, loss, training)
    union = Erm().fit(np.concatenate([X, U]), np.concatenate([s, us]), U[:0], loss, training)
    np.testing.assert_allclose(st.theta, union.theta, rtol=1e-9, atol=1e-12)
    assert st.bias == pytest.approx(union.bias, abs=1e-12)


def test_self_training_drops_rows_below_the_confidence_threshold():
    _, X, s, U, _ = _data()
    model = Erm().fit(X, s, U, Loss(), Training(steps=40))
    kept, labels = SelfTraining(1, 1.0, 0.4).pseudo_labels(model, U)
    p1 = model.probs(U)[:, 1]
    assert len(kept) == int((np.abs(p1 - 0.5) >= 0.4).sum()) < len(U)
    assert set(np.unique(labels)) <= {-1.0, 1.0}
