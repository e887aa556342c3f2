"""The nas task: suite validation (exit 2 before any run), planning of the
shipped NAS suites, and an end-to-end run whose ground truth is shared."""

from __future__ import annotations

import textwrap

import pytest

from harness.cli import main

SUITE = """\
name: nas-t
task: nas
seeds: 1
datasets:
  - sklearn: {name: digits, as_image: true}
    split: {val: 0.2, test: 0.2}
space: {name: tiny, channels: 4, stages: 1, ops: [skip, conv3x3]}
search_training: {epochs: 2, batch_size: 128}
search: {name: darts, alpha_lr: 0.05}
selector: magnitude
evaluate:
  training: {epochs: 2, batch_size: 128, optimizer: {name: adam, lr: 0.01}}
methods:
  darts: {}
  pt: {selector: {name: perturbation, tune_epochs: 1}}
  random: {search: none, selector: random}
metrics: [accuracy, regret, arch_rank]
rank_by: accuracy
"""


def plan(tmp_path, capsys, text: str) -> tuple[int, str]:
    suite = tmp_path / "nas.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr().err


def test_suite_plans(tmp_path, capsys):
    code, err = plan(tmp_path, capsys, SUITE)
    assert code == 0, err


@pytest.mark.parametrize("old, new, words", [
    ("ops: [skip, conv3x3]", "ops: [skip, conv5x5]",
     ["space", "unknown operation 'conv5x5'"]),
    ("random: {search: none, selector: random}", "random: {search: none, selector: magnitude}",
     ["methods.random.selector", "'magnitude' needs a supernet", "search 'none' trains none"]),
    ("random: {search: none, selector: random}",
     "random: {search: none, selector: {name: perturbation}}",
     ["methods.random.selector", "'perturbation' needs a supernet"]),
    ("random: {search: none, selector: random}",
     "random: {search: none, selector: {name: fixed, genotype: [skip, skip]}}",
     ["methods.random.selector.genotype", "genotype has 2 edges; space 'tiny' has 3"]),
    ("random: {search: none, selector: random}",
     "random: {search: none, selector: {name: fixed, genotype: [skip, skip, avgpool3]}}",
     ["methods.random.selector.genotype", "operation 'avgpool3' is not in space 'tiny'"]),
    ("search: {name: darts, alpha_lr: 0.05}", "search: {name: dartz}",
     ["search", "unknown search_strateg", "did you mean 'darts'"]),
    ("search: {name: darts, alpha_lr: 0.05}", "search: {name: darts, order: 3}", ["search.order"]),
    ("selector: magnitude", "selector: magnitud", ["selector", "did you mean 'magnitude'"]),
    ("space: {name: tiny, channels: 4, stages: 1, ops: [skip, conv3x3]}",
     "space: {name: nb201, channels: 4}\nground_truth: true",
     ["ground_truth", "15625 genotypes"]),
    ("selector: magnitude", "selector: magnitude\nground_truth: false\nground_truth_sample: 4",
     ["ground_truth_sample = 4", "applies to a trained ground truth"]),
    ("selector: magnitude", "selector: magnitude\nground_truth_sample: 2",
     ["ground_truth_sample = 2", "greater than or equal to 3"]),
    ("search_training: {epochs: 2, batch_size: 128}", "search_training: {epoch: 2}",
     ["search_training.epoch", "unknown key 'epoch'"]),
    ("pt: {selector: {name: perturbation, tune_epochs: 1}}",
     "pt: {selector: {name: perturbation, tune_lr_factor: 0}}",
     ["methods.pt.selector.tune_lr_factor", "greater than 0"]),
    ("pt: {selector: {name: perturbation, tune_epochs: 1}}",
     "pt: {selector: {name: perturbation, score_split: test}}",
     ["methods.pt.selector.score_split"]),
    # found by fuzzing: a huge node count hung planning (the space listed its edges)
    ("ops: [skip, conv3x3]}", "ops: [skip, conv3x3], nodes: 1000000000000000000000000000000}",
     ["space.nodes", "<= 16"]),
    # found by fuzzing: evaluate.training.batch_size took any number (-1, nan, inf)
    ("training: {epochs: 2, batch_size: 128,", "training: {epochs: 2, batch_size: -1,",
     ["evaluate.training.batch_size = -1", ">= 1"]),
    ("training: {epochs: 2, batch_size: 128,", "training: {epochs: 2, batch_size: .nan,",
     ["evaluate.training.batch_size = nan", "(0, 1]"]),
    # found by fuzzing: a bad key of the published table read
    # "ground_truth = {...}: Input should be 'auto'"
    ("selector: magnitude", "selector: magnitude\nground_truth: {nb201: x.pth, epochs: 13}",
     ["ground_truth.epochs = 13", "200 or 12"]),
    ("selector: magnitude", "selector: magnitude\nground_truth: {nb201: x.pth, epoch: 12}",
     ["ground_truth.epoch = 12", "unknown key 'epoch'", "nb201, dataset, epochs"]),
    # found by fuzzing: regret exists only after the search, so as the evaluate
    # monitor it planned and failed the run at its first evaluate epoch
    ("training: {epochs: 2, batch_size: 128,",
     "training: {early_stopping: {monitor: val/regret}, epochs: 2, batch_size: 128,",
     ["evaluate.training.early_stopping.monitor = 'val/regret'", "logged every epoch",
      "val/loss, val/accuracy"]),
])
def test_bad_input_exits_2_at_validation(tmp_path, capsys, old, new, words):
    assert old in SUITE
    code, err = plan(tmp_path, capsys, SUITE.replace(old, new))
    assert code == 2, err
    assert err.count("\n") == 1, err  # one line, no traceback
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("suite, runs", [("suites/nas.yaml", 18), ("suites/nas_nb201.yaml", 18),
                                         ("suites/nas_skip_trap.yaml", 18)])
