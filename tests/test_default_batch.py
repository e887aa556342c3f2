"""Batch mode is the default of ``harness run`` because a run's numbers do not
depend on which runs share its group: a suite run whole and the same suite
run again after half of it was finished (its other runs then train in
smaller groups, or alone) log the same values (float32, CPU, 1e-6).  A model
whose group numbers differ from its numbers alone (the cnn) trains alone by
default, and ``harness plan --groups`` says why."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.options import RunOptions

SUITE = """\
name: default-batch
task: classification
seeds: 2
datasets:
  - sklearn: breast_cancer
model: {name: mlp, hidden: [16, 16]}
training:
  epochs: 5
  batch_size: 64
  optimizer: {name: adam, lr: 0.01}
  early_stopping: {monitor: val/loss, patience: 2}
methods:
  ce: {}
  fast: {training.optimizer.lr: 0.05}
  smooth: {loss: {name: cross_entropy, label_smoothing: 0.1}}
  focal: {loss: {name: focal, gamma: 1.0}, training.optimizer: {name: sgd, lr: 0.05,
                                                                  momentum: 0.9}}
sweep:
  focal: {loss.gamma: [1.0, 3.0]}
metrics: [accuracy, log_loss, f1]
rank_by: accuracy
"""

CNN_SUITE = """\
name: default-batch-cnn
task: classification
seeds: 2
datasets:
  - sklearn: {name: digits, as_image: true}
model: {name: cnn, channels: [4], hidden: 8}
training: {epochs: 1, batch_size: 256, optimizer: {name: adam, lr: 0.01}}
methods:
  ce: {}
metrics: [accuracy]
rank_by: accuracy
"""


def _logged(uri: str, experiment: str) -> dict[str, dict]:
    """run name -> {"group": its harness.group tag, "metrics": every metric's
    full history as [(step, value), ...]}."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        if "harness.run_key" not in run.data.tags:
            continue  # the suite-level report run
        history = {k: sorted((m.step, m.value) for m in client.get_metric_history(
            run.info.run_id, k)) for k in run.data.metrics if not k.startswith("time/")}
        out[run.info.run_name] = {"group": run.data.tags.get("harness.group"),
                                  "status": run.data.tags.get("harness.status"),
                                  "metrics": history}
    return out


def _run(suite, uri, *flags) -> None:
    assert main(["run", str(suite), "--tracking-uri", uri, "-q", *flags]) == 0


@pytest.mark.slow
def test_numbers_do_not_depend_on_which_runs_share_a_group(tmp_path, capsys):
    """Whole: groups of 6 (adam: ce, fast, smooth x 2 seeds) and 4 (sgd focal
    x 2 gammas x 2 seeds).  Then a fresh store where seed 0 and method fast
    finished first: the rest trains as a group of 2 (ce, smooth, seed 1) and
    of 2 (focal, seed 1), and earlier in groups of other sizes and members;
    every logged value of every run equals the whole run's."""
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    whole_uri = f"sqlite:///{tmp_path / 'whole.db'}"
    _run(suite, whole_uri)
    whole = _logged(whole_uri, "default-batch")
    assert len(whole) == 10 and {r["status"] for r in whole.values()} == {"finished"}
    sizes = sorted(int(r["group"].split("/")[-1]) for r in whole.values())
    assert sizes == [4] * 4 + [6] * 6, sizes  # the groups formed

    parts_uri = f"sqlite:///{tmp_path / 'parts.db'}"
    _run(suite, parts_uri, "--only", "*/*/0")
    _run(suite, parts_uri, "--only", "*/fast/*")
    _run(suite, parts_uri)
    parts = _logged(parts_uri, "default-batch")
    assert parts.keys() == whole.keys()
    assert parts["breast_cancer/fast/1"]["group"] is None  # trained alone
    assert parts["breast_cancer/ce/1"]["group"].endswith("/2")
    for name, want in whole.items():
        got = parts[name]
        assert got["metrics"].keys() == want["metrics"].keys(), name
        for key, history in want["metrics"].items():
            assert [s for s, _ in got["metrics"][key]] == [s for s, _ in history], (name, key)
            for (_, a), (_, b) in zip(got["metrics"][key], history):
                assert a == pytest.approx(b, abs=1e-6, rel=1e-6), (name, key)
    capsys.readouterr()


