"""The example plugin package (examples/harness-example-plugin, the guide's
subject in docs/plugins.md): its components on hand-computed cases, its suite
mistakes stopped at validation, and, installed with pip as a user would, its
suite run through ``harness run`` with metrics and provenance in MLflow."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "harness-example-plugin"
SUITE = EXAMPLE / "suites" / "example.yaml"
MODULES = ("losses", "metrics", "data", "task")
DIST = "harness-example-plugin==0.1.0"


@pytest.fixture
def example(monkeypatch, fresh_registry):
    """The example's modules loaded from the checkout (``HARNESS_PLUGINS``),
    without installing the package."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("HARNESS_PLUGINS", ",".join(f"harness_example.{m}" for m in MODULES))
    return fresh_registry()


def test_poly1_is_cross_entropy_plus_epsilon_times_one_minus_p_target():
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(EXAMPLE))
    try:
        from harness_example.losses import poly1
    finally:
        sys.path.remove(str(EXAMPLE))
    logits = torch.zeros(1, 2)  # p_target = 1/2, cross-entropy = ln 2
    target = torch.tensor([0])
    assert float(poly1(1.0)(logits, target)) == pytest.approx(math.log(2) + 0.5)
    assert float(poly1(-1.0)(logits, target)) == pytest.approx(math.log(2) - 0.5)
    rng = torch.Generator().manual_seed(0)
    z, t = torch.randn(5, 3, generator=rng), torch.tensor([0, 2, 1, 1, 0])
    assert float(poly1(0.0)(z, t, index=torch.arange(5), epoch=3)) == pytest.approx(
        float(F.cross_entropy(z, t)))
    from harness import ConfigError
    from harness.params import signature_params, validate_params

    params, var_kw, _ = signature_params(poly1)
    with pytest.raises(ConfigError, match=r"epsilon = -1.5: .*float \(>= -1\)"):
        validate_params(params, var_kw, {"epsilon": -1.5}, "loss", "losses 'poly1'")


def test_top_k_accuracy_and_prototype_margin_by_hand(example):
    labels = np.array([1, 0, 0], dtype=np.int64)
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    top = {k: example.create("metrics", {"name": "top_k_accuracy", "k": k}) for k in (1, 2, 3)}
    # top-1 hits none; top-2 hits rows 0 and 2 (the 0/2 tie goes to class 0)
    assert [top[k](labels, probs) for k in (1, 2, 3)] == [0.0, pytest.approx(2 / 3), 1.0]
    assert top[1].inputs == ("labels", "probs") and top[1].greater_is_better
    margin = example.create("metrics", "prototype_margin")
    distances = np.array([[1.0, 3.0, 4.0], [2.0, 0.5, 9.0]])
    # row 0: nearest wrong 3 - true 1 = 2; row 1 (true class 0): 0.5 - 2 = -1.5
    assert margin(np.array([0, 0]), distances) == pytest.approx(0.25)
    assert margin.inputs == ("labels", "distances")


def test_circle_blobs_and_feature_noise(example):
    raw = example.get("datasets", "circle_blobs").factory(n_samples=12, classes=4, spread=0.0)
    # spread 0: every row sits on its class centre, at angle 2*pi*k/4 on the unit circle
    assert raw.X.shape == (12, 2) and list(raw.y[:4]) == ["blob0", "blob1", "blob2", "blob3"]
    np.testing.assert_allclose(raw.X[:4], [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-12)
    noise = example.create("transforms", {"name": "feature_noise", "std": 0.0})
    assert noise.stage == "train"
    X, y = np.ones((5, 2)), np.arange(5, dtype=np.int64)
    X0, y0 = noise.apply(X, y, np.random.default_rng(0))
    np.testing.assert_array_equal(X0, X)
    assert y0 is y
    noisy = example.create("transforms", {"name": "feature_noise", "std": 2.0})
    Xa, _ = noisy.apply(X, y, np.random.default_rng(7))
    Xb, _ = noisy.apply(X, y, np.random.default_rng(7))
    np.testing.assert_array_equal(Xa, Xb)  # the pipeline's seeded rng decides
    assert not np.array_equal(Xa, X)


def test_class_means_start_the_prototypes():
    import torch

    sys.path.insert(0, str(EXAMPLE))
    try:
        from harness_example.task import class_means, cosine, euclidean
    finally:
        sys.path.remove(str(EXAMPLE))
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 0, 1])
    # class 2 is absent from the split: the overall mean
    expected = [[1.0, 0.0], [0.0, 4.0], [2 / 3, 4 / 3]]
    np.testing.assert_allclose(class_means(X, y, 3).numpy(), expected, rtol=1e-6)
    P = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(euclidean()(X, P).numpy(), [[1, 4], [1, 8], [17, 4]], atol=1e-5)
    np.testing.assert_allclose(cosine(scale=1.0)(X[1:], P).numpy(), [[0, 1], [1, 0]],
                               atol=1e-6)


@pytest.mark.parametrize("old, new, message", [
    ("feature_noise: 0.5", "feature_noise: -0.5", "feature_noise std must be >= 0"),
    ("spread: 0.6}", "spread: -0.6}", "spread must be >= 0"),
    ("classes: 4, spread: 0.1}", "classes: 1, spread: 0.1}",
     "circle_blobs needs at least 2 classes"),
    ("steps: 30", "steps: -1", "steps must be an integer >= 0"),
    ("{name: cosine, scale: 5.0}", "manhattan", "unknown prototype_distance 'manhattan'"),
    ("lr: 0.05", "lr: 0.05\nmomentum: 0.9", "unknown key 'momentum'"),
])
def test_suite_mistakes_stop_before_any_run(tmp_path, example, capsys, old, new, message):
    text = SUITE.read_text()
    assert text.count(old) == 1
    suite = tmp_path / "bad.yaml"
    suite.write_text(text.replace(old, new))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(suite) in err and len(err.splitlines()) == 1


