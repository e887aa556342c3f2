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
    suite = write(tmp_path, "real: {}\nnb_x2: {augment: {name: gaussian_nb, ratio: 2}}")
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


@pytest.mark.parametrize("spec, key", [
    ("{name: gmm, ratio: -1}", "methods.bad.augment.ratio = -1"),
    ("{name: gmm, mode: per_batch}", "methods.bad.augment.mode = 'per_batch'"),
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
