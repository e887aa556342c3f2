"""Batch mode end to end: grouping, reasons to train alone, and a batched
suite logging what the unbatched suite logs (float64, 1e-6)."""

from __future__ import annotations

import pytest

from harness.groups import group_runs
from harness.options import RunOptions
from harness.plugins import get_registry
from harness.runner import make_plan, run_plan
from harness.worker import WorkItem, execute_item


def _item(specs, writer=True) -> WorkItem:
    return WorkItem([s.to_dict() for s in specs], writer=writer)

SUITE = """\
name: batched
seeds: 2
datasets:
  - sklearn: breast_cancer
model: {{name: {model}, hidden: [8]}}
training:
  epochs: 4
  batch_size: 64
  optimizer: {{name: adam, lr: 0.01}}
  early_stopping: {{monitor: val/accuracy, patience: 1}}
methods:
  ce: {{}}
  fast: {{training.optimizer.lr: 0.05}}
  focal: {{loss: {{name: focal, gamma: 1.0}}, training.optimizer: {{name: sgd, lr: 0.05}}}}
  sam: {{training.optimizer: {{name: sam, base: adam}}}}
sweep:
  focal: {{loss.gamma: [1.0, 3.0]}}
metrics: [accuracy, log_loss]
task: classification
"""


@pytest.fixture
def batch_plugin(monkeypatch, fresh_registry):
    """The float64 mlp of tests/plugins/harness_batchplugin.py."""
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_batchplugin")
    return fresh_registry()


def suite_file(tmp_path, model="mlp"):
    path = tmp_path / "batched.yaml"
    path.write_text(SUITE.format(model=model))
    return str(path)


def test_groups_and_reasons(tmp_path):
    plan = make_plan(suite_file(tmp_path), f"sqlite:///{tmp_path / 'm.db'}")
    grouping = group_runs(plan.todo, get_registry())
    names = [sorted({s.method for s in g}) for g in grouping.groups]
    # adam runs (two lrs, two seeds) share a group; focal (sgd) points another
    assert sorted(names) == [["ce", "fast"], ["focal[loss.gamma=1.0]", "focal[loss.gamma=3.0]"]]
    assert sorted(len(g) for g in grouping.groups) == [4, 4]
    sam = [s for s in plan.todo if s.method == "sam"]
    assert [grouping.alone[s.run_key] for s in sam] == ["scheme `sam` is not batchable"] * 2
    assert sum(len(i) for i in grouping.items) == len(plan.todo) == 10

    small = group_runs(plan.todo, get_registry(), max_group=3)
    assert sorted(len(g) for g in small.groups) == [3, 3]
    assert sum(v == "no other run to train with" for v in small.alone.values()) == 2
    with pytest.raises(ValueError):
        group_runs(plan.todo, get_registry(), max_group=0)


def _logged(uri):
    """run_key -> (status, params, harness tags, metric histories, group tag)
    of the runs not interrupted."""
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("batched")
    out = {}
    skip = {"harness.pid", "harness.heartbeat", "harness.group"}
    for run in cl.search_runs([exp.experiment_id]):
        t = run.data.tags
        if "harness.run_key" not in t or t.get("harness.status") == "interrupted":
            continue
        hist = {k: [(m.step, m.value) for m in cl.get_metric_history(run.info.run_id, k)]
                for k in run.data.metrics if not k.startswith("time/")}
        tags = {k: v for k, v in t.items() if k.startswith("harness.") and k not in skip}
        out[t["harness.run_key"]] = (run.info.status, run.data.params, tags, hist,
                                     t.get("harness.group"))
    return out


