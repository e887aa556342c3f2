"""The domain_generalization task through the CLI: suite errors stop
``harness plan`` with one line naming file, key and value; a tiny run logs
target and source accuracy; the metrics average over domains."""

from __future__ import annotations

import numpy as np
import pytest

from harness.cli import main

SUITE = """\
name: dg_tiny
task: domain_generalization
seeds: 1
datasets:
  - rotated_digits: {angles: [0, 45], per_domain: 80}
model: {name: mlp, hidden: [16]}
training: {epochs: 2, batch_size: 8}
methods:
  erm: {method: erm}
  drm: {method: drm}
metrics: [target_accuracy, source_accuracy]
rank_by: target_accuracy
"""


def _plan_error(tmp_path, capsys, text: str) -> str:
    suite = tmp_path / "dg.yaml"
    suite.write_text(text)
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "dg.yaml" in err
    return err


def test_leave_one_domain_out_plans_a_dataset_per_held_out_domain(tmp_path, capsys):
    suite = tmp_path / "dg.yaml"
    suite.write_text(SUITE)
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 0
    out = capsys.readouterr().out
    assert "rotated_digits@0" in out and "rotated_digits@45" in out
    assert "4 runs" in out


def test_unknown_domain_stops_plan(tmp_path, capsys):
    err = _plan_error(tmp_path, capsys, SUITE.replace("per_domain: 80}",
                                                      "per_domain: 80, target: 30}"))
    assert "datasets[0].rotated_digits.target" in err and "'30'" in err
    assert "0, 45" in err


def test_holding_out_every_domain_stops_plan(tmp_path, capsys):
    err = _plan_error(tmp_path, capsys, SUITE.replace("per_domain: 80}",
                                                      "per_domain: 80, target: [0, 45]}"))
    assert "datasets[0].rotated_digits.target" in err and "every domain" in err


def test_another_tasks_key_stops_plan(tmp_path, capsys):
    err = _plan_error(tmp_path, capsys, SUITE.replace("model:", "views: 2\nmodel:"))
    assert "views" in err and "2" in err and "unknown key" in err


def test_another_tasks_dataset_key_stops_plan(tmp_path, capsys):
    err = _plan_error(tmp_path, capsys, SUITE.replace("per_domain: 80}",
                                                      "per_domain: 80}\n    imbalance: 0.1"))
    assert "datasets[0].imbalance" in err and "0.1" in err


def test_unknown_method_parameter_stops_plan(tmp_path, capsys):
    err = _plan_error(tmp_path, capsys, SUITE.replace("{method: drm}",
                                                      "{method: {name: drm, steer: x}}"))
    assert "methods.drm.method" in err and "steer" in err


def test_metrics_average_over_domains():
    from harness.metrics import compute_metrics
    from harness.plugins import get_registry

    reg = get_registry()
    fns = {n: reg.create("metrics", n, n) for n in ("target_accuracy", "source_accuracy")}
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    out = compute_metrics(fns, {
        # target: domain 0 has 3 rows, 2 right; domain 1 one row, right: (2/3 + 1) / 2
        "labels": np.array([0, 0, 1, 1]), "probs": probs, "domains": np.array([0, 0, 0, 1]),
        # source: one domain, 1 of 4 right
        "source_labels": np.array([1, 1, 1, 0]), "source_probs": probs,
        "source_domains": np.zeros(4, dtype=int)})
    assert out["target_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["source_accuracy"] == pytest.approx(0.0)


@pytest.mark.slow
def test_tiny_run_logs_target_and_source_accuracy(tmp_path, tracking_uri):
    suite = tmp_path / "dg.yaml"
    suite.write_text(SUITE.replace("per_domain: 80}", "per_domain: 80, target: 45}"))
    assert main(["run", str(suite)]) == 0
    import mlflow

    df = mlflow.search_runs(experiment_names=["dg_tiny"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert sorted(df.index) == ["drm", "erm"]
    for col in ("test/target_accuracy", "test/source_accuracy", "test/domain/45/accuracy",
                "test/domain/0/accuracy", "val/accuracy", "train/loss"):
        assert df[f"metrics.{col}"].between(0, 1 if "accuracy" in col else 10).all(), col
    assert (df["tags.harness.dataset"] == "rotated_digits@45").all()
    # the one target domain's accuracy is the target accuracy
    assert np.allclose(df["metrics.test/target_accuracy"], df["metrics.test/domain/45/accuracy"])
    # and the mean of its rows' correctness, logged per row (step: the row's id)
    from mlflow.tracking import MlflowClient

    hist = MlflowClient(tracking_uri).get_metric_history(df.loc["erm", "run_id"],
                                                         "unit/target_accuracy")
    assert len(hist) == 80 and len({h.step for h in hist}) == 80
    assert np.mean([h.value for h in hist]) == pytest.approx(
        df.loc["erm", "metrics.test/target_accuracy"])


def _folders(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for dom in ("photo", "sketch", "cartoon"):
        for cls in ("cat", "dog"):
            (root / dom / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(
                    root / dom / cls / f"{i}.png")


def test_domain_folders_relative_to_the_suite(tmp_path, capsys):
    _folders(tmp_path / "pacs")
    text = SUITE.replace("rotated_digits: {angles: [0, 45], per_domain: 80}",
                         "domain_folders: {path: pacs, domains: [photo, sketch, cartoon]}")
    suite = tmp_path / "dg.yaml"
    suite.write_text(text)
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 0
    out = capsys.readouterr().out
    assert all(f"pacs@{d}" in out for d in ("photo", "sketch", "cartoon"))
    err = _plan_error(tmp_path, capsys, text.replace("cartoon]}", "cartoon], target: clipart}"))
    assert "datasets[0].domain_folders.target" in err and "clipart" in err
