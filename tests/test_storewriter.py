"""The store writer (harness.storewriter) against a real sqlite MLflow store:
what a RemoteRunLogger sends is what lands, in order; a run is FINISHED only
with all its metrics; the training process dying or the writer dying loses
no finished run and hangs nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest


def spec(key: str = "k1", suite: str = "writer"):
    """A RunSpec as a plan makes them."""
    from harness.plan import RunSpec

    return RunSpec(suite=suite, task="classification",
                   dataset={"source": "sklearn", "label": "d", "params": {"name": "iris"}},
                   method="m", point={}, seed=0, config={"lr": 0.1}, metrics=["accuracy"],
                   rank_by="accuracy", seeds={"split": 1, "init": 2, "order": 3}, run_key=key)


def test_remote_logger_writes_what_was_sent(tracking_uri, tmp_path):
    """Tags (the sender's pid, not the writer's), params, every metric at its
    step, a text artifact and a copy of a file deleted right after the call;
    the run ends FINISHED, and ``wait`` gives its id only once it has."""
    import socket

    from mlflow import MlflowClient

    from harness.storewriter import SEND_ROWS, RemoteRunLogger, StoreWriter

    writer = StoreWriter(tracking_uri)
    try:
        writer.prepare("writer").result(timeout=120)
        logger = RemoteRunLogger(writer, spec(), {"harness.plugin.x": "y==1"},
                                 {"harness.group": "g 1/1"})
        logger.log_text("a: 1\n", "config.yaml")
        n = 2 * SEND_ROWS + 7  # chunks sent during training and a remainder at the end
        for step in range(n):
            logger.log_metrics({"val/loss": 1.0 / (step + 1)}, step)
        artifact = tmp_path / "curve.txt"
        artifact.write_text("0.5\n")
        logger.log_artifact(str(artifact))
        artifact.unlink()  # the caller's file is gone before the writer gets to it
        logger.set_tags({"harness.extra": 3})
        logger.log_metrics({"test/accuracy": 0.75})
        assert logger.run_id is None  # not ended yet
        logger.end("finished")
        run_id, error = logger.wait(timeout=120)
    finally:
        writer.close()
    assert error == "" and run_id == logger.run_id
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["harness.status"] == "finished"
    assert tags["harness.pid"] == f"{socket.gethostname()}:{os.getpid()}"
    assert tags["harness.group"] == "g 1/1" and tags["harness.extra"] == "3"
    assert tags["harness.plugin.x"] == "y==1" and tags["harness.run_key"] == "k1"
    assert run.data.params["lr"] == "0.1" and run.data.metrics["test/accuracy"] == 0.75
    history = client.get_metric_history(run_id, "val/loss")
    assert sorted((m.step, m.value) for m in history) == [
        (s, 1.0 / (s + 1)) for s in range(n)]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"config.yaml", "curve.txt"}
    local = client.download_artifacts(run_id, "curve.txt", str(tmp_path))
    assert open(local).read() == "0.5\n"


def test_a_run_that_cannot_be_recorded_fails_without_hanging(tmp_path):
    """A store the writer cannot open: the prepare request raises with the
    store's error, and a run's ``wait`` says why instead of blocking."""
    from harness.storewriter import RemoteRunLogger, StoreWriter, WriterError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    writer = StoreWriter(f"sqlite:///{blocker}/mlflow.db")
    try:
        with pytest.raises(WriterError):
            writer.prepare("writer").result(timeout=120)
        logger = RemoteRunLogger(writer, spec(), {})
        logger.log_metrics({"x": 1.0})
        logger.end("finished")
        run_id, error = logger.wait(timeout=120)
    finally:
        writer.close()
    assert run_id is None and error


def test_writer_death_fails_waiting_runs(tracking_uri):
    """The writer killed: a run waiting for its end gets an error, not a hang."""
    from harness.storewriter import RemoteRunLogger, StoreWriter

    writer = StoreWriter(tracking_uri)
    writer.prepare("writer").result(timeout=120)
    logger = RemoteRunLogger(writer, spec(), {})
    os.kill(writer._proc.pid, signal.SIGKILL)
    writer._proc.wait()
    logger.end("finished")
    run_id, error = logger.wait(timeout=60)
    writer.close()
    assert run_id is None and "store writer" in error


def test_writer_is_out_of_reach_of_ctrl_c(tracking_uri):
    """Its own session: a terminal's SIGINT goes to the training process,
    which then ends its runs ``interrupted`` through the writer."""
    from harness.storewriter import StoreWriter

    writer = StoreWriter(tracking_uri)
    try:
        assert os.getsid(writer._proc.pid) != os.getsid(0)
    finally:
        writer.close()


@pytest.mark.slow
def test_training_process_killed_keeps_ended_runs(tracking_uri, tmp_path):
    """kill -9 of the training process: the run whose end it had sent is
    FINISHED with all its metrics; the other stays RUNNING under the dead
    process's pid, which resume reads as stale (what was still queued in the
    dead process is lost with it: that run is trained again)."""
    from harness import runstate
    from harness.tracking import existing_runs

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        from test_storewriter import spec
        from harness.storewriter import RemoteRunLogger, writer_for
        writer = writer_for({tracking_uri!r})
        writer.prepare("writer").result(timeout=120)
        done, open_ = (RemoteRunLogger(writer, spec(k), {{}}) for k in ("done", "open"))
        for step in range(250):
            done.log_metrics({{"val/loss": float(step)}}, step)
            open_.log_metrics({{"val/loss": float(step)}}, step)
        done.end("finished")
        done.wait(timeout=120)
        open_.flush()  # queued, perhaps not sent
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    tests = os.path.dirname(__file__)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tests,
                            env={**os.environ, "PYTHONPATH": tests})
    assert proc.wait(timeout=300) == -signal.SIGKILL
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = existing_runs(tracking_uri, "writer")
    assert runs["done"]["status"] == "finished"
    assert len(client.get_metric_history(runs["done"]["run_id"], "val/loss")) == 250
    assert runs["open"]["status"] == "running"
    assert runstate.is_stale(runs["open"]) and runs["open"]["pid"].endswith(f":{proc.pid}")


def test_every_warm_entry_imports_and_runs():
    """The writer swallows a failing warm-up (the request itself would say
    it), so a typo there would only ever show as a slower report."""
    import importlib

    from harness.storewriter import REPORT_MODULES

    for entry in REPORT_MODULES:
        module, _, call = entry.partition(":")
        loaded = importlib.import_module(module)
        if call:
            getattr(loaded, call)()