@pytest.mark.slow
def test_batched_suite_logs_what_unbatched_logs(tmp_path, batch_plugin, monkeypatch):
    """Same runs, tags, params and every metric at every step to 1e-6."""
    suite = suite_file(tmp_path, model="mlp64")
    alone_uri, batch_uri = (f"sqlite:///{tmp_path / n}" for n in ("alone.db", "batch.db"))
    plan = make_plan(suite, alone_uri)
    counts = run_plan(plan, RunOptions(tracking_uri=alone_uri, batch=False))
    assert counts["finished"] == 10

    from harness.groups import INEXACT_ENV
    from harness_plugins.classification import batched

    # mlp64 goes through vmap: grouped only as --batch groups it
    monkeypatch.setenv(INEXACT_ENV, "1")
    stacked = []
    real = batched.train_group
    monkeypatch.setattr(batched, "train_group",
                        lambda ctxs, *a, **k: stacked.append(len(ctxs)) or real(ctxs, *a, **k))
    plan = make_plan(suite, batch_uri)
    grouping = group_runs(plan.todo, get_registry(), inexact=True)
    outcomes = [o for item in grouping.items
                for o in execute_item(_item(item), batch_uri)]
    assert [o.status for o in outcomes] == ["finished"] * 10

    alone, batched = _logged(alone_uri), _logged(batch_uri)
    assert alone.keys() == batched.keys() and len(alone) == 10
    grouped = 0
    for key, (status, params, tags, hist, _) in alone.items():
        b_status, b_params, b_tags, b_hist, group = batched[key]
        grouped += group is not None
        assert (b_status, b_params, b_tags) == (status, params, tags)
        assert b_hist.keys() == hist.keys()
        for name, values in hist.items():
            assert [s for s, _ in b_hist[name]] == [s for s, _ in values], name
            assert [v for _, v in b_hist[name]] == pytest.approx([v for _, v in values],
                                                                 rel=1e-6, abs=1e-6), name
    assert grouped == 8  # the sam runs trained alone, untagged
    assert stacked == [4, 4]

    # the store's history: groups from the batched shares, sam from its runs
    from harness.estimate import estimate, history

    hist = history(batch_uri, ("model", "training.epochs"))
    (sig, known), = hist.items()
    assert len(known["batched"]) == 8 and len(known["alone"]) == 2
    est = estimate(grouping.items, batch_uri)
    import statistics

    assert est.seconds == pytest.approx(8 * statistics.median(known["batched"])
                                        + 2 * statistics.median(known["alone"]))
    assert not est.unknown and est.upper_bound_groups == 0


def test_plan_lines_and_lost_items(tmp_path):
    from harness.groups import describe
    from harness.worker import Lost, lost_outcomes

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    plan = make_plan(suite_file(tmp_path), uri)
    lines = describe(group_runs(plan.todo, get_registry()))
    assert sum(line.startswith("group ") and ": 4 runs on breast_cancer: " in line
               for line in lines) == 2
    assert any(line.startswith("alone (2 runs): scheme `sam` is not batchable: ")
               for line in lines)
    assert lines[-1] == "4 work items: 2 groups (8 runs), 2 runs alone"

    # a worker that died with a group: every run of it is interrupted, retryable
    item = _item(plan.todo[:2])
    out = lost_outcomes(Lost(item, "worker died"), uri, "batched")
    assert [(o.run_key, o.status, o.retryable) for o in out] == \
        [(key, "interrupted", True) for key in item.run_keys]


def test_estimate_from_history(tmp_path, monkeypatch):
    """Groups are estimated from batched shares, runs alone from unbatched
    runs, with the same dataset, model and epochs; the rest is named."""
    from harness import estimate as est_mod

    plan = make_plan(suite_file(tmp_path), f"sqlite:///{tmp_path / 'm.db'}")
    items = group_runs(plan.todo, get_registry()).items
    spec = plan.todo[0]
    sig = est_mod.signature(spec.dataset_label, spec.config, ("model", "training.epochs"))
    assert sig == ("breast_cancer", (("model.hidden", "[8]"), ("model.name", "mlp"),
                                     ("training.epochs", "4")))
    monkeypatch.setattr(est_mod, "history", lambda uri, keys: {
        sig: {"alone": [10.0, 30.0, 20.0], "batched": [1.0, 3.0]}})
    est = est_mod.estimate(items, None)
    # two groups of 4 at 2 s per run, two sam runs alone at 20 s
    assert est.groups_s == [8.0, 8.0] and est.alone_s == 40.0 and est.seconds == 56.0
    assert est.unknown == [] and est.upper_bound_groups == 0

    monkeypatch.setattr(est_mod, "history",
                        lambda uri, keys: {sig: {"alone": [5.0], "batched": []}})
    est = est_mod.estimate(items, None)
    assert est.seconds == 50.0 and est.upper_bound_groups == 2
    monkeypatch.setattr(est_mod, "history", lambda uri, keys: {})
    est = est_mod.estimate(items, None)
    assert est.seconds == 0 and len(est.unknown) == 10
    assert est_mod.describe(est, 10) == ["estimated training time: unknown: no run in the "
                                         "store has the same dataset and model, "
                                         "training.epochs as any of these 10"]
    est.unknown = est.unknown[:4]
    assert est_mod.describe(est, 10)[1].startswith("no history for 4 of 10 runs (same ")


