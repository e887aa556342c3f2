"""Crash safety: `kill -9` of the harness (or of a worker) mid-suite, then
`harness run` again, finishes exactly the missing runs -- no run key with two
FINISHED runs, no finished run lost; a run live in another process is
reported as running and not started twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.runner import make_plan
from harness.runstate import is_stale, pid_alive
from harness.tracking import existing_runs

PLUGINS = Path(__file__).parent / "plugins"
SUITE = """\
name: crash
seeds: 2
datasets:
  - sklearn: iris
model: {{name: mlp, hidden: [8]}}
training: {{epochs: 2, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  a: {{loss: {loss}}}
  b: {{loss: {loss}}}
metrics: [accuracy]
task: classification
"""


def finished_runs(uri: str) -> dict[str, list[str]]:
    """run_key -> ids of its FINISHED runs (the suite-level run excluded)."""
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    out: dict[str, list[str]] = {}
    for r in cl.search_runs([cl.get_experiment_by_name("crash").experiment_id]):
        key = r.data.tags.get("harness.run_key")
        if key and r.info.status == "FINISHED":
            out.setdefault(key, []).append(r.info.run_id)
    return out


def test_stale_detection():
    now = time.time()
    here = socket.gethostname()
    live = {"pid": f"{here}:{os.getpid()}", "heartbeat": str(now - 5)}
    assert not is_stale(live, now)
    assert is_stale({**live, "heartbeat": str(now - 10_000)}, now)  # frozen or hung
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert is_stale({"pid": f"{here}:{dead.pid}", "heartbeat": str(now)}, now)
    remote = {"pid": "elsewhere:1", "heartbeat": str(now - 30)}
    assert not is_stale(remote, now) and is_stale(remote, now, stale_after=10)
    assert is_stale({"pid": "elsewhere:1", "start": (now - 10_000) * 1000}, now)


def test_store_being_created_reads_as_empty_without_touching_it(tmp_path):
    """A reader (plan, status, a poll) that opens a sqlite store whose schema
    another process is still creating sees no runs, and must not try to create
    the tables itself (MLflow's store would, and race the writer)."""
    import sqlite3

    path = tmp_path / "mlflow.db"
    sqlite3.connect(path).close()  # the file exists, no tables yet
    assert existing_runs(f"sqlite:///{path}", "crash") == {}
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == []
    con.close()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_kill9_mid_suite_then_resume(jobs, tmp_path, tracking_uri, test_plugin, capsys):
    suite = tmp_path / "crash.yaml"
    suite.write_text(SUITE.format(loss="cross_entropy"))
    # the killed harness hangs in run a/1; the resumed one does not
    env = {**os.environ, "HARNESS_PLUGINS": "harness_testplugin",
           "HARNESS_TEST_SLOW_RUN": "iris/a/1:120",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "harness.log"
    # runs alone: killed mid-group, every run of the group would be running
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite),
                             "--tracking-uri", tracking_uri, "--jobs", str(jobs),
                             "--no-batch"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    done_before = 1 if jobs == 1 else 3  # with 2 workers the other runs go past a/1
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            state = Counter(i["status"] for i in existing_runs(tracking_uri, "crash").values())
            if state == {"finished": done_before, "running": 1}:
                break
            assert proc.poll() is None, f"harness ended before the kill:\n{log.read_text()}"
            time.sleep(0.1)
        else:
            pytest.fail(f"a/1 was not training within 180 s: {state}")
        # the live run is reported as running and not planned again
        plan = make_plan(str(suite), tracking_uri)
        assert [s.run_name for s in plan.running] == ["iris/a/1"]
        assert len(plan.todo) == 3 - done_before and plan.running[0] not in plan.todo
        from harness.status import collect

        assert collect(str(suite), tracking_uri).total["running"] == 1
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # the process that ran a/1 (the harness, or its worker) is gone with it
    pid = int(next(i for i in existing_runs(tracking_uri, "crash").values()
                   if i["status"] == "running")["pid"].rpartition(":")[2])
    deadline = time.time() + 15
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), "a worker outlived the harness"
    before = finished_runs(tracking_uri)
    plan = make_plan(str(suite), tracking_uri)
    assert not plan.running and len(plan.stale) == 1 and len(before) == done_before
    assert len(plan.todo) == 4 - done_before

    assert main(["run", str(suite)]) == 0
    assert f"{4 - done_before} to run, {done_before} already done" in capsys.readouterr().out
    after = finished_runs(tracking_uri)
    assert len(after) == 4 and all(len(ids) == 1 for ids in after.values())
    assert all(after[k] == ids for k, ids in before.items())  # nothing finished was redone
    statuses = Counter(i["status"] for i in existing_runs(tracking_uri, "crash").values())
    assert statuses == {"finished": 4}
    from mlflow.tracking import MlflowClient

    killed = MlflowClient(tracking_uri).get_run(next(iter(plan.stale.values())))
    assert killed.info.status == "KILLED"
    assert killed.data.tags["harness.status"] == "interrupted"


@pytest.mark.slow
def test_killed_worker_run_is_redone(tmp_path, tracking_uri, test_plugin, monkeypatch, capsys):
    suite = tmp_path / "crash.yaml"
    suite.write_text(SUITE.format(loss="cross_entropy"))
    monkeypatch.setenv("HARNESS_TEST_KILL_ONCE", f"iris/b/1@{tmp_path / 'killed'}")
    # runs alone (in a group, the killed worker takes the whole group with it)
    assert main(["run", str(suite), "--jobs", "2", "--no-batch"]) == 1  # recorded, not redone
    out = capsys.readouterr()
    assert "3 finished" in out.out and "1 interrupted" in out.out
    assert "worker process died: killed by SIGKILL" in out.err
    info = existing_runs(tracking_uri, "crash")
    assert Counter(i["status"] for i in info.values()) == {"finished": 3, "interrupted": 1}

    assert main(["run", str(suite), "--jobs", "2"]) == 0
    assert "1 to run, 3 already done" in capsys.readouterr().out
    after = finished_runs(tracking_uri)
    assert len(after) == 4 and all(len(ids) == 1 for ids in after.values())


def test_runs_another_process_took_since_the_plan_are_left_out(tmp_path, tracking_uri):
    """Two `harness run`s of one suite: each work item first leaves out the
    runs another process finished, or started and still runs, since its plan
    was made; older runs (what --force retrains), failed and dead ones stay."""
    from mlflow import MlflowClient

    from harness.runner import claimed_elsewhere
    from harness.worker import WorkItem

    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(loss="cross_entropy").replace("seeds: 2", "seeds: 3"))
    plan = make_plan(str(path), tracking_uri)
    specs = [s.to_dict() for s in plan.todo]
    assert len(specs) == 6
    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(specs[0]["suite"]) or None
    exp_id = exp.experiment_id if exp else client.create_experiment(specs[0]["suite"])
    now = time.time()
    # position in the plan -> (started, status tag, pid, MLflow status)
    others = {0: (now + 1, "finished", f"{here}:{os.getpid()}", "FINISHED"),
              1: (now + 1, "running", f"{here}:{os.getpid()}", "RUNNING"),
              2: (now + 1, "running", f"{here}:{dead.pid}", "RUNNING"),
              3: (now + 1, "failed", f"{here}:{os.getpid()}", "FAILED"),
              4: (now - 3600, "finished", f"{here}:{os.getpid()}", "FINISHED")}
    for i, spec in enumerate(specs):
        if i not in others:
            continue
        started, status, pid, mlflow_status = others[i]
        run = client.create_run(exp_id, start_time=int(started * 1000), tags={
            "harness.run_key": spec["run_key"], "harness.status": status,
            "harness.pid": pid, "harness.heartbeat": str(now)})
        if mlflow_status != "RUNNING":
            client.set_terminated(run.info.run_id, mlflow_status)
    item = WorkItem(specs, attempt=1)
    left, outcomes = claimed_elsewhere(item, tracking_uri, int(now * 1000))
    assert [d["run_key"] for d in left.specs] == [d["run_key"] for d in specs[2:]]
    assert [(o.run_key, o.status) for o in outcomes] == [
        (specs[0]["run_key"], "skipped"), (specs[1]["run_key"], "running")]
    assert outcomes[0].run_name == plan.todo[0].run_name
    assert "another harness process" in outcomes[0].error
