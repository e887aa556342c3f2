"""The inductive_bias task: bits against closed forms, a class of only
well-generalising hypotheses at 0 bits, bad suites stopping at ``harness
plan``, and a tiny run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.cli import main
from harness_plugins.inductive_bias.estimate import (
    bits,
    bootstrap_se,
    moment_start,
    sankaran_log_cdf,
)


def test_a_class_of_one_well_generalising_hypothesis_needs_zero_bits():
    import torch

    from harness_plugins.inductive_bias.hypotheses import Job, teacher
    from harness_plugins.inductive_bias.sources import teacher_task
    from harness_plugins.inductive_bias.task import split_budget

    data = split_budget(teacher_task(d=5, n_samples=500), 0.3, 50, 0, "t")
    job = Job(data.X_train, data.Y_train, data.X_test, data.Y_test, 20, {},
              torch.Generator(), data.truth)
    losses = teacher(data.in_shape, 2).sample(job)
    assert (losses == 0).all()  # the teacher labels the data: no error at all
    for fit in ("ncx2", "normal", "empirical"):
        assert bits(losses, 0.01, fit)[0] == 0.0


@pytest.mark.parametrize("fit", ["ncx2", "normal", "empirical"])
def test_hypotheses_all_below_the_target_need_zero_bits(fit):
    losses = 0.02 + 0.01 * np.random.default_rng(0).random(200)  # all in [0.02, 0.03]
    assert bits(losses, 0.5, fit)[0] == pytest.approx(0.0, abs=1e-6)


def test_gaussian_losses_give_the_closed_form_minus_log2_phi():
    losses = np.random.default_rng(1).normal(0.3, 0.05, 500)
    mu, sd, target = losses.mean(), losses.std(ddof=1), 0.2
    phi = 0.5 * math.erfc(-(target - mu) / sd / math.sqrt(2))  # hand-computed Phi
    value, params = bits(losses, target, "normal")
    assert value == pytest.approx(-math.log2(phi), rel=1e-9)
    assert params == pytest.approx({"mean": mu, "sd": sd})


def test_the_paper_fit_recovers_the_bits_of_a_scaled_noncentral_chi2():
    from scipy import stats

    df, nc, scale, target = 6.0, 4.0, 0.02, 0.04
    losses = scale * np.random.default_rng(2).noncentral_chisquare(df, nc, 1000)
    true_bits = -stats.ncx2.logcdf(target, df, nc, scale=scale) / math.log(2)
    value, params = bits(losses, target)
    se = bootstrap_se(losses, target, "ncx2", 10, seed=0)
    assert 0 < se < 1
    assert abs(value - true_bits) < 4 * se + 0.1
    # df, nc and scale trade off against each other; the fitted mean does not
    assert params["scale"] * (params["df"] + params["nc"]) == pytest.approx(0.2, rel=0.05)


def test_moment_start_matches_the_three_moments():
    df, nc, scale = 40.0, 10.0, 0.005
    mean, var = scale * (df + nc), 2 * scale ** 2 * (df + 2 * nc)
    mu3 = 8 * scale ** 3 * (df + 3 * nc)
    # a two-point law with these three moments (its counts rounded: rel 1e-3)
    k, lam, s = moment_start(_two_point(mean, var, mu3))
    assert (k, lam, s) == pytest.approx((df, nc, scale), rel=1e-3)


def _two_point(mean, var, mu3):
    """Many copies of a 2-point distribution with the given mean, variance, third moment."""
    skew = mu3 / var ** 1.5
    p = 0.5 * (1 - skew / math.sqrt(skew ** 2 + 4))  # P(high) of a standardised 2-point law
    hi, lo = math.sqrt((1 - p) / p), -math.sqrt(p / (1 - p))
    n_hi = round(p * 200_000)
    z = np.r_[np.full(n_hi, hi), np.full(200_000 - n_hi, lo)]
    z = (z - z.mean()) / z.std()
    return mean + math.sqrt(var) * z


def test_sankaran_tail_agrees_with_scipy_where_scipy_is_finite():
    from scipy import stats

    df, nc, scale = 30.0, 20.0, 0.01
    for x in (0.3, 0.2, 0.15):
        exact = stats.ncx2.logcdf(x, df, nc, scale=scale)
        assert sankaran_log_cdf(x, df, nc, scale) == pytest.approx(exact, rel=0.05)


SUITE = """\
name: ib_tiny
task: inductive_bias
seeds: 1
datasets:
  - teacher_task: {{d: 4, n_samples: 400}}