@pytest.mark.slow
def test_out_of_memory_group_retrains_in_halves(tmp_path, batch_plugin):
    """A group too big for the device: its runs are closed as interrupted and
    the halves train as groups of their own; resume sees them finished."""
    from harness.tracking import existing_runs

    path = tmp_path / "oom.yaml"
    path.write_text(SUITE.format(model="mlp").replace("task: classification",
                                                       "task: small_memory")
                    .replace("epochs: 4", "epochs: 2"))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    plan = make_plan(str(path), uri, only="*/fast/*")
    plan.todo += make_plan(str(path), uri, only="*/ce/*").todo
    items = group_runs(plan.todo, get_registry()).items
    assert [len(i) for i in items] == [4]
    outcomes = execute_item(_item(items[0]), uri)
    assert [o.status for o in outcomes] == ["finished"] * 4
    assert [o.run_key for o in outcomes] == [s.run_key for s in items[0]]
    runs = _logged(uri)
    assert len(runs) == 4 and {v[0] for v in runs.values()} == {"FINISHED"}
    assert {v["status"] for v in existing_runs(uri, "batched").values()} == {"finished"}
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("batched")
    killed = cl.search_runs([exp.experiment_id], "tags.`harness.status` = 'interrupted'")
    assert len(killed) == 4
    assert "ran out of memory" in killed[0].data.tags["harness.error"]
    assert sorted(r.data.tags["harness.group"][-3:] for r in cl.search_runs(
        [exp.experiment_id], "tags.`harness.status` = 'finished'")) == ["1/2", "1/2", "2/2", "2/2"]


def test_models_that_cannot_stack_train_alone(tmp_path):
    """Dropout is seen at plan time; batch norm (the cnn) stacks with
    ``--batch`` (``inexact``), and trains alone by default."""
    path = tmp_path / "cnn.yaml"
    path.write_text(SUITE.replace("sklearn: breast_cancer", "sklearn: {{name: digits, "
                                  "as_image: true}}").format(model="cnn")
                    .replace("hidden: [8]", "channels: [4]"))
    plan = make_plan(str(path), f"sqlite:///{tmp_path / 'm.db'}", only="*/ce/*")
    grouping = group_runs(plan.todo, get_registry(), inexact=True)
    assert [len(g) for g in grouping.groups] == [2] and not grouping.alone
    assert set(group_runs(plan.todo, get_registry()).alone.values()) == {
        "model `cnn`: its stacked float32 forward (vmap) rounds differently from a run "
        "alone; --batch trains it in groups"}
    path.write_text(SUITE.format(model="mlp").replace("hidden: [8]", "hidden: [8], "
                                                      "dropout: 0.5"))
    plan = make_plan(str(path), f"sqlite:///{tmp_path / 'm.db'}", only="*/ce/*")
    assert set(group_runs(plan.todo, get_registry()).alone.values()) == {
        "model `mlp`: the model uses dropout, which is not batchable"}


@pytest.mark.slow
def test_cli_batch_plan_run_resume_jobs(tmp_path, tracking_uri, capsys):
    """`harness plan --batch` shows groups and reasons; `harness run --batch`
    resumes per run and works with worker processes."""
    from harness.cli import main

    suite = suite_file(tmp_path)
    assert main(["plan", suite, "--batch"]) == 0
    out = capsys.readouterr().out
    assert "batch mode:" in out and "alone (2 runs): scheme `sam` is not batchable" in out
    assert "estimated training time: unknown" in out
    assert main(["run", suite, "--batch", "--only", "*/ce/*"]) == 0
    assert "2 finished" in capsys.readouterr().out
    assert main(["run", suite, "--max-group", "3", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "8 finished" in out and "2 already done" in out
    logged = _logged(tracking_uri)
    assert len(logged) == 10 and {v[0] for v in logged.values()} == {"FINISHED"}
    groups = [v[4] for v in logged.values() if v[4]]
    # ce 2 and fast 2 and focal 3 in groups; the 4th focal run and sam alone
    assert len(groups) == 7
    assert main(["run", suite, "--batch"]) == 0
    assert "nothing to train" in capsys.readouterr().out


@pytest.mark.slow
def test_group_failing_on_infrastructure_is_retried_run_by_run(tmp_path, tracking_uri,
                                                               monkeypatch, fresh_registry):
    """A CUDA error in a group fails its runs as retryable; with --retries
    each is trained again alone (attempt 2) and finishes."""
    from mlflow.tracking import MlflowClient

    from harness.cli import main

    monkeypatch.setenv("HARNESS_PLUGINS", "harness_testplugin")
    monkeypatch.setenv("HARNESS_TEST_CUDA_ERROR_ONCE", f"breast_cancer/ce/0@{tmp_path / 'm'}")
    fresh_registry()
    suite = suite_file(tmp_path)
    assert main(["run", suite, "--batch", "--only", "*/[cf][ea]*/*", "--retries", "1"]) == 0
    cl = MlflowClient(tracking_uri)
    attempts: dict[str, list] = {}
    for r in cl.search_runs([cl.get_experiment_by_name("batched").experiment_id],
                            order_by=["attributes.start_time ASC"]):
        t = r.data.tags
        if "harness.run_key" in t:
            attempts.setdefault(r.info.run_name, []).append(
                (t["harness.attempt"], t["harness.status"], "harness.group" in t))
    # the four runs trained as one group; the CUDA error failed all of them
    assert attempts == {name: [("1", "failed", True), ("2", "finished", False)]
                        for name in ("breast_cancer/ce/0", "breast_cancer/ce/1",
                                     "breast_cancer/fast/0", "breast_cancer/fast/1")}
