"""What `harness run`, `status` and `report` say about a suite's runs:
input errors once per dataset and retried once fixed, sweep names kept whole
by `status`, rank_by remembered for `report --experiment` (issue #10 item 4,
#11 items 2, 11, 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

SUITE = """\
name: inputs
seeds: 2
datasets:
  - sklearn: iris
  - fragile: {path}
model: {{name: mlp, hidden: [4]}}
training: {{epochs: 1, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  ce: {{loss: cross_entropy}}
sweep:
  ce: {{training.optimizer.lr: [0.01, 0.1]}}
metrics: [accuracy, log_loss]
task: classification
rank_by: log_loss
"""

#: A source whose file may be missing: a mistake only loading the data shows.
PLUGIN = '''
from harness import UserError, hookimpl


def fragile(path: str):
    """Iris, but only once the marker file ``path`` exists."""
    import os

    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris

    from harness.data import RawDataset

    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    bunch = load_iris()
    return RawDataset("fragile", pd.DataFrame(bunch.data), np.asarray(bunch.target))


@hookimpl
def register_datasets(register):
    register("fragile", fragile)
'''


@pytest.fixture
def fragile(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "harness_fragile.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_fragile")
    return fresh_registry()


def write(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "data" / "marker.csv"
    suite = tmp_path / "inputs.yaml"
    suite.write_text(SUITE.format(path=marker))
    return str(suite), marker


@pytest.mark.slow
def test_input_error_said_once_and_retried_once_fixed(tmp_path, tracking_uri, fragile,
                                                      capsys):
    from harness.tracking import existing_runs

    suite, marker = write(tmp_path)
    assert main(["run", suite]) == 1
    out = capsys.readouterr()
    assert "4 finished" in out.out and "4 failed" in out.out
    said = [ln for ln in out.out.splitlines() if ln.startswith("input error: ")]
    assert said == [f"input error: fragile-{marker}: {marker}: no such file (fix it and run "
                    "again: these runs are retried without --rerun-failed)"]
    # spelled out for the dataset's first failed run only
    assert out.err.count(f"{marker}: no such file") == 1
    assert out.err.count("same as above (input dataset") == 3
    failed = [i for i in existing_runs(tracking_uri, "inputs").values()
              if i["status"] == "failed"]
    assert len(failed) == 4 and {i["failure_kind"] for i in failed} == {"input"}

    # plan and status say so: planned again, and one row for the one cause
    assert main(["plan", suite]) == 0
    assert capsys.readouterr().out.count("run (failed on its input)") == 4
    assert main(["status", suite]) == 1
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()]
    assert [r[:3] for r in rows if r[1:2] == ["failed"]] == [["4", "failed", "UserError:"]]

    marker.parent.mkdir()
    marker.write_text("fixed")
    assert main(["run", suite]) == 0  # no --rerun-failed: the input was the problem
    out = capsys.readouterr().out
    assert "4 to run, 4 already done" in out and "4 finished" in out
    assert "4 of those to run failed earlier on their input" in out

    # the suite-level run remembers rank_by, so a report by experiment ranks by it
    out_dir = tmp_path / "report"
    assert main(["report", "--experiment", "inputs", "--out", str(out_dir)]) == 0
    assert "Metric `test/log_loss` (lower is better)" in (out_dir / "index.md").read_text()

    # status keeps sweep names whole: rich markup would eat "[training...]"
    assert main(["status", suite]) == 0
    text = capsys.readouterr().out
    assert "ce[training.optimizer.lr=0.01]" in text and "ce[training.optimizer.lr=0.1]" in text
    assert main(["status", suite, "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)["methods"]
    assert {m: c["done"] for m, c in methods.items()} == {
        "ce[training.optimizer.lr=0.01]": 4, "ce[training.optimizer.lr=0.1]": 4}


def test_status_table_keeps_names_on_one_line():
    """At 80 columns (a pipe) rich would fold a long sweep name or drop
    columns; `show` widens the console instead."""
    import io
    from collections import Counter

    from rich.console import Console

    from harness.status import STATES, SuiteStatus, needed_width, render

    name = "aldr_kl[loss.lam0=0.1,training.optimizer.lr=0.001]"
    status = SuiteStatus("s", "sqlite:///x.db", {name: Counter(done=2), "ce": Counter()})
    buf = io.StringIO()
    Console(file=buf, width=needed_width(status)).print(render(status))
    lines = buf.getvalue().splitlines()
    header = next(ln for ln in lines if ln.lstrip().startswith("method"))
    assert header.split() == ["method", *STATES]
    assert any(ln.split()[:2] == [name, "2"] for ln in lines)


def test_status_groups_failures_by_cause():
    from harness.status import group_failures

    failures = [("a/m/0", "failed", "E: x"), ("b/m/0", "oom", "E: y"),
                ("a/m/1", "failed", "E: x"), ("a/n/0", "failed", "E: x")]
    assert group_failures(failures) == {("failed", "E: x"): ["a/m/0", "a/m/1", "a/n/0"],
                                        ("oom", "E: y"): ["b/m/0"]}
