"""Local dataset sources: sklearn, synthetic, csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.data import RawDataset
from harness.errors import UserError
from harness_plugins.data.sources import csv, sklearn, synthetic


@pytest.mark.parametrize("name, n, n_features, n_classes", [
    ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("iris", 150, 4, 3),
    ("digits", 1797, 64, 10),
])
def test_sklearn_sets_load_as_tables(name, n, n_features, n_classes):
    raw = sklearn(name)
    assert isinstance(raw, RawDataset)
    assert isinstance(raw.X, pd.DataFrame) and raw.X.shape == (n, n_features)
    assert len(np.unique(raw.y)) == n_classes and raw.image_shape is None
    assert len(raw.meta["target_names"]) == n_classes


def test_digits_as_image():
    raw = sklearn("digits", as_image=True)
    assert raw.X.shape == (1797, 1, 8, 8) and raw.image_shape == (1, 8, 8)
    assert raw.X.dtype == np.float32 and raw.X.min() == 0.0 and raw.X.max() == 1.0


def test_as_image_needs_an_image_set():
    with pytest.raises(UserError, match="as_image needs digits"):
        sklearn("iris", as_image=True)


def test_synthetic_respects_weights_and_is_fixed_by_random_state():
    raw = synthetic(n_samples=2000, n_features=8, weights=[0.9, 0.1])
    assert raw.X.shape == (2000, 8)
    assert abs(np.mean(raw.y == 1) - 0.1) < 0.01
    again = synthetic(n_samples=2000, n_features=8, weights=[0.9, 0.1])
    np.testing.assert_array_equal(raw.X.to_numpy(), again.X.to_numpy())
    other = synthetic(n_samples=2000, n_features=8, weights=[0.9, 0.1], random_state=1)
    assert not np.array_equal(raw.X.to_numpy(), other.X.to_numpy())


def test_synthetic_multiclass_and_bad_parameters():
    raw = synthetic(n_samples=300, n_features=6, n_classes=4)
    assert sorted(np.unique(raw.y)) == [0, 1, 2, 3]
    with pytest.raises(UserError, match="synthetic dataset"):
        synthetic(n_features=3, n_informative=2, n_redundant=3)


def test_csv_loads_features_and_target(tmp_path):
    file = tmp_path / "toy.csv"
    file.write_text("a;b;color;label\n1;2.5;red;yes\n3;;blue;no\n5;1.0;red;yes\n")
    raw = csv(str(file), target="label", sep=";")
    assert raw.name == "toy" and list(raw.X.columns) == ["a", "b", "color"]
    assert list(raw.y) == ["yes", "no", "yes"]


def test_csv_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(UserError, match="nope.csv.*does not exist"):
        csv(str(missing), target="y")


def test_csv_missing_target_lists_columns(tmp_path):
    file = tmp_path / "toy.csv"
    file.write_text("alpha,beta,label\n1,2,x\n")
    with pytest.raises(UserError) as err:
        csv(str(file), target="lable")
    msg = str(err.value)
    assert "toy.csv" in msg and "'lable'" in msg and "did you mean 'label'" in msg
    assert "columns: alpha, beta, label" in msg


def test_sources_are_registered():
    from harness.plugins import get_registry

    sources = get_registry().components("datasets")
    for name in ("sklearn", "synthetic", "csv", "openml", "openml_task"):
        assert name in sources and sources[name].description


def test_sklearn_catalog_lists_its_sets(capsys):
    from harness.cli import main

    rows = {r["name"]: r for r in sklearn.catalog()}
    assert list(rows) == ["breast_cancer", "wine", "iris", "digits"]
    # breast_cancer: 212 malignant, 357 benign
    assert (rows["breast_cancer"]["n"], rows["breast_cancer"]["min_class"]) == (569, 212)
    assert rows["breast_cancer"]["imbalance_ratio"] == pytest.approx(357 / 212)
    assert rows["digits"]["as_image"] == "1x8x8" and rows["iris"]["as_image"] == ""
    assert main(["datasets", "sklearn"]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer" in out and "1797" in out