@pytest.mark.slow
def test_a_run_alone_in_the_default_logs_what_it_logs_in_a_group(tmp_path, capsys):
    """The other half of the default's promise: a run trained with
    ``--no-batch`` (alone, the single-run trainer) logs what it logs in its
    default group, float32, 1e-6."""
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    grouped_uri = f"sqlite:///{tmp_path / 'grouped.db'}"
    alone_uri = f"sqlite:///{tmp_path / 'alone.db'}"
    _run(suite, grouped_uri, "--only", "*/*/1")
    _run(suite, alone_uri, "--only", "*/*/1", "--no-batch")
    grouped, alone = _logged(grouped_uri, "default-batch"), _logged(alone_uri, "default-batch")
    assert all(r["group"] for r in grouped.values())
    assert not any(r["group"] for r in alone.values())
    for name, want in alone.items():
        for key, history in want["metrics"].items():
            got = grouped[name]["metrics"][key]
            assert [s for s, _ in got] == [s for s, _ in history], (name, key)
            for (_, a), (_, b) in zip(got, history):
                assert a == pytest.approx(b, abs=1e-6, rel=1e-6), (name, key)
    capsys.readouterr()


def test_cnn_trains_alone_by_default_and_the_plan_says_why(tmp_path, capsys):
    suite = tmp_path / "cnn.yaml"
    suite.write_text(CNN_SUITE)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["plan", str(suite), "--tracking-uri", uri, "--groups"]) == 0
    out = capsys.readouterr().out
    assert "alone (2 runs): model `cnn`: its stacked float32 forward (vmap) rounds " \
           "differently from a run alone; --batch trains it in groups" in out
    assert main(["plan", str(suite), "--tracking-uri", uri, "--batch"]) == 0
    out = capsys.readouterr().out
    assert "2 runs on digits-img: ce" in out and "1 groups (2 runs), 0 runs alone" in out


@pytest.mark.slow
def test_auto_on_image_data_trains_alone_unless_batch(tmp_path, capsys):
    """``auto`` is an mlp on the plan's stand-in shape and a cnn on digits: the
    run-time check trains its runs alone by default and stacks them with
    ``--batch`` (their harness.group tag names the group they trained in)."""
    suite = tmp_path / "auto.yaml"
    suite.write_text(CNN_SUITE.replace("name: cnn, channels: [4], hidden: 8",
                                       "name: auto, channels: [4], hidden: [8]"))
    numbers, groups = {}, {}
    for mode, flags in (("default", []), ("batch", ["--batch"]), ("alone", ["--no-batch"])):
        uri = f"sqlite:///{tmp_path / mode}.db"
        _run(suite, uri, *flags)
        logged = _logged(uri, "default-batch-cnn")
        numbers[mode] = {n: r["metrics"] for n, r in logged.items()}
        groups[mode] = sorted(str(r["group"]).split(" ")[-1] for r in logged.values())
    assert numbers["default"] == numbers["alone"]  # bit for bit: the same trainer
    assert groups["batch"] == ["1/2", "2/2"]
    capsys.readouterr()


def test_batch_flags(tmp_path, capsys):
    assert RunOptions().batch is True and RunOptions().batch_all is False
    assert RunOptions(batch=False, max_group=4).batch is True
    assert RunOptions(batch_all=True).batch is True
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    for flag in ("--batch", "--max-group=2"):
        assert main(["run", str(suite), "--no-batch", flag]) == 2
        err = capsys.readouterr().err
        assert f"--no-batch trains every run alone: it cannot go with {flag.split('=')[0]}" \
            in err
    assert main(["plan", str(suite), "--no-batch", "--groups", "--tracking-uri",
                 f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert "batch mode off (--no-batch): every run trains alone" in capsys.readouterr().out