def test_shipped_nas_suites_validate_and_plan(suite, runs, tmp_path, capsys):
    from pathlib import Path

    path = Path(__file__).parent.parent / suite
    assert main(["plan", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 0
    out = capsys.readouterr().out
    assert f"{runs} runs" in out, out


@pytest.mark.slow
def test_end_to_end_ground_truth_shared_and_consistent(tmp_path, tracking_uri, capsys):
    suite = tmp_path / "nas.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite)]) == 0, capsys.readouterr().err
    import mlflow
    from mlflow.tracking import MlflowClient

    df = mlflow.search_runs(experiment_names=["nas-t"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert len(df) == 3
    # one run trained the 8 genotypes; the other two downloaded the table
    assert sorted(df["metrics.ground_truth/reused"]) == [0.0, 1.0, 1.0]
    assert df["tags.harness.shared.nas_ground_truth"].nunique() == 1
    assert (df.loc[df["metrics.ground_truth/reused"] == 1.0, "metrics.time/ground_truth_s"]
            == 0).all()
    client = MlflowClient(tracking_uri)
    builder = df.index[df["metrics.ground_truth/reused"] == 0.0][0]
    import numpy as np

    with np.load(client.download_artifacts(df.loc[builder, "run_id"],
                                           "shared/nas_ground_truth.npz", str(tmp_path))) as t:
        test_acc = t["test_accuracy"]
    assert test_acc.shape == (8,)
    from harness_plugins.nas.spaces import tiny

    space = tiny(channels=4, stages=1, ops=["skip", "conv3x3"])
    for method, row in df.iterrows():
        genotype = space.parse(row["params.nas.genotype"])
        acc = test_acc[space.index(genotype)]
        # the evaluate phase trains the genotype with the table's budget and seeds
        assert row["metrics.test/accuracy"] == pytest.approx(acc, abs=1e-9), method
        assert row["metrics.test/regret"] == pytest.approx(test_acc.max() - acc, abs=1e-9)
        assert row["metrics.test/arch_rank"] == 1 + np.sum(test_acc > acc)
        for key in ("time/search_s", "time/select_s", "time/evaluate_s",
                    "evaluate/val/loss"):
            assert np.isfinite(row[f"metrics.{key}"]), (method, key)
    # the method's cost includes its search, not the ground truth's training
    assert (df["metrics.time/train_s"] >= df["metrics.time/search_s"]
            + df["metrics.time/select_s"]).all()
    assert (df["metrics.time/train_s"] < df["metrics.time/search_s"] + df["metrics.time/select_s"]
            + df["metrics.time/evaluate_s"] + 1e-6).all()
    for method in ("darts", "pt"):
        assert 0 <= df.loc[method, "metrics.search/val/accuracy"] <= 1
        arts = {a.path for a in client.list_artifacts(df.loc[method, "run_id"], "nas")}
        assert arts == {"nas/alphas.csv", "nas/genotype.txt"}
        path = client.download_artifacts(df.loc[method, "run_id"], "nas/alphas.csv",
                                         str(tmp_path / method))
        lines = open(path).read().splitlines()
        # header + (initial + 2 epochs) x 3 edges x 2 ops
        assert lines[0] == "epoch,edge,op,alpha,weight" and len(lines) == 1 + 3 * 3 * 2
    assert "search/val/accuracy" not in {k.split("metrics.")[-1] for k in df.columns
                                         if df.loc["random", k] == df.loc["random", k]}
    assert np.isfinite(df.loc["pt", "metrics.select/drop"])


@pytest.mark.slow
def test_end_to_end_sampled_ground_truth(tmp_path, tracking_uri, capsys):
    """``ground_truth_sample: 4`` of the 8 cells: one table of 4 trained cells
    (NaN elsewhere), and each run's regret and rank are among those cells and
    its own retrained cell."""
    suite = tmp_path / "nas.yaml"
    suite.write_text(SUITE.replace("selector: magnitude\n",
                                   "selector: magnitude\nground_truth_sample: 4\n"))
    assert main(["run", str(suite)]) == 0, capsys.readouterr().err
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    df = mlflow.search_runs(experiment_names=["nas-t"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert sorted(df["metrics.ground_truth/reused"]) == [0.0, 1.0, 1.0]
    assert (df["metrics.ground_truth/cells"] == 4).all()
    assert df["metrics.ground_truth/val_test_kendall"].between(-1, 1).all()
    builder = df.index[df["metrics.ground_truth/reused"] == 0.0][0]
    path = MlflowClient(tracking_uri).download_artifacts(
        df.loc[builder, "run_id"], "shared/nas_ground_truth.npz", str(tmp_path))
    with np.load(path) as t:
        test_acc = t["test_accuracy"]
    assert np.isnan(test_acc).sum() == 4
    from harness_plugins.nas.spaces import tiny

    space = tiny(channels=4, stages=1, ops=["skip", "conv3x3"])
    for method, row in df.iterrows():
        i = space.index(space.parse(row["params.nas.genotype"]))
        own = row["metrics.test/accuracy"]
        if not np.isnan(test_acc[i]):
            assert own == pytest.approx(test_acc[i], abs=1e-9), method
        pool = np.append(test_acc[~np.isnan(test_acc)], own)
        assert row["metrics.test/regret"] == pytest.approx(pool.max() - own, abs=1e-9)
        assert row["metrics.test/arch_rank"] == 1 + np.sum(pool > own)
