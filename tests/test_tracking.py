"""RunLogger against a real sqlite MLflow store: batching limits, atomic close."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def spec(key: str = "k1"):
    """The RunSpec fields RunLogger reads."""
    return SimpleNamespace(suite="tracking", run_key=key, run_name=f"d/m/{key}",
                           dataset_label="d", method="m", seed=0, task="classification",
                           dataset={"source": "sklearn", "label": "d"}, config={"lr": 0.1})


@pytest.mark.parametrize("n", [1000, 2500])
def test_metric_batches_stay_within_mlflow_limits(n, tracking_uri):
    """Every value lands whatever the buffer size; a full chunk leaves room
    for the status tags that go with the last metrics (MLflow's limit is 1000
    entities per call), so a run's final write stays one call."""
    from mlflow import MlflowClient

    from harness.tracking import BATCH, RunLogger

    logger = RunLogger(tracking_uri, spec(), {})
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
