"""A report of a suite file answers for the suite as it is now (issue 24).

The new user's path, on the toy task of tests/plugins/harness_toytask.py:
run a suite, change one method's parameter (same suite and method names),
rerun that method on one dataset with ``--only``, and report.  The runs of
the old configuration must not count, the report must say how many it left
out, and every planned cell without a result must be listed with the state
of its runs -- in ``harness status``'s words, a dead process's run
``interrupted`` in both.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from harness.cli import main

SUITE = """\
name: toy
task: toy_signal
seeds: 2
datasets:
  - sine: 64
  - sine: {{n: 48, periods: 3.0}}
    label: sine-3
noise: 0.3
methods:
  raw: {{smoother: identity}}
  smooth: {{smoother: {{name: moving_average, width: {width}}}}}
metrics: [squared_error]
rank_by: squared_error
"""


@pytest.fixture
def toy(monkeypatch, fresh_registry):
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_toytask")
    return fresh_registry()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leave_running(uri: str, experiment: str, spec) -> None:
    """What a killed ``harness run`` leaves: a RUNNING run of ``spec`` whose
    process is gone (its heartbeat is fresh, so only the pid tells)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    tags = {"harness.suite": spec.suite, "harness.run_key": spec.run_key,
            "harness.dataset": spec.dataset_label, "harness.method": spec.method,
            "harness.seed": str(spec.seed), "harness.task": spec.task,
            "harness.status": "running", "harness.pid": f"{socket.gethostname()}:{_dead_pid()}",
            "harness.heartbeat": str(time.time())}
    client.create_run(exp, run_name=spec.run_name, tags=tags)


@pytest.mark.slow
def test_report_counts_the_current_plan_and_says_what_is_missing(tmp_path, tracking_uri, toy,
                                                                  capsys):
    from harness.plan import expand_suite
    from harness.report import build_report
    from harness.status import collect
    from harness.suite import load_suite

    suite = tmp_path / "toy.yaml"
    suite.write_text(SUITE.format(width=5))
    assert main(["run", str(suite)]) == 0  # 2 datasets x 2 methods x 2 seeds
    # the same method name with another parameter: a width longer than the
    # signal fails every run of it
    suite.write_text(SUITE.format(width=100))
    assert main(["run", str(suite), "--only", "sine-64/smooth/*"]) == 1
    # a killed run of the new configuration on the other dataset
    plan = {s.run_name: s for s in expand_suite(load_suite(str(suite), toy))}
    _leave_running(tracking_uri, "toy", plan["sine-3/smooth/0"])
    capsys.readouterr()

    out = build_report(str(suite), out=tmp_path / "report", formats=["md", "csv"])
    md = (out / "index.md").read_text()
    # 4 raw runs done; smooth (new width): 2 failed, 1 interrupted, 1 pending
    assert "# Leaderboard: toy (4 of 8 runs: partial)" in md
    assert "**Leaderboard on test/squared_error (4 of 8 runs: partial)**" in md
    assert "4 run(s) of earlier configurations ignored; `--include-stale` to show them." in md
    # the dead process's run: interrupted, as `harness status` calls it
    assert ", 1 interrupted." in md and "1 running" not in md
    assert "| interrupted | process died while running |" in " ".join(md.split())
    # every planned cell without a result, with its reason
    assert "**2 missing cell(s)**" in md
    assert "sine-3: smooth (1 interrupted, 1 pending)" in md
    assert "sine-64: smooth (2 failed)" in md
    assert "missing (2 failed)" in md and "missing (1 interrupted, 1 pending)" in md
    # the old width's numbers are nowhere: smooth has no result to rank
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.method) == ["raw"]
    assert "Methods without any result, left out of every cross-dataset statistic: " \
           "`smooth`" in md

    # `harness status` on the same file says the same, in the same words
    status = collect(str(suite), tracking_uri, registry=toy)
    assert dict(status.methods["smooth"]) == {"failed": 2, "interrupted": 1, "pending": 1}
    assert dict(status.methods["raw"]) == {"done": 4}

    # --include-stale pools the old runs back in, and says so
    stale = build_report(str(suite), out=tmp_path / "stale", formats=["md", "csv"],
                         include_stale=True)
    md = (stale / "index.md").read_text()
    assert "4 run(s) of earlier configurations included (`--include-stale`)" in md
    assert set(pd.read_csv(stale / "leaderboard.csv").method) == {"raw", "smooth"}

    # the same store by experiment name: everything, said out loud
    by_name = build_report("toy", out=tmp_path / "by-name", formats=["md"])
    assert "Report of MLflow experiment `toy`: every run in it counts" in (
        by_name / "index.md").read_text()

    # the CLI: the flag exists and the help lists the formats
    assert main(["report", str(suite), "--include-stale", "--format", "csv",
                 "--out", str(tmp_path / "cli")]) == 0
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--include-stale" in help_text and "md, html, latex, csv" in help_text


def test_a_plan_nothing_of_which_has_run_says_so(tmp_path, tracking_uri, toy):
    from harness.errors import UserError
    from harness.report import build_report

    suite = tmp_path / "toy.yaml"
    suite.write_text(SUITE.format(width=5))
    assert main(["run", str(suite), "--only", "sine-64/raw/0"]) == 0
    suite.write_text(textwrap.dedent(SUITE.format(width=5)).replace("noise: 0.3", "noise: 0.5"))
    with pytest.raises(UserError, match=r"none of the 8 planned runs of .*toy.yaml .*\(1 run\(s\) "
                                        r"of earlier configurations ignored"):
        build_report(str(suite), out=tmp_path / "r")


def test_a_suite_without_rank_by_reports_by_its_first_metric(tmp_path, tracking_uri, toy,
                                                              capsys):
    """``rank_by`` defaults to the first metric: the report at the end of
    ``harness run`` and ``harness report suite.yaml`` rank by it (both
    failed with "no metric to rank by" when the key was left out)."""
    suite = tmp_path / "toy.yaml"
    suite.write_text(SUITE.format(width=5).replace("rank_by: squared_error\n", ""))
    assert main(["run", str(suite)]) == 0
    out = capsys.readouterr()
    assert "report not built" not in out.err
    assert "test/squared_error (lower is better) over finished runs" in out.out
    assert main(["report", str(suite), "--out", str(tmp_path / "r")]) == 0
    assert "Metric `test/squared_error`" in (tmp_path / "r" / "index.md").read_text()
