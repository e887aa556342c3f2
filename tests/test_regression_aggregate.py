"""Learning from aggregate responses: the losses against hand-computed
values and the paper's identities, the Laplace mechanism, the exact linear
solver, the closed-form risk, and the regression metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness_plugins.regression import aggregate, metrics, theory
from harness_plugins.regression.aggregate import (
    aggregate_responses,
    bag_loss,
    instance_loss,
    interpolating_loss,
    laplace_scale,
    make_bags,
    solve_linear,
)


def test_bag_size_one_losses_are_the_ordinary_squared_error():
    rng = np.random.default_rng(0)
    y, f = rng.normal(size=7), rng.normal(size=7)
    ordinary = float(((y - f) ** 2).mean())
    bags = make_bags(7, 1, seed=3)
    ybar = aggregate_responses(y, bags)
    F = f[bags]
    for value in (bag_loss(F, ybar), instance_loss(F, ybar), interpolating_loss(F, ybar, 0.4)):
        assert value == pytest.approx(ordinary, rel=1e-12)


def test_losses_on_a_hand_computed_bag():
    # one bag of 3: ybar = 2, f = (1, 2, 6): fbar = 3
    F, ybar = np.array([[1.0, 2.0, 6.0]]), np.array([2.0])
    assert bag_loss(F, ybar) == pytest.approx(1.0)                 # (2 - 3)^2
    assert instance_loss(F, ybar) == pytest.approx((1 + 0 + 16) / 3)
    # (2 - 3)^2 + rho/3 * ((1-3)^2 + (2-3)^2 + (6-3)^2) = 1 + rho * 14/3
    assert interpolating_loss(F, ybar, 0.5) == pytest.approx(1 + 0.5 * 14 / 3)


def test_decomposition_identity_on_a_random_bag():
    rng = np.random.default_rng(1)
    k = 9
    y, f = rng.normal(size=k), rng.normal(size=k)
    ybar, fbar = y.mean(), f.mean()
    lhs = ((ybar - f) ** 2).sum()
    rhs = k * (ybar - fbar) ** 2 + ((f - fbar) ** 2).sum()
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_interpolation_ends_are_the_bag_and_instance_losses(lib):
    rng = np.random.default_rng(2)
    F, ybar = rng.normal(size=(5, 4)), rng.normal(size=5)
    if lib == "torch":
        F, ybar = torch.as_tensor(F), torch.as_tensor(ybar)
    assert float(interpolating_loss(F, ybar, 0.0)) == pytest.approx(float(bag_loss(F, ybar)))
    assert float(interpolating_loss(F, ybar, 1.0)) == pytest.approx(
        float(instance_loss(F, ybar)))
    assert aggregate.interpolating(rho=0.0).rho == aggregate.bag().rho == 0.0
    assert float(aggregate.interpolating(rho=1.0)(F, ybar)) == pytest.approx(
        float(aggregate.instance()(F, ybar)))


def test_bags_are_a_seeded_partition():
    bags = make_bags(23, 5, seed=7)
    assert bags.shape == (4, 5)
    assert len(set(bags.ravel().tolist())) == 20
    assert np.array_equal(bags, make_bags(23, 5, seed=7))
    assert not np.array_equal(bags, make_bags(23, 5, seed=8))
    for bad in (0, 24):
        with pytest.raises(ValueError, match="bag size"):
            make_bags(23, bad, seed=0)


def test_laplace_scale_is_sensitivity_over_k_epsilon():
    assert laplace_scale(4.0, 8, 0.5) == pytest.approx(1.0)
    # responses clipped to +-C: sensitivity 2C; the released means' noise has
    # that scale (mean absolute deviation of a Laplace = its scale)
    y, k, eps, clip = np.zeros(200_000), 4, 2.0, 1.5
    bags = make_bags(len(y), k, seed=0)
    noisy = aggregate_responses(y, bags, epsilon=eps, clip=clip, seed=1)
    assert np.abs(noisy).mean() == pytest.approx(2 * clip / (k * eps), rel=0.02)
    # clipping: responses beyond the bound count as the bound
    y = np.array([10.0, -10.0, 0.5, 0.5])
    assert aggregate_responses(y, np.array([[0, 2], [1, 3]]), epsilon=1e9, clip=1.0,
                               seed=0) == pytest.approx([0.75, -0.25], abs=1e-6)


def test_ols_recovers_theta_on_linear_gaussian_data():
    from harness_plugins.regression.sources import linear_gaussian

    raw = linear_gaussian(n=20_000, d=5, noise=0.5, signal=2.0, random_state=4)
    X, y = raw.X.to_numpy(), raw.y
    ones = make_bags(len(y), 1, 0)
    w, b = solve_linear(X, aggregate_responses(y, ones), ones, rho=1.0)
    assert np.abs(w - np.asarray(raw.meta["theta"])).max() < 0.02
    assert abs(b) < 0.02
    # the bag-level fit of 4-bags is unbiased too (the instance-level one is not:
    # it shrinks towards 0)
    bags = make_bags(len(y), 4, 0)
    w_bag, _ = solve_linear(X, aggregate_responses(y, bags), bags, rho=0.0)
    w_ins, _ = solve_linear(X, aggregate_responses(y, bags), bags, rho=1.0)
    theta = np.asarray(raw.meta["theta"])
    assert np.linalg.norm(w_bag - theta) < 0.1
    assert np.linalg.norm(w_ins) < 0.6 * np.linalg.norm(theta)


def test_exact_solver_minimises_the_interpolating_loss():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    bags = make_bags(60, 5, 1)
    ybar = aggregate_responses(y, bags)
    w, b = solve_linear(X, ybar, bags, rho=0.3)

    def loss(w, b):
        return interpolating_loss((X @ w + b)[bags], ybar, 0.3)

    best = loss(w, b)
    for _ in range(20):
        assert loss(w + 1e-3 * rng.normal(size=3), b + 1e-3 * rng.normal()) >= best


def test_bag_level_risk_matches_simulation():
    # bag-level OLS on linear-Gaussian data with the Laplace mechanism
    n, d, k, sigma, eps, clip = 2000, 20, 4, 1.0, 2.0, 6.0
    rng = np.random.default_rng(6)
    theta = rng.normal(size=d)
    theta /= np.linalg.norm(theta)
    risks = []
    for rep in range(40):
        X = rng.normal(size=(n, d))
        y = X @ theta + sigma * rng.normal(size=n)
        bags = make_bags(n, k, rep)
        ybar = aggregate_responses(y, bags, epsilon=eps, clip=clip, seed=rep)
        w, b = solve_linear(X, ybar, bags, rho=0.0)
        risks.append(sigma ** 2 + ((w - theta) ** 2).sum() + b ** 2)
    predicted = theory.bag_level_risk(n, d, k, sigma ** 2, 1.0, eps, clip)
    # s^2 = 1 + 8 * 36 / (4 * 4) = 19; gamma = 20/500: 1 + 19 * 0.04/0.96 = 1.7917
    assert predicted == pytest.approx(1 + 19 * 0.04 / 0.96)
    # the intercept adds one parameter and clipping (6 sd) almost never binds
    assert np.mean(risks) == pytest.approx(predicted, rel=0.06)


@pytest.mark.parametrize("k,rho", [(4, 0.5), (4, 1.0), (8, 0.25)])
def test_interpolating_risk_matches_simulation(k, rho):
    n, d, sigma = 800, 80, 1.0
    rng = np.random.default_rng(k)
    theta = rng.normal(size=d)
    theta /= np.linalg.norm(theta)
    risks = []
    for rep in range(10):
        X = rng.normal(size=(n, d))
        y = X @ theta + sigma * rng.normal(size=n)
        bags = make_bags(n, k, rep)
        w, b = solve_linear(X, aggregate_responses(y, bags), bags, rho=rho)
        risks.append(sigma ** 2 + ((w - theta) ** 2).sum() + b ** 2)
    predicted = theory.interpolating_risk(n, d, k, rho, sigma ** 2, 1.0)
    assert np.mean(risks) == pytest.approx(predicted, rel=0.04)


def test_interpolating_risk_limits():
    # rho = 0 is the bag-level formula; psi -> 0: instance-level bias (1 - 1/k)^2 |theta|^2
    assert theory.interpolating_risk(1000, 10, 4, 0.0, 1.0, 1.0) == pytest.approx(
        theory.bag_level_risk(1000, 10, 4, 1.0, 1.0))
    assert theory.interpolating_risk(10**9, 1, 4, 1.0, 1.0, 2.0) == pytest.approx(
        1 + 2 * 0.75 ** 2, rel=1e-6)
    # the full Gram matrix at rho = 1, k = 1: OLS, 1 + psi/(1 - psi)
    assert theory.interpolating_risk(1000, 100, 1, 1.0, 1.0, 1.0) == pytest.approx(1 + 1 / 9)
    assert math.isnan(theory.interpolating_risk(100, 200, 2, 0.5, 1.0, 1.0))


def test_overparameterised_bag_level_risk_and_optimal_bag_size():
    # gamma = 2: sigma^2 + |theta|^2 / 2 + s^2
    assert theory.bag_level_risk(100, 100, 2, 1.0, 4.0) == pytest.approx(1 + 2 + 1)
    assert math.isinf(theory.bag_level_risk(100, 50, 2, 1.0, 1.0))
    k, risk = theory.optimal_bag_size(1000, 10, 1.0, 1.0, epsilon=0.5, clip=3.0,
                                      sizes=[1, 2, 5, 10, 20])
    assert k == 1 and risk == pytest.approx(theory.bag_level_risk(1000, 10, 1, 1.0, 1.0,
                                                                  0.5, 3.0))


def test_r2_mse_mae_against_sklearn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(7)
    y, f = rng.normal(size=50) * 3 + 1, rng.normal(size=50)
    assert metrics.r2()(y, f) == pytest.approx(r2_score(y, f), rel=1e-12)
    assert metrics.mse()(y, f) == pytest.approx(mean_squared_error(y, f), rel=1e-12)
    assert metrics.mae()(y, f) == pytest.approx(mean_absolute_error(y, f), rel=1e-12)
    assert metrics.r2()(y, y) == 1.0
    assert metrics.r2.greater_is_better and not metrics.mse.greater_is_better


def test_figure_table_and_optimal_bag_size(tmp_path):
    import pandas as pd

    from harness_plugins.regression import figure

    runs = pd.DataFrame({
        "dataset": ["d"] * 6, "method": ["bag"] * 4 + ["instance"] * 2,
        "epsilon": ["1"] * 6, "bag_size": [1, 1, 4, 4, 1, 4],
        "mse": [3.0, 5.0, 2.0, 2.0, 4.0, 6.0],
        "population_risk": [float("nan")] * 6, "asymptotic_risk": [3.5, 3.5, 2.5, 2.5, 3.5, 5.0],
        "theory_optimal_k": [4.0] * 4 + [1.0] * 2})
    table = figure.summarise(runs)
    row = table[(table["method"] == "bag") & (table["bag_size"] == 1)].iloc[0]
    assert row["mse"] == 4.0 and row["seeds"] == 2
    assert row["mse_se"] == pytest.approx(np.std([3.0, 5.0], ddof=1) / np.sqrt(2))
    best = figure.optimal(table).set_index("method")
    assert best.loc["bag", "bag_size"] == 4 and best.loc["instance", "bag_size"] == 1
    assert best.loc["bag", "theory_optimal_k"] == 4.0
    assert figure.draw(table, tmp_path / "f.png").stat().st_size > 0
