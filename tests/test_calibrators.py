"""Calibrators, transformed views, distribution shift and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.isotonic import IsotonicRegression

import harness
from harness_plugins.calibration.calibrators import (
    make_views,
    reliability_diagram,
    shift_corruptions,
)
from harness_plugins.classification.metrics import ece_value

NAMES = ["none", "temperature", "vector_scaling", "matrix_scaling", "histogram_binning",
         "isotonic", "correctness_aware"]


def tempered(n, t_star, seed, c=5):
    """Logits z whose labels are drawn from softmax(z / t_star)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, (n, c))
    p = softmax(z / t_star, axis=1)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


def cal(spec):
    return harness.create("calibrators", spec)


def test_temperature_scaling_recovers_the_generating_temperature():
    for t_star in (0.7, 2.5):
        z, y = tempered(5000, t_star, seed=1)
        fitted = cal("temperature").fit(z, y).temperature
        assert fitted == pytest.approx(t_star, rel=0.1), t_star


def test_temperature_scaling_preserves_argmax_and_lowers_ece():
    z, y = tempered(3000, 3.0, seed=2)
    zt, yt = tempered(3000, 3.0, seed=3)
    ts = cal("temperature").fit(torch.tensor(z), torch.tensor(y))  # tensors are accepted
    p = ts.predict_proba(torch.tensor(zt))
    assert np.array_equal(p.argmax(1), zt.argmax(1))
    assert ece_value(yt, p) < 0.5 * ece_value(yt, softmax(zt, axis=1))


@pytest.mark.parametrize("name", ["vector_scaling", "matrix_scaling", "histogram_binning",
                                  "isotonic"])
def test_other_calibrators_fix_an_over_confident_model(name):
    z, y = tempered(3000, 3.0, seed=4)
    zt, yt = tempered(3000, 3.0, seed=5)
    p = cal(name).fit(z, y).predict_proba(zt)
    assert ece_value(yt, p) < 0.5 * ece_value(yt, softmax(zt, axis=1)), name


def test_isotonic_matches_sklearn_one_vs_rest():
    z, y = tempered(800, 2.0, seed=6)
    zt, _ = tempered(300, 2.0, seed=7)
    p, pt = softmax(z, axis=1), softmax(zt, axis=1)
    q = np.stack([IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
                  .fit(p[:, k], y == k).predict(pt[:, k]) for k in range(p.shape[1])], axis=1)
    expected = q / q.sum(1, keepdims=True)
    np.testing.assert_allclose(cal("isotonic").fit(z, y).predict_proba(zt), expected,
                               atol=1e-12)


def test_histogram_binning_maps_each_bin_to_its_frequency():
    # binary logits (0, s): p1 = sigmoid(s); bins of width .5
    s = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    z = np.stack([np.zeros_like(s), s], 1)
    y = np.array([0, 0, 1, 1, 1, 0])  # lower bin: class-1 rate 1/3, upper bin 2/3
    hb = cal({"name": "histogram_binning", "bins": 2, "strategy": "equal_width"}).fit(z, y)
    np.testing.assert_allclose(hb.values[1], [1 / 3, 2 / 3])
    np.testing.assert_allclose(hb.values[0], [1 / 3, 2 / 3])  # class 0 mirrored
    p = hb.predict_proba(np.array([[0.0, -5.0], [0.0, 5.0]]))
    np.testing.assert_allclose(p, [[2 / 3, 1 / 3], [1 / 3, 2 / 3]])


def test_histogram_binning_defaults_to_equal_frequency_bins():
    # sigmoid scores 0.05, 0.1, 0.2, 0.3 | 0.6, 0.7, 0.8, 0.9: two bins of 4 samples split at
    # the median, where equal-width bins at .5 would be the same; at 0.35 | ... not
    s = np.log(np.array([0.05, 0.1, 0.2, 0.3, 0.32, 0.34, 0.36, 0.9]) /
               (1 - np.array([0.05, 0.1, 0.2, 0.3, 0.32, 0.34, 0.36, 0.9])))
    z = np.stack([np.zeros_like(s), s], 1)
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    hb = cal({"name": "histogram_binning", "bins": 2}).fit(z, y)
    assert hb.strategy == "equal_frequency"
    # class 1: the lower four hold one positive, the upper four all four
    np.testing.assert_allclose(hb.values[1], [1 / 4, 1.0])
    wide = cal({"name": "histogram_binning", "bins": 2, "strategy": "equal_width"}).fit(z, y)
    np.testing.assert_allclose(wide.values[1], [4 / 7, 1.0])  # seven scores below 0.5
    with pytest.raises(harness.ConfigError, match="equal_frequency"):
        harness.create("calibrators", {"name": "histogram_binning", "strategy": "kmeans"})


