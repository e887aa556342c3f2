"""The report reads a sqlite store from its tables: the same runs, columns
and values as through MLflow's client (duplicates, a deleted run, a NaN
metric, suite-level runs, direction tags), without importing mlflow."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.report import load


@pytest.fixture
def store(tmp_path):
    """A sqlite store with the cases the loader must keep apart."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("sq")
    client.create_experiment("other")

    def run(key, method, seed, status="finished", metrics=None, extra=None, start=None):
        r = client.create_run(exp, start_time=start, tags={
            "harness.run_key": key, "harness.dataset": "d", "harness.method": method,
            "harness.seed": str(seed), "harness.status": status,
            "harness.direction.accuracy": "max", **(extra or {})})
        client.log_batch(r.info.run_id, metrics=[
            Metric(k, v, 0, 0) for k, v in (metrics or {}).items()],
            tags=[RunTag("other.tag", "x")])
        client.set_terminated(r.info.run_id, "FINISHED" if status == "finished" else "FAILED")
        return r.info.run_id

    run("k1", "a", 0, metrics={"test/accuracy": 0.9, "time/train_s": 1.5, "val/loss": 0.3},
        start=1000)
    run("k1", "a", 0, status="failed", extra={"harness.error": "boom"}, start=2000)
    run("k2", "b", 0, metrics={"test/accuracy": math.nan, "test/f1": 0.5}, start=3000)
    gone = run("k3", "b", 1, metrics={"test/accuracy": 0.1}, start=4000)
    client.delete_run(gone)
    client.create_run(exp, start_time=5000, tags={"harness.kind": "suite",
                                                  "harness.rank_by": "accuracy"})
    client.create_run(exp, start_time=6000, tags={"note": "untagged"})
    return uri


def _both(uri, experiment, monkeypatch):
    fast = load.load_runs(experiment, uri)
    monkeypatch.setattr(load, "_rows", load._client_rows)
    slow = load.load_runs(experiment, uri)
    monkeypatch.undo()
    return fast, slow


def test_sqlite_tables_read_as_mlflow_does(store, monkeypatch):
    fast, slow = _both(store, "sq", monkeypatch)
    pd.testing.assert_frame_equal(fast.runs.sort_index(axis=1), slow.runs.sort_index(axis=1))
    for field in ("n_read", "n_untagged", "duplicates", "n_suite_runs", "rank_by",
                  "directions"):
        assert getattr(fast, field) == getattr(slow, field), field
    runs = fast.runs.set_index("run_key")
    assert list(runs.index) == ["k2", "k1"] and fast.n_read == 5  # the deleted run is out
    assert runs.loc["k1", "test/accuracy"] == 0.9 and runs.loc["k1", "status"] == "finished"
    assert math.isnan(runs.loc["k2", "test/accuracy"]) and runs.loc["k2", "test/f1"] == 0.5
    assert "val/loss" not in fast.runs.columns  # only test/* and time/*
    assert fast.rank_by == "accuracy" and fast.duplicates[0][:2] == ("k1", 2)


def test_sqlite_read_needs_no_mlflow(store):
    import subprocess
    import sys

    code = ("import sys; from harness.report.load import load_runs; "
            f"r = load_runs('sq', {store!r}); "
            "print(len(r.runs), 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["2", "False"]


def test_unknown_experiment_and_missing_file(store, tmp_path):
    from harness.errors import UserError

    with pytest.raises(UserError, match="no MLflow experiment named 'nope'"):
        load.load_runs("nope", store)
    missing = tmp_path / "none.db"
    with pytest.raises(UserError, match="no MLflow experiment named 'sq'"):
        load.load_runs("sq", f"sqlite:///{missing}")
    assert not missing.exists()  # not created as a side effect
