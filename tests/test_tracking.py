"""MlflowRunLogger against a real sqlite MLflow store: batching limits, atomic close."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def spec(key: str = "k1"):
    """The RunSpec fields MlflowRunLogger reads."""
    return SimpleNamespace(suite="tracking", run_key=key, run_name=f"d/m/{key}",
                           dataset_label="d", method="m", seed=0, task="classification",
                           dataset={"source": "sklearn", "label": "d"}, config={"lr": 0.1})


@pytest.mark.parametrize("n", [1000, 2500])
def test_metric_batches_stay_within_mlflow_limits(n, tracking_uri):
    """Every value lands whatever the buffer size; a full chunk leaves room
    for the status tags that go with the last metrics (MLflow's limit is 1000
    entities per call), so a run's final write stays one call."""
    from mlflow import MlflowClient

    from harness.tracking import BATCH, MlflowRunLogger

    logger = MlflowRunLogger(tracking_uri, spec(), {})
    for step in range(n):
        logger.log_metrics({"val/loss": 1.0 / (step + 1)}, step)
        if step == n // 2:
            logger.flush()  # a timed flush in the middle of training
    logger.log_metrics({"test/accuracy": 0.5, "time/train_s": 1.0})
    logger.end("finished")
    client = MlflowClient(tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == "finished"
    assert len(client.get_metric_history(logger.run_id, "val/loss")) == n
    assert run.data.metrics["test/accuracy"] == 0.5
    assert BATCH + 2 <= 1000  # harness.status and harness.error next to a full chunk


@pytest.mark.parametrize("flushes", [0, 1])
@pytest.mark.parametrize("last", [0, 985])
def test_params_go_with_the_first_write(flushes, last, tracking_uri):
    """A run's params ride with its first metrics (or its end) instead of a
    call of their own, and land however full that batch is."""
    from mlflow import MlflowClient

    from harness.tracking import MlflowRunLogger

    many = spec()
    many.config = {f"p{i}": i for i in range(60)}
    logger = MlflowRunLogger(tracking_uri, many, {})
    client = MlflowClient(tracking_uri)
    assert client.get_run(logger.run_id).data.params == {}
    if flushes:
        logger.log_metrics({"val/loss": 0.5}, 0)
        logger.flush()
        assert client.get_run(logger.run_id).data.params["p59"] == "59"
    for step in range(last):
        logger.log_metrics({"train/loss": 1.0}, step)
    logger.end("finished")
    run = client.get_run(logger.run_id)
    assert run.data.params == {**{f"p{i}": str(i) for i in range(60)},
                               "dataset.source": "sklearn", "seed": "0"}
    assert len(client.get_metric_history(logger.run_id, "train/loss")) == last
    assert run.info.status == "FINISHED"


def test_existing_runs_fast_path_and_client_agree(tracking_uri):
    """`harness plan`/`status` read sqlite directly; any other store goes
    through MLflow.  Both give the same rows, and one run speaks for each key
    by harness.runstate's rules."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    from harness import tracking

    cl = MlflowClient(tracking_uri)
    exp = cl.create_experiment("agree")

    def run(key, status, mlflow_status, start, **tags):
        r = cl.create_run(exp, start_time=start)
        all_tags = {"harness.run_key": key, **({"harness.status": status} if status else {}),
                    **{f"harness.{k}": v for k, v in tags.items()}}
        cl.log_batch(r.info.run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        if mlflow_status != "RUNNING":
            cl.set_terminated(r.info.run_id, mlflow_status)
        return r.info.run_id

    done = run("a", "finished", "FINISHED", 1)
    run("a", "interrupted", "KILLED", 2)  # a later non-result never hides a result
    run("b", "failed", "FAILED", 1, failure_kind="input", error="UserError: x.csv: missing")
    run("c", None, "KILLED", 1)  # no status tag: MLflow's status decides
    run("d", "preempted", "FAILED", 1)  # a word this version does not know
    fast = tracking._existing_runs_sqlite(tracking.sqlite_path(tracking_uri), "agree")
    slow = tracking._existing_runs_client(tracking_uri, "agree")
    assert sorted(fast, key=str) == sorted(slow, key=str)
    got = tracking.existing_runs(tracking_uri, "agree")
    assert got["a"]["run_id"] == done and got["a"]["status"] == "finished"
    assert (got["b"]["status"], got["b"]["failure_kind"]) == ("failed", "input")
    assert got["c"]["status"] == "interrupted" and got["d"]["status"] == "interrupted"


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    """A new experiment's artifacts go to ``mlruns/<name>`` in the database's
    folder, not into the directory harness was started from."""
    from mlflow import MlflowClient

    from harness.tracking import MlflowRunLogger, artifact_location

    store, elsewhere = tmp_path / "store", tmp_path / "cwd"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store / 'runs.db'}"
    logger = MlflowRunLogger(uri, spec(), {})
    logger.log_text("hello", "note.txt")
    logger.end("finished")
    got = MlflowClient(uri).download_artifacts(logger.run_id, "note.txt", str(tmp_path))
    assert open(got).read() == "hello"
    assert (store / "mlruns" / "tracking" / logger.run_id / "artifacts" / "note.txt").exists()
    assert list(elsewhere.iterdir()) == []

    assert artifact_location("sqlite:///rel/x.db?timeout=5", "a b/c") == \
        str(elsewhere / "rel" / "mlruns" / "a_b_c")
    assert artifact_location("sqlite:////abs/x.db", "..") == "/abs/mlruns/experiment"
    assert artifact_location("sqlite://", "s") is None
    assert artifact_location("http://localhost:5000", "s") is None
