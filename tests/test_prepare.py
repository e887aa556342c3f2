"""The preparation pipeline: encoding, transforms, split, preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.data import RawDataset, clear_cache, load_raw
from harness.params import signature_params
from harness.plugins import ComponentInfo, get_registry
from harness_plugins.classification.prepare import (
    encode_labels,
    fit_preprocessing,
    prepare_dataset,
)


def entry(source="sklearn", params=None, transforms=(), split=None, label="ds"):
    return {"source": source, "params": {"name": "breast_cancer"} if params is None else params,
            "transforms": [list(t) for t in transforms],
            "split": split or {"val": 0.2, "test": 0.2}, "label": label}


class ExtraSources:
    """The real registry plus dataset sources defined by a test."""

    def __init__(self, **factories):
        self.real = get_registry()
        self.extra = {name: ComponentInfo("datasets", name, f, "test",
                                          params=signature_params(f)[0])
                      for name, f in factories.items()}

    def get(self, kind, name, path=""):
        if kind == "datasets" and name in self.extra:
            return self.extra[name]
        return self.real.get(kind, name, path)


def test_shapes_types_and_meta():
    data = prepare_dataset(entry(), 0)
    assert data.name == "ds" and data.classes == [0, 1] and data.in_shape == (30,)
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert n == 569 and abs(len(data.y_test) - 114) <= 1 and abs(len(data.y_val) - 114) <= 1
    for X, y in [(data.X_train, data.y_train), (data.X_val, data.y_val),
                 (data.X_test, data.y_test)]:
        assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape[1:] == (30,)
    assert data.meta["source"] == "sklearn" and data.meta["dataset_name"] == "breast_cancer"
    assert data.meta["n_train"] == len(data.y_train) and data.meta["split"] == "stratified"
    assert data.y_train_clean is None


def test_same_seed_same_arrays_other_seed_other_split():
    a, b = prepare_dataset(entry(), 7), prepare_dataset(entry(), 7)
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = prepare_dataset(entry(), 8)
    assert not np.array_equal(a.X_test, c.X_test)


def test_split_is_stratified():
    data = prepare_dataset(entry(params={"name": "wine"}), 3)
    overall = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test])) / 178
    for y in (data.y_train, data.y_val, data.y_test):
        assert np.abs(np.bincount(y, minlength=3) / len(y) - overall).max() < 0.03


def test_preprocessing_is_fit_on_train_only():
    data = prepare_dataset(entry(), 1)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(axis=0), 1, atol=1e-3)
    # test statistics are not forced: some feature's test mean is visibly off zero
    assert np.abs(data.X_test.mean(axis=0)).max() > 0.05


def test_images_keep_shape_and_are_scaled_per_channel():
    data = prepare_dataset(entry(params={"name": "digits", "as_image": True}), 0)
    assert data.in_shape == (1, 8, 8) and data.X_train.shape[1:] == (1, 8, 8)
    assert abs(float(data.X_train.mean())) < 1e-4 and abs(float(data.X_train.std()) - 1) < 1e-3
    assert len(data.classes) == 10


def test_imbalance_reduces_only_train_positives():
    base = prepare_dataset(entry(), 5)
    imb = prepare_dataset(entry(transforms=[("imbalance", {"fraction": 0.1})]), 5)
    n_pos = np.bincount(base.y_train)[1]
    assert imb.class_counts() == [np.bincount(base.y_train)[0], round(0.1 * n_pos)]
    np.testing.assert_array_equal(imb.y_val, base.y_val)
    np.testing.assert_array_equal(imb.y_test, base.y_test)


def test_label_noise_on_train_and_val_never_test():
    base = prepare_dataset(entry(params={"name": "digits"}), 2)
    noisy = prepare_dataset(entry(params={"name": "digits"},
                                  transforms=[("label_noise", {"rate": 0.3, "kind": "pair"})]), 2)
    np.testing.assert_array_equal(noisy.y_test, base.y_test)
    np.testing.assert_array_equal(noisy.y_train_clean, base.y_train)
    np.testing.assert_array_equal(noisy.y_val_clean, base.y_val)
    for y, clean in ((noisy.y_train, base.y_train), (noisy.y_val, base.y_val)):
        flipped = y != clean
        assert abs(flipped.mean() - 0.3) < 0.01
        assert np.all(y[flipped] == (clean[flipped] + 1) % 10)
    assert abs(noisy.meta["noise_rate_train"] - 0.3) < 0.01


def test_noise_then_imbalance_keeps_clean_labels_only_while_aligned():
    data = prepare_dataset(entry(transforms=[("imbalance", {"fraction": 0.5}),
                                             ("label_noise", {"rate": 0.2, "kind": "pair"})]), 0)
    assert data.y_train_clean is not None and len(data.y_train_clean) == len(data.y_train)
    data = prepare_dataset(entry(transforms=[("label_noise", {"rate": 0.2, "kind": "pair"}),
                                             ("imbalance", {"fraction": 0.5})]), 0)
    assert data.y_train_clean is None


def test_one_vs_rest_and_subsample_before_the_split():
    data = prepare_dataset(entry(params={"name": "digits"},
                                 transforms=[("one_vs_rest", {"positive": 3}),
                                             ("subsample", {"n": 500})]), 0)
    assert data.classes == ["rest", 3] and data.n_classes == 2
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert len(y) == 500 and abs(y.mean() - 183 / 1797) < 0.01


def test_full_transforms_run_before_train_ones_whatever_the_order():
    # imbalance is listed first but must see the one-vs-rest labels
    data = prepare_dataset(entry(params={"name": "iris"},
                                 transforms=[("imbalance", {"fraction": 0.2}),
                                             ("one_vs_rest", {"positive": "2"})]), 0)
    assert data.classes == ["rest", 2]
    assert data.class_counts() == [60, 6]


def test_tabular_categoricals_and_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({
        "num": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "color": rng.choice(["red", "green", "blue", None], size=n),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], size=n)),
        "flag": rng.random(n) < 0.5,
        "label": rng.choice(["no", "yes"], size=n),
    })
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = prepare_dataset(entry("csv", {"path": str(tmp_path / "t.csv"), "target": "label"}), 0)
    # num + flag standardised, color (3 seen values) and size (3) one-hot
    assert data.in_shape == (2 + 3 + 3,)
    assert not np.isnan(data.X_train).any() and not np.isnan(data.X_test).any()
    assert data.classes == ["no", "yes"]


def test_one_hot_ignores_categories_unseen_in_train():
    X_train = np.array([[0.0, 1.0], [1.0, 2.0], [0.0, 3.0]])
    prep = fit_preprocessing(X_train, categorical=[0])
    out = prep(np.array([[5.0, 2.0]]))
    # column order: numeric then one-hot; code 5 never seen in train -> all zeros
    assert out.shape == (1, 3) and out[0, 1:].tolist() == [0.0, 0.0]
    assert prep(np.zeros((0, 2))).shape == (0, 3)


def test_labels_are_sorted_and_missing_labels_dropped():
    codes, classes, labelled = encode_labels(np.array(["b", None, "a", "c", "a"], dtype=object))
    assert classes == ["a", "b", "c"] and codes.tolist() == [1, 0, 2, 0]
    assert labelled.tolist() == [True, False, True, True, True]
    _, classes, _ = encode_labels(["10", "2", "1", "2"])
    assert classes == ["1", "2", "10"]


def _split_source(n_test: int = 40):
    def fixed(size: int = 200) -> RawDataset:
        y = np.arange(size) % 2
        X = np.column_stack([np.arange(size, dtype=float), y])
        test = np.arange(size - n_test, size)
        return RawDataset("fixed", X, y, splits=(np.arange(size - n_test), test))
    return fixed


def test_predefined_split_is_used_and_val_comes_from_its_train_part():
    reg = ExtraSources(fixed=_split_source())
    data = prepare_dataset(entry("fixed", {}, split={"val": 0.25, "test": 0.2}), 0, registry=reg)
    assert data.meta["split"] == "predefined"
    assert len(data.y_test) == 40 and len(data.y_val) == 40 and len(data.y_train) == 120
    # the first feature is the row id; standardisation keeps its order, so test rows
    # (ids 160..199) are above every train and val row
    assert data.X_test[:, 0].min() > max(data.X_train[:, 0].max(), data.X_val[:, 0].max())


def test_predefined_split_runs_full_transforms_per_part():
    reg = ExtraSources(fixed=_split_source())
    data = prepare_dataset(entry("fixed", {}, transforms=[("subsample", {"fraction": 0.5})]),
                           0, registry=reg)
    assert len(data.y_test) == 20 and len(data.y_train) + len(data.y_val) == 80
    assert data.X_test[:, 0].min() > data.X_train[:, 0].max()


def test_raw_datasets_are_loaded_once_per_process():
    calls = []

    def counted(size: int = 50) -> RawDataset:
        calls.append(size)
        return RawDataset("counted", np.zeros((size, 2)), np.arange(size) % 2)

    reg = ExtraSources(counted=counted)
    clear_cache()
    assert load_raw("counted", {}, reg) is load_raw("counted", {}, reg)
    load_raw("counted", {"size": 60}, reg)
    assert calls == [50, 60]
    clear_cache()
    load_raw("counted", {}, reg)
    assert calls == [50, 60, 50]


def test_source_errors_reach_the_caller(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        prepare_dataset(entry("csv", {"path": str(tmp_path / "x.csv"), "target": "y"}), 0)
