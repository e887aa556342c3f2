"""The contrastive task: views, k-NN and probe, suite validation through the
CLI (another task's key stops at plan), and a tiny run end to end."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from harness.cli import main
from harness_plugins.representation.probe import knn_probs, linear_probe
from harness_plugins.representation.temperatures import frequency_correlation
from harness_plugins.representation.views import Views, image_view, tabular_view, view_maker

TINY = """\
name: ct
task: contrastive
seeds: [0]
datasets:
  - sklearn: digits
    subsample: {n: 240}
model: {name: mlp, hidden: [32]}
embed_dim: 16
projection: [16]
training: {epochs: 2, batch_size: 32, eval_every: 1}
evaluation: {k: 5}
methods:
  infonce: {loss: infonce}
  isogclr: {loss: {name: isogclr, eta: 0.05}}
  groco: {loss: {name: groco, topk_neg: 4}}
metrics: [probe_accuracy, knn_accuracy, accuracy, tau_frequency_correlation]
rank_by: probe_accuracy
"""


def _plan(tmp_path, capsys, text: str):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr()


def test_tiny_suite_plans(tmp_path, capsys):
    code, out = _plan(tmp_path, capsys, TINY)
    assert code == 0, out.err
    assert "3 runs: 3 to run" in out.out


@pytest.mark.parametrize("old,new,words", [
    # another task's key (domain generalization's) stops at validation, named
    ("embed_dim: 16", "embed_dim: 16\ndomains: [0, 15, 30]",
     ["domains", "unknown key 'domains'", "keys of the contrastive task"]),
    ("topk_neg: 4}", "topk_neg: 40}",
     ["training.batch_size = 32", "'groco' needs batches of at least 41"]),
    ("eta: 0.05}", "eta: 0.05, tau: 0.9}", ["loss", "initial tau (0.9)"]),
    ("eval_every: 1}", "eval_every: 1, early_stopping: {}}", ["training.early_stopping",
                                                              "keys of training"]),
    ("evaluation: {k: 5}", "evaluation: {k: 5}\nviews: {crop_scale: [1.0, 0.5]}",
     ["views.crop_scale", "smaller area fraction first"]),
    ("{loss: infonce}", "{loss: simclr}", ["unknown contrastive_loss 'simclr'"]),
    ("metrics: [probe_accuracy,", "metrics: [psnr, probe_accuracy,", ["psnr"]),
])
def test_bad_input_exits_2_naming_the_key(tmp_path, capsys, old, new, words):
    assert old in TINY
    code, out = _plan(tmp_path, capsys, TINY.replace(old, new))
    assert code == 2, out.err
    assert "Traceback" not in out.err
    for w in words:
        assert w in out.err, out.err


def test_shipped_contrastive_suites_plan(tmp_path, capsys):
    for name, runs in (("contrastive", 36), ("contrastive_quick", 16),
                       ("contrastive_cifar10", 4), ("contrastive_longtail", 9)):
        code = main(["plan", f"suites/{name}.yaml", "--tracking-uri",
                     f"sqlite:///{tmp_path / 'none.db'}"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert f"{runs} runs: {runs} to run" in out.out, out.out


def _cfg(**kw) -> dict:
    return Views(**kw).model_dump()


def test_identity_views_leave_the_batch_unchanged():
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    same = _cfg(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=0, jitter=0, blur_p=0)
    assert torch.allclose(image_view(x, same, torch.Generator()), x, atol=1e-5)
    rows = torch.randn(4, 6)
    assert torch.equal(tabular_view(rows, _cfg(noise=0, mask=0), torch.Generator()), rows)


def test_image_views_are_seeded_and_flip_exactly():
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cfg = _cfg()
    a = image_view(x, cfg, torch.Generator().manual_seed(5))
    b = image_view(x, cfg, torch.Generator().manual_seed(5))
    c = image_view(x, cfg, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    flipped = _cfg(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=1, jitter=0, blur_p=0)
    assert torch.allclose(image_view(x, flipped, torch.Generator()), x.flip(3), atol=1e-5)


def test_blur_keeps_a_constant_image_and_jitter_shifts_brightness():
    from harness_plugins.representation.views import colour_jitter, gaussian_blur

    flat = torch.full((2, 1, 8, 8), 0.7)
    assert torch.allclose(gaussian_blur(flat, (1.0, 2.0), 1.0, torch.Generator()), flat)
    x = torch.randn(1, 1, 8, 8)
    out = colour_jitter(x, 0.4, 1.0, torch.Generator().manual_seed(0))
    # brightness moves the mean, contrast keeps it: the shift is within +-0.4
    assert abs(float(out.mean() - x.mean())) <= 0.4 + 1e-6


def test_tabular_masking_rate():
    rows = torch.ones(200, 50)
    out = tabular_view(rows, _cfg(noise=0, mask=0.3), torch.Generator().manual_seed(0))
    assert float((out == 0).float().mean()) == pytest.approx(0.3, abs=0.02)


def test_image_kind_on_rows_is_a_user_error():
    from harness import UserError

    with pytest.raises(UserError, match="views.kind is 'image'"):
        view_maker(_cfg(kind="image"), (64,), "digits")


def test_knn_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.1]])
    # cosine to the bank; the 2 nearest are rows 0 (label 0) and 1 (label 1)
    q = [1 / math.hypot(1, 0.1), 0.1 / math.hypot(1, 0.1)]
    s0, s1 = q[0], 0.8 * q[0] + 0.6 * q[1]
    w0, w1 = math.exp(s0 / 0.5), math.exp(s1 / 0.5)
    probs = knn_probs(bank, labels, query, 3, k=2, temperature=0.5)
    assert probs[0].tolist() == pytest.approx([w0 / (w0 + w1), w1 / (w0 + w1), 0.0], rel=1e-5)
    majority = knn_probs(bank, labels, query, 3, k=3, temperature=None)
    assert majority[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_probe_and_knn_metrics_read_their_own_inputs():
    from harness.metrics import compute_metrics
    from harness.plugins import get_registry

    registry = get_registry()
    fns = {n: registry.create("metrics", n) for n in ("probe_accuracy", "knn_accuracy")}
    labels = np.array([0, 1, 1])
    offered = {"labels": labels, "probe_probs": np.eye(2)[[0, 1, 1]],
               "knn_probs": np.eye(2)[[1, 1, 0]]}
    assert compute_metrics(fns, offered) == {"probe_accuracy": 1.0,
                                             "knn_accuracy": pytest.approx(1 / 3)}


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    f = rng.normal(size=(90, 4)) * 0.1 + np.eye(4)[y] * 3
    probs = linear_probe(f, y, f, 4)
    assert probs.shape == (90, 4) and np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1) == y).all() and np.all(probs[:, 3] == 0)


def test_frequency_correlation_by_hand():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 1)
    tau = np.array([0.5] * 5 + [0.3] * 3 + [0.1])
    assert frequency_correlation(tau, labels) == pytest.approx(1.0)
    rare_warm = np.array([0.1] * 5 + [0.3] * 3 + [0.5])
    assert frequency_correlation(rare_warm, labels) == pytest.approx(-1.0)
    assert math.isnan(frequency_correlation(np.ones(9), labels))


def _finished(uri: str) -> dict:
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("ct")
    runs = client.search_runs([exp.experiment_id], "tags.`harness.status` = 'finished'")
    return {r.data.tags["harness.method"]: r for r in runs}


@pytest.mark.slow
def test_tiny_suite_logs_probe_and_knn_accuracy_to_mlflow(tmp_path):
    import mlflow

    suite = tmp_path / "s.yaml"
    suite.write_text(TINY)
    uri = f"sqlite:///{tmp_path}/a.db"
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    runs = _finished(uri)
    assert sorted(runs) == ["groco", "infonce", "isogclr"]
    client = mlflow.tracking.MlflowClient(uri)
    for method, run in runs.items():
        m = run.data.metrics
        for key in ("test/probe_accuracy", "test/knn_accuracy", "test/accuracy"):
            assert 0.3 < m[key] <= 1.0, (method, key, m.get(key))
        # the probe is what `accuracy` sees too
        assert m["test/accuracy"] == m["test/probe_accuracy"]
        history = client.get_metric_history(run.info.run_id, "val/knn_accuracy")
        assert [h.step for h in history] == [0, 1]
        assert len(client.get_metric_history(run.info.run_id, "val/probe_accuracy")) == 2
    iso = runs["isogclr"].data.metrics
    assert "test/tau_frequency_correlation" in iso and "tau/q50" in iso
    assert 0.05 <= iso["tau/q05"] <= iso["tau/q50"] <= iso["tau/q95"] <= 0.7
    assert "test/tau_frequency_correlation" not in runs["infonce"].data.metrics
    arts = [a.path for a in client.list_artifacts(runs["isogclr"].info.run_id, "report")]
    assert {"report/temperatures.png", "report/temperatures.csv"} <= set(arts)


IMAGES = """\
name: cti
task: contrastive
seeds: [0]
datasets:
  - synthetic_images: {n_train: 96, n_test: 32, n_classes: 4, size: 8, channels: 3}
model: {name: cnn, channels: [8], hidden: 16}
embed_dim: 8
projection: [8]
views: {flip: 0.5, jitter: 0.4, blur_p: 0.5}
training: {epochs: 1, batch_size: 32}
evaluation: {k: 5}
methods:
  sogclr: {loss: sogclr}
metrics: [probe_accuracy, knn_accuracy]
rank_by: knn_accuracy
"""


@pytest.mark.slow
def test_generated_images_train_through_the_image_views(tmp_path):
    import mlflow

    suite = tmp_path / "s.yaml"
    suite.write_text(IMAGES)
    uri = f"sqlite:///{tmp_path}/a.db"
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("cti")
    (run,) = client.search_runs([exp.experiment_id], "tags.`harness.status` = 'finished'")
    m = run.data.metrics
    assert 0 <= m["test/knn_accuracy"] <= 1 and 0 <= m["test/probe_accuracy"] <= 1
    assert [h.step for h in client.get_metric_history(run.info.run_id,
                                                      "val/probe_accuracy")] == [0]