def test_histogram_binning_equal_frequency_merges_repeated_edges():
    # saturated probabilities: most scores identical, the quantile edges repeat
    z = np.zeros((20, 2))
    z[:, 1] = np.where(np.arange(20) < 15, -30.0, 2.0)
    y = (np.arange(20) >= 14).astype(int)
    hb = cal({"name": "histogram_binning", "bins": 10}).fit(z, y)
    assert len(hb.values[1]) == len(hb.edges[1]) + 1 < 10
    p = hb.predict_proba(z)
    np.testing.assert_allclose(p.sum(1), 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_every_calibrator_returns_probabilities(name):
    z, y = tempered(300, 1.5, seed=8)
    c = cal(name)
    views = [z + 0.1] if getattr(c, "needs_views", False) else None
    fitted = c.fit(z, y, view_logits=views) if views else c.fit(z, y)
    assert fitted is c
    p = c.predict_proba(z, view_logits=views) if views else c.predict_proba(z)
    assert isinstance(p, np.ndarray) and p.shape == z.shape
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (p >= 0).all()
    assert harness.components("calibrators")[name].description


def test_correctness_loss_hand_values():
    from harness_plugins.calibration.calibrators import correctness_loss

    conf = torch.tensor([0.9, 0.8, 0.6, 0.7])
    correct = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # acc = 3/4: w = 1/4 for the right ones, 3/4 for the wrong one;
    # sum w (conf - c)^2 = (0.01 + 0.04 + 0.16) / 4 + 0.49 * 3 / 4 = 0.42, sum w = 1.5
    assert float(correctness_loss(conf, correct)) == pytest.approx(0.28)
    # all right: no weights from the accuracy, a plain mean
    assert float(correctness_loss(conf[:3], correct[:3])) == pytest.approx(0.07)


def test_correctness_aware_defaults_are_the_papers():
    ca = cal("correctness_aware")
    assert (ca.lr, ca.epochs, ca.hidden, ca.top_k, ca.batch_size) == (1e-4, 10, 5, 4, 1000)
    assert (ca.views, ca.include_original, ca.clamp) == (3, False, "hard")
    z, y = tempered(50, 1.5, seed=0, c=6)
    views = [z + i for i in range(4)]
    # top-4 of the original, read off the first three views only
    feats = ca._features(z, views)
    assert feats.shape == (50, 12)
    top = np.argsort(-z, axis=1)[:, :4]
    np.testing.assert_allclose(feats[:, 4:8], np.take_along_axis(softmax(z + 1, axis=1), top, 1),
                               rtol=1e-6)
    ours = cal({"name": "correctness_aware", "include_original": True, "views": None,
                "top_k": 3})
    assert ours._features(z, views).shape == (50, 15)
    with pytest.raises(ValueError, match="no features"):
        ca.fit(z, y)
    # T starts at 1 and the hard clamp keeps it in [0.1, 10]
    start = cal({"name": "correctness_aware", "epochs": 0}).fit(z, y, view_logits=views)
    np.testing.assert_allclose(start.temperatures(z, views), 1.0)
    hot = cal({"name": "correctness_aware", "lr": 1.0, "epochs": 50, "batch_size": 10})
    T = hot.fit(z, y, view_logits=views).temperatures(z, views)
    assert T.min() >= 0.1 and T.max() <= 10.0


def view_toy(n, rng, c=4):
    """An over-confident model (70 % right, confidence ~.99) whose transformed views keep
    their prediction when right and mostly change it when wrong."""
    y = rng.integers(0, c, n)
    correct = rng.random(n) < 0.7
    pred = np.where(correct, y, (y + rng.integers(1, c, n)) % c)
    z = 6 * np.eye(c)[pred] + rng.normal(0, 0.5, (n, c))
    views = []
    for _ in range(3):
        keep = correct | (rng.random(n) < 0.2)
        views.append(6 * np.eye(c)[np.where(keep, pred, rng.integers(0, c, n))]
                     + rng.normal(0, 0.5, (n, c)))
    return z, y, views


def test_correctness_aware_learns_higher_temperatures_for_wrong_predictions():
    rng = np.random.default_rng(0)
    (z, y, v), (zt, yt, vt) = view_toy(1000, rng), view_toy(1000, rng)
    # the paper's Adam 1e-4 x 10 epochs of batch 1000 are 10 steps here: T stays at 1
    ca = cal({"name": "correctness_aware", "lr": 1e-2, "epochs": 100}).fit(z, y, view_logits=v)
    assert ca.needs_views
    T = ca.temperatures(zt, vt)
    right = zt.argmax(1) == yt
    assert np.median(T[~right]) > 2 * np.median(T[right])
    p = ca.predict_proba(zt, view_logits=vt)
    assert np.array_equal(p.argmax(1), zt.argmax(1))
    assert ece_value(yt, p) < 0.7 * ece_value(yt, softmax(zt, axis=1))
    with pytest.raises(ValueError, match="as many view_logits"):
        ca.predict_proba(zt, view_logits=vt[:1])


def test_correctness_aware_with_make_views_lowers_ece_on_tabular_data():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 2], [2, -1], [-2, -1.0]])

    def sample(n):
        y = rng.integers(0, 3, n)
        return (centres[y] + rng.normal(0, 1.3, (n, 2))).astype(np.float32), y

    def net(X):  # an over-confident linear classifier
        return X @ (4 * centres).T

    (X, y), (Xt, yt) = sample(1500), sample(1500)
    v = [net(a) for a in make_views(X, rng)]
    vt = [net(a) for a in make_views(Xt, rng)]
    ca = cal({"name": "correctness_aware", "lr": 1e-2, "epochs": 100}).fit(net(X), y,
                                                                           view_logits=v)
    p = ca.predict_proba(net(Xt), view_logits=vt)
    assert ece_value(yt, p) < 0.8 * ece_value(yt, softmax(net(Xt), axis=1))


