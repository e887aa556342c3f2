"""The semi_supervised task through the CLI: bad suites stop at ``harness
plan`` with one line naming file, key and value; the shipped suites plan; a
tiny suite runs end to end and logs the exact error."""

from __future__ import annotations

import textwrap

import pytest

from harness.cli import main

TINY = """\
name: ssl_tiny
task: semi_supervised
seeds: [0]
datasets:
  - {gaussian_mixture: {d: 4}, labeled: 6, unlabeled: 40, shift: 0.2, test_size: 200}
intercept: false
training: {steps: 20, log_every: 10}
methods:
  erm: {method: erm}
  rss: {method: {name: rss, lam: 1.0}}
metrics: [error, accuracy, {name: robust_error, epsilon: 0.1}]
rank_by: error
"""


def _plan(tmp_path, capsys, text: str):
    suite = tmp_path / "ssl.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/p.db"])
    return code, capsys.readouterr()


def test_the_tiny_suite_plans(tmp_path, capsys):
    code, out = _plan(tmp_path, capsys, TINY)
    assert code == 0, out.err
    assert "2 runs: 2 to run" in out.out
    # a non-default test sample size is part of the label; the default test fraction is not
    assert "gaussian_mixture-4+m=6+n=40+tv=0.2+test_size=200 " in out.out


@pytest.mark.parametrize("old,new,key,value", [
    ("intercept: false", "intercept: false\ndomains: [a, b]", "domains", "['a', 'b']"),
    ("unlabeled: 40", "unlabeled: -1", "unlabeled", "-1"),
    ("labeled: 6", "labeled: 0", "labeled", "0"),
    ("shift: 0.2", "shift: 1.5", "shift", "1.5"),
    ("training: {steps: 20,", "training: {stepz: 20,", "stepz", "20"),
    ("{name: rss, lam: 1.0}", "{name: rss, lam: -1.0}", "lam", "-1.0"),
    # found by fuzzing: the task's own floats took .inf (only their lower bounds were set)
    ("log_every: 10}", "log_every: 10, lr: .inf}", "training.lr", "inf"),
    ("intercept: false", "intercept: false\nepsilon: .inf", "epsilon", "inf"),
    ("intercept: false", "intercept: false\nloss: {gamma: .inf}", "loss.gamma", "inf"),
    ("unlabeled: 40", "unlabeled: 1000000000000000000000000000000", "unlabeled",
     "less than or equal to 10000000"),
])
def test_bad_suites_stop_at_plan_naming_file_key_and_value(tmp_path, capsys, old, new, key,
                                                            value):
    assert old in TINY
    code, out = _plan(tmp_path, capsys, TINY.replace(old, new))
    err = out.err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert "ssl.yaml" in err and key in err and value in err, err


@pytest.mark.parametrize("name", ["semi_supervised", "semi_supervised_quick"])
def test_shipped_suites_plan(name, tmp_path, capsys):
    code = main(["plan", f"suites/{name}.yaml", "--tracking-uri",
                 f"sqlite:///{tmp_path / 'none.db'}"])
    out = capsys.readouterr()
    assert code == 0, out.err


def test_tiny_run_logs_the_exact_error(tmp_path, tracking_uri, capsys):
    from harness.report import load

    suite = tmp_path / "ssl.yaml"
    suite.write_text(TINY)
    assert main(["run", str(suite)]) == 0
    runs = load.load_runs("ssl_tiny", tracking_uri).runs.set_index("method")
    assert sorted(runs.index) == ["erm", "rss"]
    assert (runs["status"] == "finished").all()
    for method in ("erm", "rss"):
        error = runs.loc[method, "test/error"]
        robust = runs.loc[method, "test/robust_error:epsilon-0.1"]
        assert 0.0 < error < 0.5 and robust >= error
        # accuracy is a sample estimate on 200 drawn test rows: near 1 - exact error
        assert abs(runs.loc[method, "test/accuracy"] - (1 - error)) < 0.12
