"""The density_estimation task: estimators against closed forms, the
importance-sampled normaliser against the exact one, bad suites stopping at
``harness plan``, and a tiny run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.cli import main
from harness_plugins.density.energies import diag_gaussian, gaussian_mean
from harness_plugins.density.evaluation import (
    GaussianNoise,
    log_likelihood,
    log_z_importance,
    make_noise,
    truth_log_density,
)
from harness_plugins.density.objectives import compositional, mle, nce
from harness_plugins.density.task import train_epochs

MU, N = 1.5, 4000


def gaussian_rows(seed: int) -> np.ndarray:
    return MU + np.random.default_rng(seed).standard_normal((N, 1))


def test_mle_in_closed_form_is_the_sample_mean():
    X = gaussian_rows(0)
    model, objective = gaussian_mean(dim=1), mle()
    assert objective.fit_closed_form(model, X)
    assert model.estimate()["mean"] == pytest.approx(X.mean(0), abs=1e-6)


def test_mle_by_gradient_steps_reaches_the_sample_mean_and_the_exact_scale():
    import torch

    X = 3.0 + 0.5 * np.random.default_rng(1).standard_normal((500, 1))
    torch.manual_seed(0)
    model, objective = diag_gaussian(dim=1), mle(closed_form=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    train_epochs(model, objective, opt, None, X, {"epochs": 400, "batch_size": 500},
                 lambda e, v: None, seed=0)
    est = model.estimate()
    assert est["mean"] == pytest.approx(X.mean(0), abs=1e-2)
    assert est["std"] == pytest.approx(X.std(0), rel=1e-2)


# Tolerance: the MLE's standard error here is 1/sqrt(4000) = 0.016; NCE with
# one noise row per data row and noise equal to the data's Gaussian has twice
# the MLE's asymptotic variance (Gutmann & Hyvarinen 2012), SE ~0.022, and
# the compositional estimate converges to the MLE; 0.08 is ~3.5 such SEs
# plus the last Adam steps' jitter (measured: |error| <= 0.025 over seeds 0-4).
@pytest.mark.parametrize("objective", [lambda: nce(), lambda: compositional(gamma=0.1)],
                         ids=["nce", "compositional"])
def test_nce_and_compositional_recover_the_gaussian_mean(objective):
    import torch

    X = gaussian_rows(2)
    torch.manual_seed(2)
    model, obj = gaussian_mean(dim=1), objective()
    opt = torch.optim.Adam(list(model.parameters()) + obj.setup(model), lr=0.02)
    train_epochs(model, obj, opt, make_noise("fitted", 1.0, X), X,
                 {"epochs": 30, "batch_size": 500}, lambda e, v: None, seed=2)
    assert abs(model.estimate()["mean"][0] - MU) < 0.08
    # each objective's own log Z estimate: log sqrt(2 pi) = 0.919 for unit variance
    assert obj.log_z() == pytest.approx(0.5 * math.log(2 * math.pi), abs=0.1)


def test_importance_sampled_log_z_matches_the_exact_one_within_its_standard_error():
    import torch

    model = diag_gaussian(dim=3)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([0.5, -1.0, 2.0]))
        model.log_std.copy_(torch.tensor([0.0, -0.5, 0.3]))
    exact = float(model.log_normalizer().detach())
    proposal = GaussianNoise(np.array([0.0, -0.8, 2.2]), np.array([1.5, 1.0, 2.0]))
    log_z, se = log_z_importance(model, proposal, 20000, torch.Generator().manual_seed(0))
    assert 0 < se < 0.05
    assert abs(log_z - exact) < 3 * se
    # the same estimator through log_likelihood: an mlp-free model with its
    # exact normaliser needs no sampling at all
    out = log_likelihood(model, np.zeros((4, 3)), proposal, 100, torch.Generator())
    assert out["exact"] and out["log_z"] == pytest.approx(exact) and out["log_z_se"] == 0


@pytest.mark.parametrize("truth", [
    {"kind": "mog", "means": [[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]], "std": 0.3},
    {"kind": "rings", "radii": [1.0, 2.0], "std": 0.3},
    {"kind": "gaussian", "mean": [0.5, -0.5], "std": 0.7},
])
def test_ground_truth_densities_integrate_to_one(truth):
    grid = np.linspace(-5, 5, 800)  # no point at the rings' origin, where p ~ 1/r
    xx, yy = np.meshgrid(grid, grid)
    logp = truth_log_density(truth, np.stack([xx.ravel(), yy.ravel()], 1))
    assert np.exp(logp).sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=2e-3)


SUITE = """\
name: density_tiny
task: density_estimation
seeds: 1
datasets:
  - shifted_gaussian: {{mean: 1.0, n_samples: 400}}