def test_make_views_images_and_tabular():
    rng = np.random.default_rng(0)
    img = rng.random((4, 3, 8, 8)).astype(np.float32)
    views = make_views(img, rng)
    assert len(views) == 3
    for v in views:
        assert v.shape == img.shape and v.dtype == np.float32 and v.flags["C_CONTIGUOUS"]
        torch.as_tensor(v)  # no negative strides
    np.testing.assert_array_equal(views[0], np.rot90(img, 1, axes=(2, 3)))
    assert np.allclose(views[1][:, 0], views[1][:, 1])  # greyscale: equal channels
    mono = make_views(rng.random((2, 1, 6, 4)).astype(np.float32), rng)
    assert all(v.shape == (2, 1, 6, 4) for v in mono)  # non-square: 180 degree rotation
    tab = rng.normal(size=(500, 6)).astype(np.float32)
    views = make_views(tab, rng)
    assert len(views) == 4 and all(v.shape == tab.shape for v in views)
    assert np.std(views[1] - tab) > np.std(views[0] - tab) > 0  # noise 0.3 > 0.1 std
    assert 0.05 < np.mean(views[2] != tab) < 0.15  # 10 % dropout
    assert 0.25 < np.mean(views[3] != tab) < 0.35


def test_shift_corruptions_grow_with_severity():
    rng = np.random.default_rng(0)
    img = rng.random((3, 3, 8, 8)).astype(np.float32)
    for kind in ("gaussian_noise", "blur", "contrast", None):
        d = [np.abs(shift_corruptions(img, s, np.random.default_rng(1), kind=kind) - img).mean()
             for s in (1, 3, 5)]
        assert 0 < d[0] < d[1] < d[2], kind
    out = shift_corruptions(img, 2, rng, kind="contrast")
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), img.mean(axis=(1, 2, 3)), rtol=1e-5)
    assert out.dtype == img.dtype and out.shape == img.shape
    tab = rng.normal(size=(400, 5))
    d = [np.std(shift_corruptions(tab, s, np.random.default_rng(1)) - tab) for s in (1, 5)]
    assert d[0] == pytest.approx(0.2 * tab.std(0).mean(), rel=0.1) and d[1] > 4 * d[0]
    with pytest.raises(ValueError):
        shift_corruptions(tab, 6, rng)
    with pytest.raises(ValueError, match="unknown corruption"):
        shift_corruptions(img, 1, rng, kind="fog")


def test_reliability_diagram_writes_a_png(tmp_path):
    z, y = tempered(500, 2.0, seed=9)
    path = reliability_diagram(softmax(z, axis=1), y, tmp_path / "sub" / "rd.png", bins=10,
                               title="toy")
    data = (tmp_path / "sub" / "rd.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert str(path).endswith("rd.png")
