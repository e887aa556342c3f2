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


C_SUITE = """\
name: calc
task: calibration
seeds: 1
datasets:
  - {cifar10: {root: data}, split: {val: 0.25}}
  - {cifar10_c: {root: data, corruption: fog, severity: 2}, split: {val: 0.25}}
model: {name: mlp, hidden: [8]}
training: {epochs: 2, batch_size: 8, optimizer: {name: adam, lr: 0.01}, select_best: false}
shift: {severities: []}
calibrator: none
methods:
  none: {}
  temperature: {calibrator: temperature}
metrics: [ece, accuracy]
rank_by: ece
"""


def _write_cifar10_and_c(root):
    import numpy as np
    from test_image_sources import write_cifar10

    write_cifar10(root / "cifar-10-batches-py", n_per_batch=8)
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    rng = np.random.default_rng(3)
    # 5 severities x 8 images, other pixels than the clean test batch
    np.save(folder / "fog.npy", rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "labels.npy", rng.integers(0, 10, 40))


def _by_entry(uri, experiment):
    import mlflow

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment])
    df = df[df["tags.harness.run_key"].notna()]
    return df.set_index(["tags.harness.dataset", "tags.harness.method"]).sort_index()


@pytest.mark.slow
def test_corrupted_entries_share_the_clean_entrys_classifier(tmp_path, capsys):
    """CIFAR-10-C trains on CIFAR-10's train split: one classifier serves the
    clean and the corrupted entry, and the corrupted entry's metrics are
    those of its own test set, as when it trained its classifier alone."""
    _write_cifar10_and_c(tmp_path / "data")
    both = tmp_path / "both.yaml"
    both.write_text(C_SUITE)
    uri = f"sqlite:///{tmp_path}/both.db"
    assert main(["run", str(both), "-q", "--tracking-uri", uri]) == 0
    df = _by_entry(uri, "calc")
    assert sorted(df["metrics.classifier/reused"]) == [0.0, 1.0, 1.0, 1.0]
    assert df["tags.harness.shared.classifier"].nunique() == 1

    alone = tmp_path / "alone.yaml"
    alone.write_text(C_SUITE.replace("name: calc", "name: calc_alone").replace(
        "  - {cifar10: {root: data}, split: {val: 0.25}}\n", ""))
    uri_alone = f"sqlite:///{tmp_path}/alone.db"
    assert main(["run", str(alone), "-q", "--tracking-uri", uri_alone]) == 0
    ref = _by_entry(uri_alone, "calc_alone")
    assert ref["metrics.classifier/reused"].tolist() == [0.0, 1.0]
    corrupted = df.loc["cifar10_c-fog-2"]
    for col in ("metrics.test/ece", "metrics.test/accuracy"):
        assert corrupted[col].tolist() == pytest.approx(ref.loc["cifar10_c-fog-2", col].tolist(),
                                                        abs=1e-6)
    # and the clean entry scored its own (other) test set
    assert df.loc["cifar10", "metrics.test/ece"].tolist() != corrupted["metrics.test/ece"].tolist()