model: gaussian_mean
training: {{epochs: 3, batch_size: 100, optimizer: adam, lr: 0.05}}
evaluation: {{is_samples: 2000, curve_samples: 500}}
methods:
  mle: {{objective: mle}}
  nce: {{objective: nce}}
  compositional: {{objective: compositional}}
  mlp: {{model: {{name: mlp_energy, hidden: [8]}}, objective: compositional}}
{extra}
metrics: [log_likelihood, log_likelihood_se, log_z_se, log_likelihood_gap, param_error,
          param_error_auc]
rank_by: log_likelihood
"""


@pytest.mark.parametrize("extra, key", [
    ("noise: {kind: uniform}", "noise.kind = 'uniform'"),
    ("evaluation: {is_samples: 10}", "evaluation.is_samples = 10"),
    ("domains: [a, b]", "domains = ['a', 'b']: unknown key 'domains'"),
    ("noise: {scale: -1}", "noise.scale = -1"),
])
def test_bad_inputs_and_another_tasks_keys_stop_at_plan(extra, key, tmp_path, capsys):
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE.format(extra=extra).replace("evaluation: {is_samples: 2000, "
                                                       "curve_samples: 500}\n",
                                                       "" if "evaluation" in extra else
                                                       "evaluation: {is_samples: 2000}\n"))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and key in err and err.count("\n") == 1


def test_mle_with_a_model_of_unknown_normaliser_stops_at_plan(tmp_path, capsys):
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE.format(extra="").replace(
        "mlp: {model: {name: mlp_energy, hidden: [8]}, objective: compositional}",
        "mlp: {model: mlp_energy, objective: mle}"))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "methods.mlp.objective = 'mle'" in err


def test_a_dataset_transform_stops_at_plan(tmp_path, capsys):
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE.format(extra="").replace(
        "  - shifted_gaussian: {mean: 1.0, n_samples: 400}",
        "  - {shifted_gaussian: {mean: 1.0, n_samples: 400}, imbalance: 0.1}"))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "datasets[0].imbalance = 0.1" in err


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end_with_curves_and_errors(tmp_path, tracking_uri, capsys):
    import mlflow

    suite = tmp_path / "density_tiny.yaml"
    suite.write_text(SUITE.format(extra=""))
    assert main(["run", str(suite)]) == 0, capsys.readouterr().err
    df = mlflow.search_runs(experiment_names=["density_tiny"], output_format="pandas")
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert set(df.index) == {"mle", "nce", "compositional", "mlp"}
    # MLE is the sample mean of 240 train rows of N(1, 1): within 4 SEs
    assert df.loc["mle", "metrics.test/param_error"] < 4 / math.sqrt(240)
    assert df.loc["mle", "metrics.test/log_z_se"] == 0
    # closed form: one point on the curve, so its mean is the final error
    assert df.loc["mle", "metrics.test/param_error_auc"] == df.loc["mle",
                                                                   "metrics.test/param_error"]
    assert df.loc["mle", "params.evaluation.normaliser"] == "exact"
    # the MLP energy has no parameter to compare and an importance-sampled normaliser
    mlp = df.loc["mlp"]
    assert np.isnan(mlp.get("metrics.test/param_error", np.nan))
    assert mlp["params.evaluation.normaliser"] == "importance"
    assert 0 < mlp["metrics.test/log_z_se"] < 1
    # the gap to the true density is the same quantity under both normalisers
    assert (df["metrics.test/log_likelihood_gap"] > -0.2).all()
    client = mlflow.tracking.MlflowClient()
    curve = client.get_metric_history(df.loc["nce", "run_id"], "val/log_likelihood")
    assert [m.step for m in curve] == [1, 2, 3]
    assert len(client.get_metric_history(df.loc["nce", "run_id"], "train/log_z")) == 3
