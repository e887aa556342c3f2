"""The mi_estimation task: suite validation (exit 2 before any run, one line naming
file, key and value), the shipped suites' plans, end-to-end runs and MIST's shared
meta-training."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cli import main

SUITE = """\
name: mi-t
task: mi_estimation
seeds: 1
datasets:
  - mi_gaussian: {dim: 1, mi: 0.5}
  - mi_student: {dim: 1, rho: 0.0, dof: 2}
n_samples: 300
methods:
  ksg: {estimator: {name: ksg, k: 3}}
  binning: {estimator: binning, interval: {bootstrap: 20, level: 0.8}}
sweep:
  ksg: {n_samples: [100, 300]}
metrics: [abs_error, rel_error, bias, coverage, interval_width]
rank_by: abs_error
"""


def plan(tmp_path, capsys, text: str) -> tuple[int, str]:
    suite = tmp_path / "mi.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr().err


def test_suite_plans(tmp_path, capsys):
    code, err = plan(tmp_path, capsys, SUITE)
    assert code == 0, err


@pytest.mark.parametrize("old, new, words", [
    ("mi_gaussian: {dim: 1, mi: 0.5}", "mi_gaussian: {dim: 1, rho: 1.2}",
     ["mi.yaml", "datasets[0].mi_gaussian.rho", "1.2"]),
    ("mi_gaussian: {dim: 1, mi: 0.5}", "mi_gaussian: {dim: 1, rho: -1}",
     ["datasets[0].mi_gaussian.rho", "-1"]),
    ("mi_gaussian: {dim: 1, mi: 0.5}", "mi_gaussian: {dim: 1, mi: 0.5, rho: 0.3}",
     ["datasets[0].mi_gaussian.mi", "exactly one of 'mi'"]),
    ("mi_student: {dim: 1, rho: 0.0, dof: 2}", "mi_student: {dim: 1, mi: 0.01, dof: 2}",
     ["datasets[1].mi_student.mi", "0.01", "at least 0.0827"]),
    ("ksg: {estimator: {name: ksg, k: 3}}", "ksg: {estimator: {name: ksg, k: 5}}\n"
     "  few: {estimator: {name: ksg, k: 5}, n_samples: 5}",
     ["methods.few.n_samples", "5", "'ksg' (k=5) needs at least 6 samples"]),
    ("ksg: {n_samples: [100, 300]}", "ksg: {n_samples: [100, 3]}",
     ["sweep.ksg.n_samples", "3", "needs at least 4 samples"]),
    ("n_samples: 300", "n_samples: 300\ndomains: [a, b]",
     ["mi.yaml", "domains", "unknown key 'domains'"]),
    ("n_samples: 300", "n_samples: 300\nmodel: mlp", ["model", "unknown key 'model'"]),
    ("mi_gaussian: {dim: 1, mi: 0.5}", "mi_gaussian: {dim: 1, mi: 0.5}\n    split: {test: 0.5}",
     ["datasets[0].split", "takes no dataset option"]),
    ("estimator: binning", "estimator: binnning", ["methods.binning.estimator",
                                                   "did you mean 'binning'"]),
    ("level: 0.8", "level: 1.5", ["methods.binning.interval.level", "1.5"]),
    # a signed bias has no direction: shown, never ranked
    ("rank_by: abs_error", "rank_by: bias", ["mi.yaml", "rank_by", "bias", "no direction",
                                            "abs_error, rel_error, coverage, interval_width"]),
    ("metrics: [abs_error, rel_error, bias, coverage, interval_width]\nrank_by: abs_error",
     "metrics: [bias, abs_error]", ["metrics[0]", "'bias' has no direction", "rank_by"]),
])
def test_bad_input_exits_2_at_plan(tmp_path, capsys, old, new, words):
    assert old in SUITE
    code, err = plan(tmp_path, capsys, SUITE.replace(old, new))
    assert code == 2, err
    assert err.count("\n") == 1, err  # one line, no traceback
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("suite", ["suites/mi_estimation.yaml", "suites/mi_estimation_quick.yaml"])
def test_shipped_suites_plan(suite, tmp_path, capsys):
    path = Path(__file__).parent.parent / suite
    assert main(["plan", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 0
    assert "runs" in capsys.readouterr().out


def _runs(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`harness.status` = 'finished'")
    return {(r.data.tags["harness.dataset"], r.data.tags["harness.method"]): r for r in runs}


@pytest.mark.slow
def test_tiny_end_to_end_run_is_scored_against_the_truth(tmp_path):
    suite = tmp_path / "mi.yaml"
    suite.write_text(SUITE)
    uris = [f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"]
    for uri in uris:
        assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    first, second = _runs(uris[0], "mi-t"), _runs(uris[1], "mi-t")
    assert len(first) == 6
    for key, run in first.items():
        m = run.data.metrics
        true = m["test/true_mi"]
        assert m["test/abs_error"] == pytest.approx(abs(m["test/estimate"] - true))
        assert m["test/bias"] == pytest.approx(m["test/estimate"] - true)
        assert second[key].data.metrics["test/estimate"] == m["test/estimate"]
        assert m["time/estimate_s"] >= 0
        if key[1] == "binning":
            assert m["test/coverage"] == float(m["test/lower"] <= true <= m["test/upper"])
            assert m["test/interval_width"] == pytest.approx(m["test/upper"] - m["test/lower"])
        else:
            assert "test/coverage" not in m  # no interval: not computed
    # the truth of each source: -1/2 log(1 - rho^2) at MI 0.5, c(2, 1, 1) at rho = 0
    from harness_plugins.mutual_information.distributions import student_correction

    assert first[("gaussian-d1-mi0.5", "binning")].data.metrics["test/true_mi"] == \
        pytest.approx(0.5)
    assert first[("student-d1-rho0.0-nu2.0", "binning")].data.metrics["test/true_mi"] == \
        pytest.approx(student_correction(2.0, 1, 1))


MIST_SUITE = """\
name: mi-mist
task: mi_estimation
seeds: 1
datasets:
  - mi_gaussian: {dim: 1, mi: 0.2}
  - mi_gaussian: {dim: 2, mi: 1.0, transform: asinh}
