"""harness.runstate: the one set of rules that plan, status, tracking and
reports share (status words, stale runs, one run per key, tracking URI)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from harness import runstate
from harness.runstate import display_uri, normalize, plan_state, prefer, status_column


def test_status_sets_and_mlflow_mapping():
    assert runstate.DONE == {"finished", "diverged"}
    assert runstate.FAILED == {"failed", "timeout", "oom"}
    assert set(runstate.MLFLOW_STATUS) == set(runstate.STATUSES) - {"running"}
    assert runstate.MLFLOW_STATUS["diverged"] == "FINISHED"
    assert runstate.MLFLOW_STATUS["interrupted"] == "KILLED"


@pytest.mark.parametrize("tag,mlflow,word", [
    ("finished", "FINISHED", "finished"),
    ("FAILED", "FAILED", "failed"),  # case does not matter
    (None, "KILLED", "interrupted"),  # no tag: MLflow's status decides
    (None, "FINISHED", "finished"),
    (None, "RUNNING", "running"),
    ("running", "RUNNING", "running"),
    # the tag is written with the last metrics; a death before set_terminated
    # leaves MLflow saying RUNNING about a finished run
    ("finished", "RUNNING", "finished"),
    # a word this version does not know: not a result, redone like an interruption
    ("preempted", "FAILED", "interrupted"),
])
def test_normalize(tag, mlflow, word):
    assert normalize(tag, mlflow) == word


def test_unknown_status_is_one_rule_everywhere():
    """Issue #10.6: the planner redid an unknown status while `harness status`
    counted it failed.  Now both read it as interrupted."""
    info = {"status": "preempted", "run_id": "r"}
    assert plan_state(info) == "todo"
    assert status_column(info) == "interrupted"


def test_prefer_newest_but_never_a_non_result_over_a_result():
    assert prefer(None, "failed")
    assert prefer("failed", "finished") and prefer("interrupted", "failed")
    assert prefer("finished", "diverged")  # newest result wins
    assert not prefer("finished", "interrupted") and not prefer("diverged", "running")


@pytest.mark.parametrize("info,kw,state", [
    (None, {}, "todo"),
    ({"status": "finished"}, {}, "done"),
    ({"status": "diverged"}, {}, "done"),
    ({"status": "finished"}, {"force": True}, "todo"),
    ({"status": "failed"}, {}, "failed"),
    ({"status": "oom"}, {"rerun_failed": True}, "todo"),
    ({"status": "interrupted"}, {}, "todo"),
    # the input was wrong, not the method: fixing the file fixes the run
    ({"status": "failed", "failure_kind": "input"}, {}, "todo"),
    ({"status": "timeout", "failure_kind": "input"}, {}, "todo"),
    ({"status": "failed", "failure_kind": "method"}, {}, "failed"),
])
def test_plan_state(info, kw, state):
    assert plan_state(info, **kw) == state


def test_running_runs_live_or_stale():
    now = time.time()
    live = {"status": "running", "pid": f"{socket.gethostname()}:{os.getpid()}",
            "heartbeat": str(now)}
    assert plan_state(live, now) == "running" and status_column(live, now) == "running"
    assert plan_state(live, now, force=True) == "running"  # never started twice
    old = {**live, "pid": "elsewhere:1", "heartbeat": str(now - runstate.STALE_AFTER_S - 1)}
    assert plan_state(old, now) == "stale" and status_column(old, now) == "interrupted"


def test_status_columns():
    assert status_column(None) == "pending"
    assert status_column({"status": "finished"}) == "done"
    assert status_column({"status": "timeout"}) == "timeout"


def test_resolve_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert runstate.resolve_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:5000")
    assert runstate.resolve_uri() == "http://h:5000"
    assert runstate.resolve_uri("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("uri,shown", [
    ("sqlite:////home/me/work/mlflow.db", "sqlite:///mlflow.db"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("file:///srv/runs/mlruns", "file:///mlruns"),
    ("/home/me/mlruns", "mlruns"),
    ("http://user:secret@mlflow-host:5000/base", "http://mlflow-host:5000/base"),
    ("postgresql://u:pw@db.example.org/mlflow", "postgresql://db.example.org/mlflow"),
])
def test_display_uri_hides_local_paths_and_credentials(uri, shown):
    assert display_uri(uri) == shown


def test_one_module_owns_the_rules():
    """No other module keeps its own copy of these definitions."""
    from pathlib import Path

    import harness

    root = Path(harness.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "runstate.py":
            continue
        text = path.read_text()
        for definition in ("def is_stale", "def pid_alive", "STALE_AFTER_S =",
                           "DEFAULT_URI =", "def resolve_uri", "def resolve_tracking_uri",
                           "MLFLOW_STATUS = {", "_MLFLOW_STATUS = {", "DONE = {", "FAILED = {"):
            assert definition not in text, f"{path.name}: {definition}"