def test_metric_needing_distances_is_rejected_in_a_classification_suite(tmp_path, example,
                                                                        capsys):
    suite = tmp_path / "cls.yaml"
    suite.write_text(textwrap.dedent("""\
        name: cls
        datasets: [{circle_blobs: {classes: 3}}]
        loss: {name: poly1, epsilon: 2.0}
        methods: {poly1: {}}
        metrics: [accuracy, {name: top_k_accuracy, k: 2}, prototype_margin]
        task: classification
    """))
    assert main(["plan", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "metric 'prototype_margin' needs distances" in err
    assert "task 'classification' does not offer" in err


def _clean_env() -> dict[str, str]:
    # the subprocesses find plugins through entry points only, as a user's would
    return {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "MLFLOW_"))}


@pytest.mark.slow
def test_pip_installed_package_runs_its_suite(tmp_path):
    pip = [sys.executable, "-m", "pip"]
    harness = str(Path(sys.executable).with_name("harness"))
    env = _clean_env()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True)

    installed = call(*pip, "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                     str(EXAMPLE))
    try:
        assert installed.returncode == 0, installed.stderr
        plugins = call(harness, "plugins")
        assert plugins.returncode == 0, plugins.stderr
        for module in MODULES:
            assert f"example_{module}" in plugins.stdout
        assert "harness-example-plugin" in plugins.stdout
        listed = call(harness, "list", "losses")
        assert "poly1" in listed.stdout and "epsilon: float (>= -1) = 1.0" in listed.stdout

        ran = call(harness, "run", str(SUITE), "--tracking-uri", uri, "--only", "*/*/0")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "6 finished" in ran.stdout
    finally:
        removed = call(*pip, "uninstall", "-y", "harness-example-plugin")
    assert removed.returncode == 0, removed.stderr
    assert "example_losses" not in call(harness, "plugins").stdout

    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("example-prototypes")
    runs = [r for r in cl.search_runs([exp.experiment_id]) if "harness.run_key" in r.data.tags]
    assert len(runs) == 6
    for r in runs:
        tags, metrics = r.data.tags, r.data.metrics
        method, dataset = tags["harness.method"], tags["harness.dataset"]
        assert tags["harness.status"] == "finished"
        for kind, name in [("tasks", "prototypes"), ("datasets", "circle_blobs"),
                           ("metrics", "top_k_accuracy"), ("metrics", "prototype_margin")]:
            assert tags[f"harness.plugin.{kind}.{name}"] == DIST, (kind, name)
        assert tags["harness.plugin.metrics.accuracy"].startswith("harness-bench==")
        if method != "ce":
            assert tags["harness.plugin.losses.poly1"] == DIST
        if method == "poly1-cosine":
            assert tags["harness.plugin.prototype_distances.cosine"] == DIST
        if dataset == "blobs4-noisy":
            assert tags["harness.plugin.transforms.feature_noise"] == DIST
        # a parameterised metric's logged name, and every metric's direction
        assert tags["harness.direction.top_k_accuracy:k-2"] == "max"
        assert tags["harness.direction.log_loss"] == "min"
        assert {"test/accuracy", "test/top_k_accuracy:k-2", "test/prototype_margin",
                "val/accuracy", "train/loss", "time/train_s"} <= set(metrics)
        assert metrics["test/top_k_accuracy:k-2"] >= metrics["test/accuracy"]
        if dataset == "blobs4-s0.1":
            # blobs 0.1 apart around centres sqrt(2) apart: nearest prototype is exact
            assert metrics["test/accuracy"] == 1.0 and metrics["test/prototype_margin"] > 0
        else:
            assert 0.25 < metrics["test/accuracy"] < 1.0


def _blocks(text: str, lang: str) -> list[str]:
    import re

    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_guide_shows_the_example_as_it_is():
    """docs/plugins.md quotes the package: its pyproject tables, its suite and
    the classification task's metric inputs must not drift from the code."""
    import yaml

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from harness_plugins.classification.task import ClassificationTask

    guide = (EXAMPLE.parent.parent / "docs" / "plugins.md").read_text()
    shown = tomllib.loads(_blocks(guide, "toml")[0])
    real = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert shown["build-system"] == real["build-system"]
    assert shown["project"]["entry-points"] == real["project"]["entry-points"]
    suites = [yaml.safe_load(b) for b in _blocks(guide, "yaml")]
    assert yaml.safe_load(SUITE.read_text()) in suites
    for name in ClassificationTask.metric_inputs:
        assert f"`{name}`" in guide, name
    for line in ("def poly1(epsilon: Annotated[float, Field(ge=-1)] = 1.0):",
                 "@metric(inputs=(\"labels\", \"probs\"), greater_is_better=True)",
                 "metric_inputs = (\"labels\", \"probs\", \"distances\")"):
        assert line in guide
        assert line in "".join(p.read_text() for p in (EXAMPLE / "harness_example").glob("*.py"))


def test_another_plugin_can_register_components_of_the_added_kind(tmp_path, monkeypatch,
                                                                  fresh_registry):
    (tmp_path / "harness_moredistances.py").write_text(textwrap.dedent('''
        from harness import hookimpl

        def manhattan():
            """L1 distance to each prototype."""
            return lambda X, P: (X[:, None, :] - P[None]).abs().sum(-1)

        @hookimpl
        def register_prototype_distances(register):
            register("manhattan", manhattan)
    '''))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_moredistances,harness_example.task")
    registry = fresh_registry()
    table = registry.components("prototype_distances")
    assert set(table) == {"euclidean", "cosine", "manhattan"}
    assert table["manhattan"].plugin == "harness_moredistances"
