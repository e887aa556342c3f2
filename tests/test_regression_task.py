"""The regression task through the CLI: bad input stops at `harness plan`
with one line naming file, key and value; a tiny suite runs end to end."""

from __future__ import annotations

import sqlite3
import textwrap

import numpy as np
import pytest

from harness.cli import main

TINY = """\
name: reg
task: regression
seeds: [0]
datasets:
  - {linear_gaussian: {n: 200, d: 4, noise: 0.5}, split: {val: 0.2, test: 0.2}}
  - {diabetes: {}}
model: linear
methods:
  ols: {}
  bag: {aggregation: {bag_size: 4, loss: bag}}
  interp: {aggregation: {bag_size: 4, loss: {name: interpolating, rho: 0.5}, epsilon: 2.0}}
  mlp: {model: {name: mlp, hidden: [8]}, training: {epochs: 2, batch_size: 32},
        aggregation: {bag_size: 2, loss: instance}}
metrics: [mse, mae, r2]
"""


def _plan(tmp_path, capsys, text: str):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr(), suite


def test_tiny_suite_plans(tmp_path, capsys):
    code, out, _ = _plan(tmp_path, capsys, TINY)
    assert code == 0, out.err
    assert "8 runs: 8 to run" in out.out


@pytest.mark.parametrize("old,new,words", [
    ("bag_size: 4, loss: bag}", "bag_size: 0, loss: bag}",
     ["aggregation.bag_size = 0", "greater than or equal to 1"]),
    # 200 rows, 40 validation, 40 test: 120 training rows
    ("bag_size: 4, loss: bag}", "bag_size: 121, loss: bag}",
     ["aggregation.bag_size = 121", "exceeds the 120 training rows",
      "linear_gaussian_n200_d4"]),
    ("rho: 0.5}", "rho: 1.5}", ["aggregation.loss.rho = 1.5"]),
    ("epsilon: 2.0}", "epsilon: 0}", ["aggregation.epsilon = 0"]),
    # found by fuzzing: an infinite clip bound made every released bag mean inf
    ("epsilon: 2.0}", "epsilon: 2.0, clip: .inf}", ["aggregation.clip = inf", "finite"]),
    ("training: {epochs: 2,", "training: {l2: .inf, epochs: 2,", ["training.l2 = inf", "finite"]),
    ("{n: 200, d: 4,", "{n: 1000000000000000000000000000000, d: 4,",
     ["linear_gaussian.n = 10000000000", "<= 10000000"]),
    ("loss: bag}", "loss: bags}", ["unknown aggregate_loss 'bags'", "did you mean 'bag'"]),
    # keys of other tasks
    ("model: linear\n", "model: linear\ndomains: [a, b]\n",
     ["domains", "unknown key 'domains'"]),
    ("model: linear\n", "model: linear\nloss: cross_entropy\n", ["unknown key 'loss'"]),
    ("{diabetes: {}}", "{diabetes: {}, imbalance: 0.1}", ["imbalance", "no dataset option"]),
    ("model: linear\n", "model: linear\ntraining: {solver: exact}\n",
     ["training.solver = 'exact'", "linear model only, not 'mlp'"]),
    ("metrics: [mse,", "metrics: [accuracy, mse,", ["accuracy", "targets, predictions"]),
])
def test_bad_input_stops_at_plan_naming_file_key_value(tmp_path, capsys, old, new, words):
    assert old in TINY
    code, out, suite = _plan(tmp_path, capsys, TINY.replace(old, new, 1))
    assert code == 2, out.err
    assert "Traceback" not in out.err
    line = out.err.strip().splitlines()
    assert len(line) == 1, out.err
    assert str(suite) in line[0] or suite.name in line[0]
    for w in words:
        assert w in line[0]


@pytest.mark.slow
def test_tiny_suite_runs_end_to_end(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(TINY.replace("  - {diabetes: {}}\n", ""))
    db = tmp_path / "m.db"
    code = main(["run", str(suite), "--tracking-uri", f"sqlite:///{db}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select r.name, m.key, m.value from runs r join latest_metrics m "
            "on r.run_uuid = m.run_uuid where m.key like 'test/%'").fetchall()
    got = {(name, key): value for name, key, value in rows}
    names = {name for name, _ in got}
    assert len(names) == 4
    for name in names:
        assert {"test/mse", "test/mae", "test/r2"} <= {k for n, k in got if n == name}
    lg = "linear_gaussian_n200_d4_noise0.5_signal1_rs0"
    # OLS on 120 rows, d = 4: R^2 near 1 - 0.25 / 1.25 = 0.8, risk near 0.25 * (1 + 4/115)
    assert got[(f"{lg}/ols/0", "test/r2")] > 0.6
    assert got[(f"{lg}/ols/0", "test/population_risk")] < 0.4
    assert got[(f"{lg}/bag/0", "test/asymptotic_risk")] == pytest.approx(0.25 + 0.25 * 4 / 26)
    assert got[(f"{lg}/interp/0", "test/asymptotic_risk")] > 0.25
    assert got[(f"{lg}/ols/0", "test/optimal_bag_size")] == 1


@pytest.mark.parametrize("name,runs", [("regression", 36), ("regression_quick", 8),
                                       ("aggregate_responses", 2160),
                                       ("aggregate_responses_quick", 108)])
def test_shipped_suites_plan(name, runs, tmp_path, capsys):
    code = main(["plan", f"suites/{name}.yaml", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"{runs} runs: {runs} to run" in out.out


@pytest.mark.slow
def test_regression_sets_load_offline_and_filter():
    from harness_plugins.regression import sources

    raw = sources.regression_sets("yacht_hydrodynamics")  # the loader pandas 3 broke
    assert raw.X.shape == (307, 6) and raw.y.dtype == np.float64
    assert len(sources.summary()) == 34
    small = sources.regression_sets.expand({"max_n": 100})
    assert small == [{"name": "daily_demand"}, {"name": "diabetes"}, {"name": "o_ring"},
                     {"name": "stock_portfolio_performance"}]


def test_openml_numeric_target_reaches_the_task(monkeypatch):
    import pandas as pd

    from harness_plugins.data import openml as source
    from harness_plugins.regression.task import prepare_regression

    frame = pd.DataFrame({"a": np.arange(50.0), "c": pd.Categorical(["u", "v"] * 25)})
    target = pd.Series(np.arange(50.0) * 2 + 1, name="price")
    monkeypatch.setattr(source, "load_table", lambda i, t=None: (
        frame.copy(), target.copy(), {"name": "houses", "target": "price", "dataset_id": i}))
    raw = source.openml_dataset(123)
    data = prepare_regression(raw, {"val": 0.2, "test": 0.2}, seed=0, label="houses")
    assert data.X_train.shape == (30, 3)        # a, and c one-hot
    assert np.allclose(data.y_train % 2, 1.0)   # the numeric target, unchanged