n_hypotheses: 12
train_size: 40
training: {{epochs: 2, batch_size: 20, lr: 0.01}}
target: 0.15
bootstrap: 3
methods:
  teacher: {{hypotheses: teacher}}
  mlp: {{hypotheses: {{name: mlp, width: 8}}}}
  rf: {{hypotheses: {{name: random_features, width: 16}}}}
{extra}
metrics: [inductive_bias_bits, inductive_bias_bits_se, empirical_bits, hypothesis_loss]
rank_by: inductive_bias_bits
"""


@pytest.mark.parametrize("extra, key", [
    ("fit: gamma", "fit = 'gamma'"),
    ("n_hypotheses: 1", "n_hypotheses = 1"),
    ("objective: nce", "objective = 'nce': unknown key 'objective'"),
    ("hypotheses: {name: mlp, width: 0}", "hypotheses.width = 0"),
])
def test_bad_inputs_and_another_tasks_keys_stop_at_plan(extra, key, tmp_path, capsys):
    suite = tmp_path / "bad.yaml"
    text = SUITE.format(extra=extra)
    if extra.startswith(("fit", "n_hyp")):  # replace the suite's own line
        text = text.replace("n_hypotheses: 12\n", "") if "n_hyp" in extra else text
    if extra.startswith("hypotheses"):
        text = text.replace("  mlp: {hypotheses: {name: mlp, width: 8}}\n", "  mlp: {}\n")
    suite.write_text(text)
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and key in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end(tmp_path, tracking_uri, capsys):
    import mlflow

    suite = tmp_path / "ib_tiny.yaml"
    suite.write_text(SUITE.format(extra="  cnn: {hypotheses: cnn}"))
    assert main(["run", str(suite)]) == 1  # the cnn on rows that are not images fails alone
    df = mlflow.search_runs(experiment_names=["ib_tiny"], output_format="pandas")
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert df.loc["teacher", "metrics.test/inductive_bias_bits"] == 0
    assert df.loc["teacher", "metrics.test/hypothesis_loss"] == 0
    mlp = df.loc["mlp"]
    assert 0 < mlp["metrics.test/hypothesis_loss"] < 2
    assert math.isfinite(mlp["metrics.test/inductive_bias_bits"])
    assert mlp["metrics.test/inductive_bias_bits"] >= 0
    assert "fit/ks" in "".join(df.columns) and mlp["metrics.fit/ks"] < 1
    assert "cnn class needs image rows" in df.loc["cnn", "tags.harness.error"]
    history = mlflow.tracking.MlflowClient().get_metric_history(mlp["run_id"], "train/loss")
    assert [m.step for m in history] == [1, 2]


@pytest.mark.parametrize("channels, in_shape", [(0, (6,)), (4, (2, 6, 6))], ids=["mlp", "cnn"])
def test_each_hypothesis_of_a_batched_network_computes_and_learns_as_if_alone(channels,
                                                                              in_shape):
    import torch

    from harness_plugins.inductive_bias.hypotheses import BatchedNet

    gen = torch.Generator().manual_seed(0)
    net = BatchedNet(3, in_shape, [5], 3, gen, channels=channels)
    x = torch.randn(3, 4, *in_shape, generator=gen)
    y = torch.randn(3, 4, 3, generator=gen)
    loss = ((net(x) - y) ** 2).mean((1, 2)).sum()
    loss.backward()
    for k in range(3):
        alone = BatchedNet(1, in_shape, [5], 3, gen, channels=channels)
        with torch.no_grad():
            for mine, batched in zip(alone.params, net.params):
                size = mine.shape[0]  # a conv's rows are per hypothesis x channels
                mine.copy_(batched[k * size:(k + 1) * size])
        out = alone(x[k:k + 1])
        assert torch.allclose(out[0], net(x)[k], atol=1e-6)
        ((out - y[k:k + 1]) ** 2).mean().backward()
        for mine, batched in zip(alone.params, net.params):
            size = mine.shape[0]
            assert torch.allclose(mine.grad, batched.grad[k * size:(k + 1) * size], atol=1e-6)
