"""The calibration task: one shared classifier per (dataset, seed), calibrators
fitted on validation logits, in- and out-of-distribution metrics."""

from __future__ import annotations

import pytest

from harness.cli import main

SUITE = """\
name: cal
task: calibration
seeds: 1
datasets: [{sklearn: wine}]
model: {name: mlp, hidden: [16]}
training: {epochs: 3, optimizer: {name: adam, lr: 0.01}, select_best: false}
shift: {severities: [2]}
calibrator: none
methods:
  none: {}
  temperature: {calibrator: temperature}
  ca: {calibrator: {name: correctness_aware, epochs: 2}}
metrics: [ece, accuracy, nll]
rank_by: ece
"""


@pytest.mark.slow
def test_classifier_trained_once_and_shared(tmp_path, tracking_uri, capsys):
    suite = tmp_path / "cal.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite)]) == 0
    import mlflow
    from mlflow.tracking import MlflowClient

    df = mlflow.search_runs(experiment_names=["cal"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert sorted(df["metrics.classifier/reused"]) == [0.0, 1.0, 1.0]
    assert df["tags.harness.shared.classifier"].nunique() == 1
    for col in ("test/ece", "test/shift2/ece", "test/shift2/accuracy", "test/nll"):
        assert df[f"metrics.{col}"].notna().all(), col
    # rescaling by one temperature never changes the argmax
    assert df.loc["temperature", "metrics.test/accuracy"] == df.loc["none", "metrics.test/accuracy"]
    assert df.loc["temperature", "metrics.test/shift2/accuracy"] == \
        df.loc["none", "metrics.test/shift2/accuracy"]
    arts = [a.path for a in MlflowClient(tracking_uri).list_artifacts(df.loc["ca", "run_id"])]
    assert "reliability.png" in arts


def test_unknown_calibrator_is_a_suite_error(tmp_path, capsys):
    suite = tmp_path / "cal.yaml"
    suite.write_text(SUITE.replace("calibrator: temperature}", "calibrator: temprature}"))
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert "methods.temperature.calibrator" in err and "did you mean 'temperature'" in err
