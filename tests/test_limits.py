"""Hard limits and retries: --timeout kills a run (status timeout),
--memory-limit kills one past its RSS cap (oom), MemoryError is oom, a plugin
error is not retried, a worker killed with SIGKILL is (harness.attempt 2)."""

from __future__ import annotations

import os

import pytest

from harness.cli import main
from harness.limits import Limits, format_duration, parse_duration, parse_memory
from harness.runstate import is_infrastructure_error, is_oom
from harness.worker import WorkItem, execute_item

SUITE = """\
name: faults
seeds: [0]
datasets:
  - sklearn: iris
model: {name: mlp, hidden: [8]}
training: {epochs: 2, batch_size: 32, optimizer: {name: adam, lr: 0.01}}
methods:
  ce: {loss: cross_entropy}
  slow: {loss: {name: sleep, seconds: 120}}
  hog: {loss: {name: hog, mb: 4096}}
  memerr: {loss: out_of_memory}
  boom: {loss: {name: boom, message: kaput}}
  nan: {loss: nan_loss}
  flaky: {loss: {name: flaky, marker: "MARKER"}}
metrics: [accuracy]
task: classification
"""


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200),
                                           ("1h30m", 5400), ("45", 45), ("0.5", 0.5),
                                           ("1d", 86400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "1h30", "-5s", "0", "m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [("8G", 8 * 2**30), ("500M", 500 * 2**20),
                                        ("1.5GiB", 3 * 2**29), ("512k", 2**19),
                                        ("1024", 1024), ("2gb", 2 * 2**30)])
def test_parse_memory(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "lots", "8X", "0", "-1G"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError):
        parse_memory(text)


def test_limits_imply_isolation():
    assert not Limits().isolate
    assert Limits(timeout_s=5).isolate and Limits(memory_bytes=10).isolate
    assert format_duration(5400) == "1h30m" and format_duration(2.5) == "2.5s"


def test_error_classes():
    try:
        try:
            raise ConnectionRefusedError("refused")
        except OSError as exc:
            raise RuntimeError("API request to endpoint /runs/create failed") from exc
    except RuntimeError as exc:
        chained = exc
    assert is_infrastructure_error(chained)
    assert is_infrastructure_error(RuntimeError("CUDA error: an illegal memory access"))
    assert not is_infrastructure_error(RuntimeError("kaput"))
    assert not is_infrastructure_error(ValueError("binary loss on 3 classes"))
    assert is_oom(MemoryError()) and not is_oom(RuntimeError("out of memory?"))
    assert is_oom(type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"))


def test_unreachable_tracking_is_retryable(tmp_path, monkeypatch):
    """No MLflow run can be created: the outcome says so and asks for a retry."""
    import socket

    from harness.plan import expand_suite
    from harness.suite import load_suite

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.split("  slow:")[0] + "metrics: [accuracy]\ntask: classification\n")
    spec = expand_suite(load_suite(suite))[0]
    outcome, = execute_item(WorkItem([spec.to_dict()], "cpu"), f"http://127.0.0.1:{port}")
    assert outcome.status == "failed" and outcome.retryable, outcome.error


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """Run the faults suite once under --timeout, --memory-limit and --retries;
    yield (exit status, output, run name -> [(attempt, status, error)])."""
    import harness.plugins as hp

    tmp = tmp_path_factory.mktemp("faults")
    suite = tmp / "faults.yaml"
    suite.write_text(SUITE.replace("MARKER", str(tmp / "flaky")))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_PLUGINS", "harness_testplugin")
        mp.setenv("HARNESS_TEST_KILL_ONCE", f"iris/ce/0@{tmp / 'killed'}")
        hp.get_registry(reload=True)
        import io
        from contextlib import redirect_stderr, redirect_stdout

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            # --jobs 2: the slow run times out while the others go on (and a
            # loaded machine still finishes a tiny run well within 10 s)
            code = main(["run", str(suite), "--tracking-uri", uri, "--timeout", "10s",
                         "--memory-limit", "1G", "--retries", "2", "--jobs", "2"])
    hp.get_registry(reload=True)
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    runs: dict[str, list] = {}
    for r in cl.search_runs([cl.get_experiment_by_name("faults").experiment_id],
                            order_by=["attributes.start_time ASC"]):
        t = r.data.tags
        if "harness.run_key" in t:
            runs.setdefault(t["harness.method"], []).append(
                (int(t["harness.attempt"]), t["harness.status"], t.get("harness.error", ""),
                 r.info.status, t["harness.executor"]))
    return code, out.getvalue() + err.getvalue(), runs


@pytest.mark.slow
def test_timeout_kills_the_run(faults):
    code, output, runs = faults
    assert code == 1
    [(attempt, status, error, mlflow_status, _)] = runs["slow"]
    assert (attempt, status, mlflow_status) == (1, "timeout", "FAILED")
    assert "timed out after 10s" in error


@pytest.mark.slow
def test_memory_limit_kills_the_run(faults):
    [(_, status, error, _, _)] = faults[2]["hog"]
    assert status == "oom" and "memory limit exceeded" in error and "1024 MiB" in error


@pytest.mark.slow
def test_memory_error_is_oom(faults):
    [(_, status, error, _, _)] = faults[2]["memerr"]
    assert status == "oom" and "MemoryError" in error


@pytest.mark.slow
def test_plugin_error_is_not_retried(faults):
    [(attempt, status, error, _, _)] = faults[2]["boom"]
    assert (attempt, status, error) == (1, "failed", "RuntimeError: kaput")


@pytest.mark.slow
def test_divergence_stays_diverged(faults):
    [(_, status, _, mlflow_status, _)] = faults[2]["nan"]
    assert (status, mlflow_status) == ("diverged", "FINISHED")


@pytest.mark.slow
def test_cuda_error_is_retried(faults):
    first, second = faults[2]["flaky"]
    assert first[:3] == (1, "failed", "RuntimeError: CUDA error: unspecified launch failure")
    assert second[:2] == (2, "finished")


@pytest.mark.slow
def test_killed_worker_is_retried(faults):
    code, output, runs = faults
    first, second = runs["ce"]
    assert first[:2] == (1, "interrupted") and "killed by SIGKILL" in first[2]
    assert first[3] == "KILLED"
    assert second[:2] == (2, "finished") and second[3] == "FINISHED"
    assert second[4] == "local"
    assert "[retry 2/3] iris/ce/0" in output and "attempt 2" in output
    assert "1 timeout, 2 oom" in output


def test_memory_of_a_store_writer_is_not_the_runs():
    """The supervisor leaves a run's store writer (and its children) out of
    the RSS it holds against --memory-limit."""
    import subprocess
    import sys
    import time

    from harness.limits import rss_bytes

    hold = subprocess.Popen([sys.executable, "-c", "import sys, time; x = bytearray(150 * 2**20);"
                             " print(1, flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        hold.stdout.readline()  # its memory is touched
        time.sleep(0.2)
        with_it = rss_bytes(os.getpid())
        without = rss_bytes(os.getpid(), {hold.pid})
        assert with_it - without > 140 * 2**20
    finally:
        hold.kill()
        hold.wait()
