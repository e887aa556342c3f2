"""A real `mlflow server` (sqlite backend, 127.0.0.1, a free port) receives a
suite's runs from parallel workers; resume and `harness status` read them back
through the REST API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main

SUITE = """\
name: served
seeds: 2
datasets:
  - sklearn: iris
model: {name: mlp, hidden: [8]}
training: {epochs: 2, batch_size: 32, optimizer: {name: adam, lr: 0.01}}
methods:
  ce: {loss: cross_entropy}
  focal: {loss: {name: focal, gamma: 2.0}}
metrics: [accuracy]
task: classification
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` in its own process group, torn down with the module."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
           "--artifacts-destination", str(tmp / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_suite_runs_land_on_the_server(mlflow_server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    suite = tmp_path / "served.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "--tracking-uri", mlflow_server, "--jobs", "2"]) == 0
    assert "4 finished" in capsys.readouterr().out

    from mlflow.tracking import MlflowClient

    cl = MlflowClient(mlflow_server)
    runs = [r for r in cl.search_runs([cl.get_experiment_by_name("served").experiment_id])
            if "harness.run_key" in r.data.tags]
    assert Counter(r.data.tags["harness.run_key"] for r in runs).most_common(1)[0][1] == 1
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["harness.executor"] for r in runs} == {"local"}
    assert all("test/accuracy" in r.data.metrics for r in runs)
    assert "config.yaml" in [a.path for a in cl.list_artifacts(runs[0].info.run_id)]

    # resume and status read the server through the REST API
    assert main(["run", str(suite), "--tracking-uri", mlflow_server]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert main(["status", str(suite), "--tracking-uri", mlflow_server, "--json"]) == 0
    import json

    status = json.loads(capsys.readouterr().out)
    assert status["total"]["done"] == 4 and status["total"]["pending"] == 0
