"""Every user mistake in a suite exits 2 with one line naming file, line, key
and value — never a traceback."""

from __future__ import annotations

import textwrap

import pytest

from harness.cli import main

BASE = """\
name: t
seeds: 2
datasets:
  - sklearn: iris
model: {name: mlp, hidden: [8]}
loss: cross_entropy
training:
  epochs: 1
  optimizer: {name: adam, lr: 0.01}
methods:
  ce: {}
  focal: {loss: {name: focal, gamma: 2.0}}
metrics: [accuracy]
task: classification
"""


def plan(tmp_path, capsys, text: str):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    return code, err, str(suite)


def test_valid_base_suite_plans(tmp_path, capsys):
    code, err, _ = plan(tmp_path, capsys, BASE)
    assert code == 0, err


@pytest.mark.parametrize(
    "old,new,line,path,value,words",
    [
        ("training:\n", "trainig:\n", 7, "trainig", None, ["unknown key 'trainig'",
                                                           "did you mean 'training'"]),
        ("loss: cross_entropy", "loss: cross_entropi", 6, "loss", "'cross_entropi'",
         ["unknown loss 'cross_entropi'", "did you mean 'cross_entropy'"]),
        # a component spec nested in a parameter (params.Component) is checked too
        ("{name: focal, gamma: 2.0}", "{name: kl_dro, base: focall}", 12,
         "methods.focal.loss.base", "'focall'", ["unknown loss 'focall'",
                                                 "did you mean 'focal'"]),
        ("{name: focal, gamma: 2.0}", "{name: kl_dro, base: {name: focal, gama: 1}}", 12,
         "methods.focal.loss.base.gama", "1", ["unknown parameter 'gama'"]),
        ("gamma: 2.0", "gama: 2.0", 12, "methods.focal.loss.gama", "2.0",
         ["unknown parameter 'gama'", "did you mean 'gamma'"]),
        ("gamma: 2.0", "gamma: strong", 12, "methods.focal.loss.gamma", "'strong'",
         ["expects float"]),
        ("lr: 0.01", "lr: fast", 9, "training.optimizer.lr", "'fast'", ["expects float"]),
        ("epochs: 1", "epochs: 0", 8, "training.epochs", "0", ["greater than or equal to 1"]),
        ("seeds: 2", "seeds: [1, 1]", 2, "seeds", "[1, 1]", ["duplicates"]),
        ("seeds: 2", "seeds: 0", 2, "seeds", "0", ["at least 1"]),
        ("seeds: 2", "seeds: [-3]", 2, "seeds", "[-3]", ["non-negative"]),
        ("sklearn: iris", "sklearn: irsi", 4, "datasets[0].sklearn", "'irsi'", ["iris"]),
        ("  - sklearn: iris", "  - sklern: iris", 4, "datasets[0].sklern", "'iris'",
         ["unknown dataset source", "did you mean 'sklearn'"]),
        ("metrics: [accuracy]", "metrics: [acuracy]", 13, "metrics[0]", "'acuracy'",
         ["did you mean 'accuracy'"]),
    ],
)
def test_mistakes_name_file_line_key_value(tmp_path, capsys, old, new, line, path, value, words):
    assert old in BASE
    code, err, file = plan(tmp_path, capsys, BASE.replace(old, new, 1))
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert f"{file}:{line}: {path}" in err, err
    if value is not None:
        assert f"= {value}" in err, err
    for w in words:
        assert w in err, err


def test_empty_methods(tmp_path, capsys):
    text = BASE.split("methods:")[0] + "methods: {}\nmetrics: [accuracy]\n"
    code, err, file = plan(tmp_path, capsys, text)
    assert code == 2 and f"{file}:10: methods" in err and "must not be empty" in err


def test_missing_required_key(tmp_path, capsys):
    code, err, file = plan(tmp_path, capsys, BASE.replace("name: t\n", ""))
    assert code == 2 and "required key 'name' is missing" in err and file in err


