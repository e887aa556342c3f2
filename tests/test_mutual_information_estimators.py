"""The mutual-information family's distributions and estimators against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness_plugins.mutual_information.classic import binned_mi, default_bins, ksg_mi
from harness_plugins.mutual_information.distributions import (
    PairDistribution,
    gaussian_mi,
    monte_carlo_mi,
    rho_for_mi,
    student_correction,
)


def test_gaussian_formula_by_hand_and_inverse():
    # -d/2 log(1 - rho^2): d = 3, rho = 0.6 -> -1.5 log 0.64
    assert gaussian_mi([0.6] * 3) == pytest.approx(-1.5 * math.log(0.64))
    assert rho_for_mi(-1.5 * math.log(0.64), 3) == pytest.approx(0.6)
    assert gaussian_mi([0.0, 0.0]) == 0.0


def test_student_correction_by_hand():
    # nu = 1, m = n = 1 (bivariate Cauchy, rho = 0): f(1) + f(3) - 2 f(2) with
    # f(x) = lgamma(x/2) - x/2 psi(x/2); psi(1/2) = -gamma - 2 log 2, psi(1) = -gamma,
    # psi(3/2) = psi(1/2) + 2
    g = 0.5772156649015329
    psi_half, psi_one = -g - 2 * math.log(2), -g
    f1 = math.lgamma(0.5) - 0.5 * psi_half
    f2 = math.lgamma(1.0) - 1.0 * psi_one
    f3 = math.lgamma(1.5) - 1.5 * (psi_half + 2)
    assert student_correction(1.0, 1, 1) == pytest.approx(f1 + f3 - 2 * f2, abs=1e-10)
    # heavy tails vanish as dof grows
    assert student_correction(1e6, 2, 2) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("dist", [
    PairDistribution("gaussian", [0.7, 0.3]),
    PairDistribution("student", [0.6], dof=3.0),
    PairDistribution("student", [0.0, 0.0], dof=2.0),
], ids=["gaussian", "student", "student-rho0"])
def test_closed_forms_match_monte_carlo(dist):
    # the mean of log p(x,y) - log p(x) - log p(y) over 100,000 draws (densities from
    # scipy for the Student-t) lies within 4 standard errors of the formula
    mean, se = monte_carlo_mi(dist, 100_000, seed=7)
    assert abs(mean - dist.true_mi) < 4 * se + 1e-3, (mean, se, dist.true_mi)


def test_ksg_gaussian_pair_within_known_bias_at_10000():
    # rho = 0.6, I = 0.2231 nats, k = 3.  KSG's bias for a Gaussian pair at N = 10^4 is
    # under 0.005 nats (Kraskov et al. 2004, fig. 4); its spread over 20 seeds measured
    # here is sd 0.012 (mean error +0.0025): 0.04 = 3 sd + the bias bound.
    dist = PairDistribution("gaussian", [0.6])
    x, y = dist.sample(10_000, np.random.default_rng(0))
    assert ksg_mi(x, y, k=3) == pytest.approx(dist.true_mi, abs=0.04)


@pytest.mark.parametrize("transform, rhos", [
    ("cube", [0.6]), ("halfcube", [0.6]), ("asinh", [0.6]), ("wiggle", [0.6]),
    ("rotation", [0.6, 0.6]),
])
def test_invertible_map_keeps_true_mi_and_ksg_estimate(transform, rhos):
    base = PairDistribution("gaussian", rhos)
    mapped = PairDistribution("gaussian", rhos, transform=transform)
    assert mapped.true_mi == base.true_mi
    x0, y0 = base.sample(3000, np.random.default_rng(1))
    x1, y1 = mapped.sample(3000, np.random.default_rng(1))
    if transform != "rotation":  # coordinatewise and strictly increasing: the same order
        assert (np.argsort(x0[:, 0]) == np.argsort(x1[:, 0])).all()
    # KSG is only approximately invariant (the maps change distances): at n = 3000
    # its estimate moves by at most 0.021 nats here (wiggle); at higher MI it moves
    # more (two pairs at rho 0.8 under cube: 1.06 -> 0.77, a known KSG weakness)
    assert ksg_mi(x1, y1) == pytest.approx(ksg_mi(x0, y0), abs=0.03)


def test_rotation_is_orthogonal_and_fixed():
    from harness_plugins.mutual_information.distributions import apply_transform

    a = np.random.default_rng(0).standard_normal((50, 3))
    r = apply_transform("rotation", a)
    assert np.allclose(np.linalg.norm(r, axis=1), np.linalg.norm(a, axis=1))
    assert np.array_equal(r, apply_transform("rotation", a))
    assert not np.allclose(r, apply_transform("rotation", a, which=1))


def test_independent_variables_give_about_zero():
    dist = PairDistribution("gaussian", [0.0, 0.0])
    x, y = dist.sample(4000, np.random.default_rng(3))
    assert abs(ksg_mi(x, y)) < 0.03
    # 4 quantile bins per coordinate: 16 x 16 cells; plug-in bias (255 / 8000 = 0.032)
    # removed by Miller-Madow
    assert default_bins(4000, 2, 2) == 5
    assert abs(binned_mi(x, y, 4)) < 0.02
    assert binned_mi(x, y, 4, miller_madow=False) > 0.02


def test_binning_recovers_a_strong_pair():
    dist = PairDistribution("gaussian", [0.9])
    x, y = dist.sample(20_000, np.random.default_rng(4))
    # 20 x 20 quantile bins under-resolve the ridge a little: within 0.1 of 0.830
    assert binned_mi(x, y, 20) == pytest.approx(dist.true_mi, abs=0.1)


def test_infonce_is_bounded_by_log_batch_size():
    from harness_plugins.mutual_information.neural import infonce

    # true MI 4 nats >> log 8 = 2.08: the bound saturates but never exceeds log B
    dist = PairDistribution("gaussian", [rho_for_mi(4.0, 2)] * 2)
    x, y = dist.sample(400, np.random.default_rng(5))
    est = infonce(batch_size=8, steps=150, lr=5e-3, hidden=32).estimate(x, y, seed=0)
    assert est <= math.log(8) + 1e-6
    assert est > 1.0


def test_bound_values_by_hand():
    import torch

    from harness_plugins.mutual_information.neural import bound

    s = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    lse = torch.logsumexp(s, dim=1)
    assert float(bound("infonce", s)) == pytest.approx(
        float((s.diagonal() - lse).mean()) + math.log(2))
    # off-diagonal entries 0 and 1
    assert float(bound("nwj", s)) == pytest.approx(2.5 - (math.exp(-1) + math.exp(0)) / 2)
    assert float(bound("mine", s)) == pytest.approx(2.5 - math.log((1 + math.e) / 2))


def test_neural_estimators_are_seeded():
    from harness_plugins.mutual_information.neural import nwj

    dist = PairDistribution("gaussian", [0.8])
    x, y = dist.sample(300, np.random.default_rng(6))
    est = nwj(batch_size=32, steps=30)
    assert est.estimate(x, y, seed=3) == est.estimate(x, y, seed=3)


@pytest.mark.slow
def test_mist_learns_to_order_distributions_by_mi():
    # 200 steps x 16 one-dimensional distributions (about 10 s): a network that
    # collapsed to the prior (a constant, as a too-short schedule does in two
    # dimensions) would fail the ordering
    from harness_plugins.mutual_information.mist import meta_train, mist

    est = mist(steps=200, batch_size=16, max_dim=1, n_min=100, n_max=100, hidden=32,
               inducing=4, layers=1, heads=2)
    est.load(meta_train(est.cfg))
    means = []
    for mi in (0.0, 0.5, 1.0, 2.0):
        dist = PairDistribution("gaussian", [rho_for_mi(mi, 1)])
        means.append(np.mean([est.estimate(*dist.sample(100, np.random.default_rng(s)), 0)
                              for s in range(5)]))
        assert abs(means[-1] - mi) < 0.5, (mi, means)
    assert means == sorted(means) and means[-1] - means[0] > 1.0, means
    lo, hi = est.interval(*PairDistribution("gaussian", [0.0]).sample(
        100, np.random.default_rng(9)), 0.9, 0)
    assert lo <= est.estimate(*PairDistribution("gaussian", [0.0]).sample(
        100, np.random.default_rng(9)), 0) <= hi
