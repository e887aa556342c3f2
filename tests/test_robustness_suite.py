"""The robustness family through the CLI: bad attack specs stop at ``harness plan``
naming file, key and value; a tiny ``harness run`` logs clean, robust and worst-class
accuracies with robust <= clean in every run; the robust metrics on a fixed model."""

from __future__ import annotations

import pytest
import torch

import harness
from harness.cli import main

SUITE = """\
name: rob
task: classification
seeds: 1
datasets: [{sklearn: wine}]
model: {name: mlp, hidden: [16]}
training: {epochs: 3, optimizer: {name: adam, lr: 0.01}}
methods:
  clean: {}
  pgd-at: {training.optimizer: {name: pgd_at, base: adam, attack: {name: pgd, eps: 0.3, steps: 3}}}
  trades: {training.optimizer: {name: trades, base: adam, attack: {name: pgd, eps: 0.3, steps: 3}}}
  dro-at: {training.optimizer: {name: dro_at, base: adam, r: 0.5,
                               attack: {name: pgd, eps: 0.3, steps: 3}}}
metrics: [accuracy, worst_class_accuracy, {name: robust_accuracy, eps: 0.3, steps: 5},
          {name: worst_class_robust_accuracy, eps: 0.3, steps: 5}]
rank_by: robust_accuracy:eps-0.3:steps-5
"""


def _plan(tmp_path, capsys, text: str):
    suite = tmp_path / "rob.yaml"
    suite.write_text(text)
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/p.db"])
    return code, capsys.readouterr().err


def test_the_suite_plans(tmp_path, capsys):
    code, err = _plan(tmp_path, capsys, SUITE)
    assert code == 0, err


@pytest.mark.parametrize("old, new, key, value", [
    ("{name: pgd_at, base: adam, attack: {name: pgd,", "{name: pgd_at, base: adam, "
     "attack: {name: pgdd,", "methods.pgd-at.training.optimizer.attack.name", "'pgdd'"),
    ("trades, base: adam, attack: {name: pgd, eps: 0.3", "trades, base: adam, "
     "attack: {name: pgd, eps: -0.3", "methods.trades.training.optimizer.attack.eps", "-0.3"),
    ("attack: {name: pgd, eps: 0.3, steps: 3}}}\nmetrics", "attack: {name: pgd, eps: 0.3, "
     "steps: 3, norm: l3}}}\nmetrics", "methods.dro-at.training.optimizer.attack.norm", "'l3'"),
    ("r: 0.5,", "r: 0,", "methods.dro-at.training.optimizer.r", "0"),
    ("{name: robust_accuracy, eps: 0.3, steps: 5}", "{name: robust_accuracy, attack: fgsmm}",
     "metrics[2]", "'fgsmm'"),
    ("{name: worst_class_robust_accuracy, eps: 0.3, steps: 5}",
     "{name: worst_class_robust_accuracy, eps: -1}", "metrics[3].eps", "-1"),
])
def test_bad_attack_specs_stop_at_plan(tmp_path, capsys, old, new, key, value):
    assert old in SUITE
    code, err = _plan(tmp_path, capsys, SUITE.replace(old, new, 1))
    assert code == 2
    assert "rob.yaml" in err and key in err and f"= {value}" in err, err
    assert len(err.strip().splitlines()) == 1


def test_tiny_run_logs_robust_below_clean(tmp_path, tracking_uri, capsys):
    from harness.report import load
    from harness_plugins.robustness.check import check_runs

    suite = tmp_path / "rob.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite)]) == 0
    runs = load.load_runs("rob", tracking_uri).runs
    assert sorted(runs["method"]) == ["clean", "dro-at", "pgd-at", "trades"]
    assert (runs["status"] == "finished").all()
    table = check_runs(runs)
    assert len(table) == 8 and table["ok"].all(), table
    # the attack bites the clean model
    clean = runs.set_index("method").loc["clean"]
    assert clean["test/robust_accuracy:eps-0.3:steps-5"] < clean["test/accuracy"]


def test_robust_metrics_on_a_fixed_model():
    # a 1-D threshold classifier: class 1 iff x > 0; points at distance 0.1 and 1.0
    # from the boundary; eps 0.5 flips the near ones only
    model = torch.nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-10.0], [10.0]]))
        model.bias.zero_()
    x = torch.tensor([[-1.0], [-0.1], [0.1], [1.0], [2.0], [-2.0]])
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    kw = {"attack": {"name": "pgd", "steps": 10, "random_start": False}, "eps": 0.5,
          "clip": False}
    robust = harness.create("metrics", {"name": "robust_accuracy", **kw})
    worst = harness.create("metrics", {"name": "worst_class_robust_accuracy", **kw})
    assert robust(model, x, y, x) == pytest.approx(4 / 6)
    assert worst(model, x, y, x) == pytest.approx(2 / 3)
    fgsm = harness.create("metrics", {"name": "robust_accuracy", "attack": "fgsm", "eps": 1.5,
                                      "clip": False})
    assert fgsm(model, x, y, x) == pytest.approx(2 / 6)  # only |x| = 2 survive
    clean_worst = harness.create("metrics", "worst_class_accuracy")
    probs = torch.softmax(model(x), 1).detach().numpy()
    assert clean_worst(y.numpy(), probs) == 1.0


def test_check_flags_a_run_whose_robust_accuracy_exceeds_the_clean_one(tmp_path):
    import pandas as pd

    from harness_plugins.robustness.check import check_runs

    runs = pd.DataFrame({
        "dataset": ["d", "d", "d"], "method": ["a", "b", "c"], "seed": [0, 0, 0],
        "status": ["finished", "finished", "failed"],
        "test/accuracy": [0.9, 0.8, 0.5], "test/robust_accuracy:eps-0.3": [0.5, 0.85, 0.9]})
    table = check_runs(runs)
    assert table["method"].tolist() == ["a", "b"]  # the failed run is not checked
    assert table["ok"].tolist() == [True, False]
