"""Augmentation through the classification task, end to end: the ``augment``
key, what it logs, and bad input stopping at validation or with one line."""

from __future__ import annotations

import textwrap

import pytest

from harness.cli import main

SUITE = """\
name: {name}
seeds: 1
datasets:
  - {{sklearn: iris, train_per_class: {per_class}}}
model: {{name: mlp, hidden: [16]}}
training: {{epochs: 2, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
{methods}
metrics: [accuracy, generalization_gap]
task: classification
"""


def write(tmp_path, methods: str, name: str = "aug", per_class: int = 20) -> str:
    f = tmp_path / f"{name}.yaml"
    f.write_text(SUITE.format(name=name, per_class=per_class,
                              methods=textwrap.indent(methods, "  ")))
    return str(f)


def runs_of(uri, experiment):
    import mlflow

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment], output_format="pandas")
    return df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")


@pytest.mark.slow
def test_augment_key_mixes_generated_rows_and_logs_cost_and_quality(tmp_path, tracking_uri,
                                                                     capsys):
    suite = write(tmp_path, "real: {}\nnb_x2: {augment: {name: gaussian_nb, ratio: 2}}\n"
                            "nb_batch: {augment: {name: gaussian_nb, ratio: 2, mode: per_batch}}")
    assert main(["run", suite]) == 0, capsys.readouterr().err
    df = runs_of(tracking_uri, "aug")
    nb = df.loc["nb_x2"]
    # 20 rows per class of 3 classes, twice as many generated
    assert nb["metrics.augment/n_generated"] == 120
    for key in ("fit_s", "samples_per_s", "c2st", "mmd"):
        assert nb[f"metrics.augment/{key}"] >= 0, key
    assert "metrics.augment/n_generated" not in df.columns or df.loc["real"].isna()[
        "metrics.augment/n_generated"]
    assert 0 <= nb["metrics.test/generalization_gap"] <= 1
    assert nb["tags.harness.plugin.augmenters.gaussian_nb"].startswith("harness-bench==")
    # per_batch: one epoch is one pass over the 60 real rows, two thirds of
    # each batch generated, so the same 120 generated rows are a pool
    batch = df.loc["nb_batch"]
    assert batch["metrics.augment/n_generated"] == 120
    assert batch["metrics.augment/batch_fraction"] == pytest.approx(2 / 3)
    assert batch["tags.harness.status"] == "finished"


@pytest.mark.parametrize("spec, key", [
    ("{name: gmm, ratio: -1}", "methods.bad.augment.ratio = -1"),
    ("{name: gmm, mode: sometimes}", "methods.bad.augment.mode = 'sometimes'"),
    ("{name: gmmm}", "methods.bad.augment.name = 'gmmm': unknown augmenter 'gmmm' "
                     "(did you mean 'gmm'?)"),
])
def test_bad_augment_specs_exit_2_before_any_run(spec, key, tmp_path, tracking_uri, capsys):
    suite = write(tmp_path, f"ok: {{}}\nbad: {{augment: {spec}}}")
    assert main(["run", suite]) == 2
    err = capsys.readouterr().err
    assert key in err and err.count("\n") == 1


@pytest.mark.slow
def test_too_few_rows_per_class_is_a_one_line_run_error_naming_the_class(tmp_path,
                                                                         tracking_uri, capsys):
    suite = write(tmp_path, "smote: {augment: {name: smote, k_neighbors: 5}}", per_class=4)
    assert main(["run", suite]) == 1
    df = runs_of(tracking_uri, "aug")
    error = df.loc["smote", "tags.harness.error"]
    assert "class 0 has 4 training sample(s)" in error and "\n" not in error


GDA = """\
name: gda_tiny
seeds: 2
datasets:
  - {bgmm: {d: 4, n_samples: 2000}, train_per_class: 5, split: {val: 0.1, test: 0.5}}
model: logreg
training: {epochs: 1, batch_size: 4096, optimizer: closed_form}
methods:
  logreg: {augment: {name: gaussian_nb, ratio: 0}}
  naive_bayes: {model: gaussian_nb, augment: {name: gaussian_nb, ratio: 0}}
  theta_mean: {model: bgmm_mean, augment: {name: gaussian_nb, ratio: 0}}
sweep:
  logreg: {augment.ratio: [0, 10]}
metrics: [generalization_gap, nll_generalization_gap, accuracy]
task: classification
"""


@pytest.mark.slow
def test_gda_simulation_through_the_task_is_reproducible(tmp_path, tracking_uri, capsys):
    suite = tmp_path / "gda_tiny.yaml"
    suite.write_text(GDA)
    assert main(["run", str(suite)]) == 0, capsys.readouterr().err
    first = runs_of(tracking_uri, "gda_tiny").sort_values(["tags.harness.seed"])
    assert len(first) == 8
    # 5 real rows per class and gamma = 10: 100 generated rows
    augmented = first.loc["logreg[augment.ratio=10]"]
    assert (augmented["metrics.augment/n_generated"] == 100).all()
    assert (first["metrics.test/accuracy"] > 0.7).all()
    assert first["metrics.test/generalization_gap"].between(0, 1).all()
    # the paper's learner sees the mixture as drawn (no standardisation): its
    # NLL gap is on the scale of ||x - y theta||^2 / (2 sigma^2), about d / 2
    theta = first.loc["theta_mean"]
    assert (theta["metrics.test/accuracy"] > 0.7).all()
    assert theta["metrics.test/nll_generalization_gap"].between(0, 3).all()
    assert main(["run", str(suite), "--force"]) == 0
    again = runs_of(tracking_uri, "gda_tiny")
    again = again[again["tags.harness.run_key"].isin(first["tags.harness.run_key"])]
    latest = again.sort_values("start_time").groupby("tags.harness.run_key").last()
    before = first.set_index("tags.harness.run_key")
    for key in ("metrics.test/accuracy", "metrics.test/generalization_gap",
                "metrics.test/nll_generalization_gap"):
        assert latest[key].sort_index().tolist() == before[key].sort_index().tolist()