n_samples: 200
methods:
  mist: {estimator: {name: mist, steps: 3, batch_size: 4, max_dim: 2, hidden: 8, heads: 2,
                     inducing: 2, n_max: 120}}
metrics: [abs_error, coverage, interval_width]
rank_by: abs_error
"""


@pytest.mark.slow
def test_mist_meta_training_is_shared_not_retrained(tmp_path):
    suite = tmp_path / "mist.yaml"
    suite.write_text(MIST_SUITE)
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    runs = _runs(uri, "mi-mist")
    assert len(runs) == 2
    reused = sorted(r.data.metrics["mist/reused"] for r in runs.values())
    assert reused == [0.0, 1.0]
    for run in runs.values():
        m = run.data.metrics
        trained = m["mist/reused"] == 0.0
        assert (m["time/meta_train_s"] > 0) == trained
        assert m["test/lower"] <= m["test/estimate"] <= m["test/upper"]
        assert m["test/interval_width"] == pytest.approx(m["test/upper"] - m["test/lower"])
    keys = {r.data.tags.get("harness.shared.mist_weights") for r in runs.values()}
    assert len(keys - {None}) == 1  # one run holds the weights
    # a later run of the suite (a new sample size) reuses them too
    suite.write_text(MIST_SUITE.replace("n_samples: 200", "n_samples: 150"))
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mi-mist")
    later = [r for r in client.search_runs([exp.experiment_id],
                                           "tags.`harness.status` = 'finished'")
             if r.data.params.get("n_samples") == "150"]
    assert len(later) == 2
    assert all(r.data.metrics["mist/reused"] == 1.0 for r in later)
