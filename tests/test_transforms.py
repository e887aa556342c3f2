"""Dataset transforms, on plain arrays (their place in the pipeline is tested
in test_prepare.py)."""

from __future__ import annotations

import numpy as np
import pytest

from harness_plugins.data.transforms import (
    imbalance,
    label_noise,
    one_vs_rest,
    resolve_class,
    subsample,
)


def _data(counts):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int64)
    X = np.arange(len(y) * 2, dtype=float).reshape(len(y), 2)
    return X, y


def rng(seed=0):
    return np.random.default_rng(seed)


def test_stages():
    assert one_vs_rest(1).stage == "full"
    assert subsample(n=5).stage == "full"
    assert imbalance(0.5).stage == "train"
    assert label_noise(0.1).stage == "trainval"


def test_one_vs_rest_by_value_then_index():
    classes = ["setosa", "versicolor", "virginica"]
    t = one_vs_rest("virginica")
    assert t.bind_classes(classes) == ["rest", "virginica"]
    X, y = _data([3, 3, 3])
    X2, y2 = t.apply(X, y, rng())
    assert X2 is X and y2.tolist() == [0] * 6 + [1] * 3
    # an index when no label value matches
    t = one_vs_rest(1)
    assert t.bind_classes(classes) == ["rest", "versicolor"]
    # a label value wins over an index; YAML 2 names the OpenML label "2"
    t = one_vs_rest(2)
    assert t.bind_classes(["1", "2"]) == ["rest", "2"]
    assert resolve_class(2, [1, 2, 3]) == 1


def test_one_vs_rest_unknown_class():
    with pytest.raises(ValueError, match="neither a label value nor a class index"):
        one_vs_rest("dog").bind_classes(["cat", "bird"])


def test_imbalance_binary_keeps_fraction_of_class_one():
    X, y = _data([400, 400])
    t = imbalance(0.1)
    t.bind_classes([0, 1])
    X2, y2 = t.apply(X, y, rng())
    assert np.bincount(y2).tolist() == [400, 40]
    # rows stay whole (row i is [2i, 2i+1]) and in their original order
    np.testing.assert_array_equal(X2[:, 1], X2[:, 0] + 1)
    np.testing.assert_array_equal(y2, y[(X2[:, 0] / 2).astype(int)])
    assert np.all(np.diff(X2[:, 0]) > 0)


def test_imbalance_multiclass_profiles():
    X, y = _data([100, 100, 100, 100, 100])
    t = imbalance(0.01)
    t.bind_classes(list(range(5)))
    _, y2 = t.apply(X, y, rng())
    # exp: class k keeps 0.01 ** (k / 4): 100, 32, 10, 3, 1
    assert np.bincount(y2).tolist() == [100, 32, 10, 3, 1]
    t = imbalance(0.1, profile="step")
    t.bind_classes(list(range(5)))
    _, y2 = t.apply(X, y, rng())
    assert np.bincount(y2).tolist() == [100, 100, 10, 10, 10]


def test_imbalance_uses_bound_class_count_not_split_max():
    # The split lacks class 2; the profile must still use K = 3
    X, y = _data([100, 100])
    t = imbalance(0.25)
    t.bind_classes(["a", "b", "c"])
    _, y2 = t.apply(X, y, rng())
    assert np.bincount(y2).tolist() == [100, 50]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_imbalance_fraction_range(bad):
    import harness

    spec = {"name": "imbalance", "fraction": bad}
    with pytest.raises(harness.ConfigError, match=r"fraction = .*float \(> 0, <= 1\)"):
        harness.create("transforms", spec)


def test_label_noise_pair_flips_exact_rate_to_next_class():
    X, y = _data([300, 300, 300])
    t = label_noise(0.2, kind="pair")
    t.bind_classes([0, 1, 2])
    X2, y2 = t.apply(X, y, rng())
    changed = y2 != y
    assert X2 is X and changed.sum() == 180
    assert np.all(y2[changed] == (y[changed] + 1) % 3)
    assert not np.shares_memory(y2, y)


def test_label_noise_uniform_rate():
    X, y = _data([1000, 1000])
    t = label_noise(0.4)
    t.bind_classes([0, 1])
    _, y2 = t.apply(X, y, rng())
    # redrawn uniformly over 2 classes: about half the chosen labels change
    assert abs(np.mean(y2 != y) - 0.2) < 0.03
    assert set(np.unique(y2)) == {0, 1}


def test_label_noise_is_reproducible_per_rng():
    X, y = _data([50, 50])
    a = label_noise(0.3).apply(X, y, rng(1))[1]
    b = label_noise(0.3).apply(X, y, rng(1))[1]
    c = label_noise(0.3).apply(X, y, rng(2))[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subsample_is_stratified():
    X, y = _data([900, 90, 10])
    X2, y2 = subsample(n=100).apply(X, y, rng())
    assert np.bincount(y2).tolist() == [90, 9, 1]
    _, y3 = subsample(fraction=0.5).apply(X, y, rng())
    assert np.bincount(y3).tolist() == [450, 45, 5]
    # a rare class keeps one row
    _, y4 = subsample(n=20).apply(X, y, rng())
    assert len(y4) == 20 and np.all(np.bincount(y4) >= 1)
    # n beyond the data keeps everything
    assert len(subsample(n=5000).apply(X, y, rng())[1]) == 1000


def test_subsample_needs_exactly_one_size():
    with pytest.raises(ValueError, match="exactly one of n and fraction"):
        subsample()
    with pytest.raises(ValueError, match="exactly one of n and fraction"):
        subsample(n=10, fraction=0.5)


def test_suite_scalar_goes_to_first_parameter():
    from harness.plugins import get_registry

    transforms = get_registry().components("transforms")
    assert [p.name for p in transforms["imbalance"].params][0] == "fraction"
    assert [p.name for p in transforms["label_noise"].params][0] == "rate"
    assert [p.name for p in transforms["subsample"].params][0] == "n"
    assert [p.name for p in transforms["one_vs_rest"].params][0] == "positive"
