"""The Python API: ``harness.run_suite`` and ``harness.build_report`` do what
``harness run`` and ``harness report`` do (same runs, same numbers, resume,
the suite-level report run), and ``harness.components`` documents parameters
as ``Param`` objects."""

from __future__ import annotations

import subprocess
import sys

import pytest

import harness
from harness.cli import main

SUITE = """\
name: {name}
seeds: 1
datasets:
  - sklearn: iris
model: {{name: mlp, hidden: [8]}}
training: {{epochs: 2, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  ce: {{}}
  focal: {{loss: {{name: focal, gamma: 2.0}}}}
metrics: [accuracy, log_loss, {{name: ece, bins: 5}}]
task: classification
rank_by: log_loss
"""


def suite_file(tmp_path, name="tiny-api"):
    f = tmp_path / f"{name}.yaml"
    f.write_text(SUITE.format(name=name))
    return f


def test_metrics(uri, experiment):
    """method -> {metric: value} of the run-keyed runs (not the suite run)."""
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name(experiment)
    runs = [r for r in cl.search_runs([exp.experiment_id]) if "harness.run_key" in r.data.tags]
    return {r.data.tags["harness.method"]: {k: v for k, v in r.data.metrics.items()
                                            if k.startswith("test/")} for r in runs}


test_metrics.__test__ = False  # a helper, not a test


@pytest.mark.slow
def test_run_suite_runs_resumes_and_matches_the_cli(tmp_path, tracking_uri):
    suite = suite_file(tmp_path)
    summary = harness.run_suite(suite)
    assert summary.suite == "tiny-api" and summary.tracking_uri == tracking_uri
    assert summary.runs == 2 and summary.counts == {"finished": 2}
    assert summary.ok and summary.failed == 0
    assert summary.report_run_id is not None

    from mlflow.tracking import MlflowClient

    suite_run = MlflowClient(tracking_uri).get_run(summary.report_run_id)
    assert suite_run.data.tags["harness.kind"] == "suite"
    assert suite_run.data.tags["harness.rank_by"] == "log_loss"

    api = test_metrics(tracking_uri, "tiny-api")
    assert set(api) == {"ce", "focal"}
    assert {"test/accuracy", "test/log_loss", "test/ece:bins-5"} <= set(api["ce"])

    # resume: nothing new runs, so no new report run either
    again = harness.run_suite(suite)
    assert again.counts == {"skipped": 2} and again.report_run_id is None and again.ok

    # the same suite through the CLI, in another store: the same numbers
    other = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["run", str(suite), "--tracking-uri", other]) == 0
    assert test_metrics(other, "tiny-api") == api

    forced = harness.run_suite(suite, force=True, only="iris/ce/*")
    assert forced.counts == {"finished": 1}
    assert test_metrics(tracking_uri, "tiny-api")["ce"] == api["ce"]


def test_run_suite_rejects_bad_arguments_before_any_run(tmp_path, tracking_uri):
    suite = suite_file(tmp_path, "never-run")
    with pytest.raises(harness.ConfigError, match="jobs.*(at least 1|>= 1)"):
        harness.run_suite(suite, jobs=0)
    with pytest.raises(harness.ConfigError, match="suite file not found"):
        harness.run_suite(tmp_path / "missing.yaml")
    with pytest.raises(harness.UserError, match="unknown device"):
        harness.run_suite(suite, device="gpu")
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri).get_experiment_by_name("never-run") is None


def test_build_report_from_suite_file_and_from_experiment(tmp_path, tracking_uri):
    suite = suite_file(tmp_path)
    harness.run_suite(suite)

    out = harness.build_report(suite, out=tmp_path / "by-file")
    assert out == tmp_path / "by-file"
    # default formats: md, html, csv (no latex)
    assert {"index.md", "index.html", "leaderboard.csv"} <= {p.name for p in out.iterdir()}
    assert not (out / "leaderboard.tex").exists()
    assert "test/log_loss" in (out / "index.md").read_text()  # the suite's rank_by

    # by experiment name: the rank_by run_suite logged with the suite run
    by_name = harness.build_report("tiny-api", out=tmp_path / "by-name", formats=["csv"])
    assert (by_name / "leaderboard.csv").exists()
    assert not (by_name / "index.md").exists()

    over = harness.build_report("tiny-api", out=tmp_path / "acc", formats=("md",),
                                metric="accuracy")
    text = (over / "index.md").read_text()
    assert "test/accuracy" in text

    with pytest.raises(harness.UserError, match="format"):
        harness.build_report(suite, out=tmp_path / "x", formats=("pdf",))
    with pytest.raises(harness.UserError, match="no-such-experiment"):
        harness.build_report("no-such-experiment", out=tmp_path / "y")


def test_components_params_are_param_objects():
    from harness.params import Param

    params = harness.components("losses")["focal"].params
    assert isinstance(params, list) and all(isinstance(p, Param) for p in params)
    gamma = {p.name: p for p in params}["gamma"]
    assert not gamma.required and gamma.default == 2.0
    assert gamma.describe() == "gamma: float (>= 0) = 2.0"


def test_api_is_imported_only_when_used():
    code = ("import sys, harness; assert 'harness.api' not in sys.modules; "
            "harness.run_suite; assert 'harness.api' in sys.modules; "
            "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