def test_malformed_yaml_gives_line(tmp_path, capsys):
    code, err, file = plan(tmp_path, capsys, BASE.replace("  epochs: 1", "  epochs: [1"))
    assert code == 2 and "malformed YAML" in err and f"{file}:" in err


def test_missing_file(tmp_path, capsys):
    code = main(["plan", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.yaml" in err and "not found" in err


def test_sweep_of_unknown_method(tmp_path, capsys):
    code, err, file = plan(tmp_path, capsys, BASE + "sweep:\n  focall: {loss.gamma: [1.0]}\n")
    assert code == 2 and f"{file}:16: sweep.focall" in err and "did you mean 'focal'" in err


def test_bad_sweep_value_is_located(tmp_path, capsys):
    code, err, file = plan(tmp_path, capsys, BASE + "sweep:\n  focal: {loss.gamma: [1.0, x]}\n")
    assert code == 2 and "sweep.focal.loss.gamma" in err and "'x'" in err


def test_rank_by_must_be_a_metric(tmp_path, capsys):
    code, err, file = plan(tmp_path, capsys, BASE + "rank_by: f1\n")
    assert code == 2 and f"{file}:15: rank_by = 'f1'" in err


def test_unknown_transform_key(tmp_path, capsys):
    text = BASE.replace("  - sklearn: iris\n", "  - sklearn: iris\n    imbalanse: 0.1\n")
    code, err, file = plan(tmp_path, capsys, text)
    assert code == 2 and f"{file}:5: datasets[0].imbalanse" in err
    assert "did you mean 'imbalance'" in err


@pytest.mark.parametrize("key, words", [
    ("task", ["the suite has no 'task': add 'task: NAME'", "classification", "denoising"]),
    ("metrics", ["the suite has no 'metrics'", "task 'classification' can feed",
                 "accuracy", "log_loss"]),
])
def test_suite_without_task_or_metrics_says_what_to_write(tmp_path, capsys, key, words):
    """No task or metric is assumed: the one-line error says what to add."""
    text = "".join(line for line in BASE.splitlines(keepends=True)
                   if not line.startswith(f"{key}:"))
    code, err, file = plan(tmp_path, capsys, text)
    assert code == 2 and err.count("\n") == 1 and f"{file}:1: " in err, err
    for w in words:
        assert w in err, err
    if key == "metrics":  # only metrics the task can feed are offered
        assert "psnr" not in err


def test_unknown_dataset_key_names_the_tasks_keys(tmp_path, capsys):
    text = BASE.replace("  - sklearn: iris\n", "  - sklearn: iris\n    splt: {test: 0.3}\n")
    code, err, file = plan(tmp_path, capsys, text)
    assert code == 2 and f"{file}:5: datasets[0].splt = {{'test': 0.3}}" in err, err
    assert "did you mean 'split'" in err and "label_noise" in err


def test_bad_split_is_located_by_the_task(tmp_path, capsys):
    text = BASE.replace("  - sklearn: iris\n",
                        "  - sklearn: iris\n    split: {val: 0.6, test: 0.5}\n")
    code, err, file = plan(tmp_path, capsys, text)
    assert code == 2 and f"{file}:5: datasets[0].split" in err
    assert "val + test fractions must leave data for training" in err


@pytest.mark.parametrize("command", ["plan", "run"])
def test_denoising_suite_with_label_transforms_exits_2(tmp_path, capsys, command):
    """The denoising task applies no dataset transform: one in its entry
    stops the suite (plan and run) instead of labelling runs with it."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "suites" / "denoising.yaml").read_text()
    entry = "    split: {val: 0.1, test: 0.3}\n"
    assert entry in text
    suite = tmp_path / "denoising.yaml"
    suite.write_text(text.replace(entry, entry + "    label_noise: 0.1\n    imbalance: 0.5\n"))
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main([command, str(suite), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{suite}:14: datasets[0].label_noise = 0.1" in err, err
    assert "the denoising task applies no dataset transform" in err
    if command == "run":  # stopped before any run: no store was made
        assert not (tmp_path / "m.db").exists()


def test_a_huge_bad_value_is_shown_cut_on_its_one_line():
    from harness.errors import SHOWN_CHARS, ConfigError

    line = str(ConfigError("methods.x.loss", list(range(5000)), "expected a component",
                           file="s.yaml", line=4))
    assert line.startswith("s.yaml:4: methods.x.loss = [0, 1, 2")
    assert "... (" in line and line.endswith("characters): expected a component")
    assert len(line) < SHOWN_CHARS + 100 and "\n" not in line


@pytest.mark.parametrize("old, new, words", [
    # found by fuzzing: a key holding a newline printed a two-line error
    ("  ce: {}", '  ce: {"line\\nbreak": 1}', ["methods.ce.line\\nbreak", "unknown key"]),
    # a huge count overflowed range(); a float count ran out of memory
    ("seeds: 2", "seeds: 1000000000000000000000000000000", ["seeds", "at most 100,000"]),
    ("seeds: 2", "seeds: 5.4e15", ["seeds"]),
    ("seeds: 2", "seeds: [0, 4294967296]", ["seeds", "below 2**32"]),
    # a key that is a non-ASCII digit: int() refused what isdigit() accepted
    ("  ce: {}", "  ce: {²: 1}", ["methods.ce.²", "unknown key"]),
])
def test_fuzzer_findings_are_one_line(tmp_path, capsys, old, new, words):
    assert old in BASE
    code, err, _ = plan(tmp_path, capsys, BASE.replace(old, new))
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)


def test_a_test_time_metric_is_no_early_stopping_monitor(tmp_path, capsys):
    text = BASE.replace("metrics: [accuracy]", "metrics: [accuracy, generalization_gap]").replace(
        "  epochs: 1\n", "  epochs: 1\n  early_stopping: {monitor: val/generalization_gap}\n")
    code, err, _ = plan(tmp_path, capsys, text)
    assert code == 2 and "training.early_stopping.monitor" in err, err
    assert "val/accuracy" in err and "val/generalization_gap" in err.split("use one of")[0]
    ok = text.replace("monitor: val/generalization_gap", "monitor: val/accuracy")
    code, err, _ = plan(tmp_path, capsys, ok)
    assert code == 0, err


def test_an_image_root_the_system_refuses_is_not_found(tmp_path):
    from pathlib import Path

    from harness_plugins.data.images import CIFAR10

    assert CIFAR10.find(Path("x" * 5000)) is None


@pytest.mark.parametrize("old,new,path", [
    ("epochs: 1", "epochs: yes", "training.epochs"),
    ("gamma: 2.0", "gamma: true", "methods.focal.loss.gamma"),
    ("hidden: [8]", "hidden: [8, on]", "model.hidden[1]"),
    ("seeds: 2", "seeds: yes", "seeds"),
    ("seeds: 2", "seeds: [0, true]", "seeds[1]"),
    ("lr: 0.01", "lr: false", "training.optimizer.lr"),
])
def test_a_boolean_where_a_number_goes_is_named(tmp_path, capsys, old, new, path):
    """pydantic's lax mode reads `epochs: yes` as 1 epoch and `gamma: true` as
    1.0: a boolean where only numbers go stops the plan at its key."""
    code, err, suite = plan(tmp_path, capsys, BASE.replace(old, new))
    assert code == 2
    assert err.startswith(f"error: {suite}:") and f" {path} = " in err
    assert "a YAML boolean" in err and "is not a number" in err


def test_a_boolean_where_a_boolean_goes_still_plans(tmp_path, capsys):
    code, err, _ = plan(tmp_path, capsys, BASE.replace("epochs: 1", "epochs: 1\n  select_best: no"))
    assert code == 0, err
