"""`harness run` end to end on tiny data: MLflow schema, resume, failures,
divergence, interruption, reproducibility."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cli import main

SUITE = """\
name: {name}
seeds: 2
datasets:
  - sklearn: iris
model: {{name: mlp, hidden: [16]}}
training: {{epochs: 3, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
{methods}
metrics: [accuracy, log_loss]
task: classification
"""


def write(tmp_path, methods: str, name: str = "tiny"):
    f = tmp_path / f"{name}.yaml"
    f.write_text(SUITE.format(name=name, methods=textwrap.indent(methods, "  ")))
    return str(f)


def runs_of(uri, experiment):
    import mlflow

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment], output_format="pandas")
    # the suite-level run (report artifact) has no run key
    return df[df["tags.harness.run_key"].notna()].reset_index(drop=True)


def test_run_logs_schema_and_resume_skips(tmp_path, tracking_uri, capsys):
    suite = write(tmp_path, "ce: {loss: cross_entropy}\nfocal: {loss: {name: focal, gamma: 2}}")
    assert main(["run", suite]) == 0
    first = capsys.readouterr().out
    assert "4 finished" in first and "test/accuracy" in first

    df = runs_of(tracking_uri, "tiny")
    assert len(df) == 4 and set(df["status"]) == {"FINISHED"}
    assert df["tags.harness.run_key"].is_unique
    for tag in ("suite", "dataset", "method", "seed", "task", "status", "version",
                "plugin.losses.cross_entropy", "plugin.tasks.classification"):
        assert f"tags.harness.{tag}" in df.columns, tag
    assert set(df["tags.harness.status"]) == {"finished"}
    assert set(df["tags.harness.method"]) == {"ce", "focal"}
    assert "params.loss.gamma" in df.columns and "params.training.optimizer.lr" in df.columns
    for m in ("test/accuracy", "test/log_loss", "time/train_s", "train/loss", "val/accuracy"):
        assert f"metrics.{m}" in df.columns, m

    from mlflow.tracking import MlflowClient

    cl = MlflowClient(tracking_uri)
    run_id = df["run_id"].iloc[0]
    assert [m.step for m in cl.get_metric_history(run_id, "val/loss")] == [0, 1, 2]
    assert "config.yaml" in [a.path for a in cl.list_artifacts(run_id)]

    assert main(["run", suite]) == 0
    second = capsys.readouterr().out
    assert "nothing to train" in second and "4 skipped" in second
    assert len(runs_of(tracking_uri, "tiny")) == 4


def test_same_seed_same_numbers(tmp_path, tracking_uri, capsys):
    suite = write(tmp_path, "ce: {loss: cross_entropy}")
    assert main(["run", suite]) == 0
    before = runs_of(tracking_uri, "tiny").set_index("tags.harness.run_key")
    assert main(["run", suite, "--force"]) == 0
    after = runs_of(tracking_uri, "tiny")
    after = after.sort_values("start_time").groupby("tags.harness.run_key").last()
    for key in before.index:
        assert after.loc[key, "metrics.test/log_loss"] == before.loc[key, "metrics.test/log_loss"]


def test_failure_recorded_suite_goes_on(tmp_path, tracking_uri, capsys, test_plugin):
    suite = write(tmp_path, "ce: {loss: cross_entropy}\nbad: {loss: {name: boom, message: kaput}}")
    assert main(["run", suite]) == 1
    out = capsys.readouterr()
    assert "2 finished" in out.out and "2 failed" in out.out
    assert "RuntimeError: kaput" in out.err
    df = runs_of(tracking_uri, "tiny")
    bad = df[df["tags.harness.method"] == "bad"]
    assert set(bad["tags.harness.status"]) == {"failed"} and set(bad["status"]) == {"FAILED"}
    assert set(bad["tags.harness.error"]) == {"RuntimeError: kaput"}

    from mlflow.tracking import MlflowClient

    arts = [a.path for a in MlflowClient(tracking_uri).list_artifacts(bad["run_id"].iloc[0])]
    assert "traceback.txt" in arts
    # failed runs are not retried unless asked
    assert main(["run", suite]) == 1
    assert "2 failed earlier" in capsys.readouterr().out
    assert len(runs_of(tracking_uri, "tiny")) == 4
    assert main(["run", suite, "--rerun-failed"]) == 1
    assert len(runs_of(tracking_uri, "tiny")) == 6


def test_divergence_is_a_status_not_a_crash(tmp_path, tracking_uri, capsys, test_plugin):
    suite = write(tmp_path, "nan: {loss: nan_loss}")
    assert main(["run", suite]) == 0
    df = runs_of(tracking_uri, "tiny")
    assert set(df["tags.harness.status"]) == {"diverged"}
    assert df["tags.harness.error"].str.contains("epoch 0").all()


def test_interrupt_keeps_finished_runs_and_resumes(tmp_path, tracking_uri, capsys,
                                                   test_plugin, monkeypatch):
    suite = write(tmp_path, "ce: {loss: cross_entropy}")
    monkeypatch.setenv("HARNESS_TEST_INTERRUPT_RUN", "iris/ce/1")
    # runs alone: Ctrl-C in a group (the default) interrupts every run of it
    assert main(["run", suite, "--no-batch"]) == 130
    df = runs_of(tracking_uri, "tiny")
    assert sorted(df["tags.harness.status"]) == ["finished", "interrupted"]
    monkeypatch.delenv("HARNESS_TEST_INTERRUPT_RUN")
    assert main(["run", suite]) == 0
    assert "1 to run, 1 already done" in capsys.readouterr().out
    df = runs_of(tracking_uri, "tiny")
    assert sorted(df["tags.harness.status"]) == ["finished", "finished", "interrupted"]


ROOT = Path(__file__).parent.parent
SUITES = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))


def readme_run_counts() -> dict[str, int]:
    """suite -> run count, from README's "Suites shipped" table (its rows
    start with | `name.yaml` | and the last cell starts with the count)."""
    import re

    rows = re.findall(r"^\| `([\w-]+)\.yaml` \|.*\| (\d+)[^|]*\|$",
                      (ROOT / "README.md").read_text(), flags=re.M)
    return {name: int(n) for name, n in rows}


SHIPPED = readme_run_counts()


def test_readme_states_run_counts():
    assert SHIPPED.get("quickstart") and set(SHIPPED) <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_shipped_suites_validate_and_count(name, tmp_path, capsys):
    """A shipped suite that no longer validates (a renamed parameter, a typo in
    an edit) fails here, not on a user's machine; planning never fetches data."""
    suite = ROOT / "suites" / f"{name}.yaml"
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    if name in SHIPPED:
        assert f"{SHIPPED[name]} runs: {SHIPPED[name]} to run" in out.out


def test_unavailable_dataset_fails_its_runs_fast(tmp_path, tracking_uri, capsys, test_plugin):
    import harness_testplugin

    from harness.data import clear_cache

    clear_cache()
    harness_testplugin.FETCHES.clear()
    suite = write(tmp_path, "ce: {loss: cross_entropy}\nfocal: {loss: focal}")
    text = open(suite).read().replace("  - sklearn: iris\n",
                                      "  - sklearn: iris\n  - offline: remote\n")
    open(suite, "w").write(text)
    assert main(["run", suite]) == 1
    out = capsys.readouterr()
    assert "4 finished" in out.out and "4 failed" in out.out
    # said once for the dataset, not once per run
    lines = [ln for ln in out.out.splitlines() if ln.startswith("unavailable: ")]
    assert lines == [
        "unavailable: offline-remote: offline dataset remote is unavailable: no network"]
    assert harness_testplugin.FETCHES == ["remote"]  # one attempt for 4 runs
    df = runs_of(tracking_uri, "tiny")
    failed = df[df["tags.harness.status"] == "failed"]
    assert len(failed) == 4
    assert set(failed["tags.harness.error"]) == {
        "DatasetUnavailable: offline dataset remote is unavailable: no network"}
