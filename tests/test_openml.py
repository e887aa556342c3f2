"""OpenML sources, offline: the test writes an openml-python cache (in
openml's own layout) into a tmp dir and blocks every network request."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import openml
import pytest
import requests  # openml-python's HTTP client

from harness.errors import UserError
from harness_plugins.data.openml import (
    DatasetUnavailable,
    infer_image_shape,
    openml_dataset,
    openml_task,
)

DATASET_ID, TASK_ID, IMAGE_ID = 990001, 990002, 990003
N = 120


@pytest.fixture
def no_network(monkeypatch):
    """Any HTTP request (or socket connection) fails at once, without retries."""

    def refuse(*args, **kwargs):
        raise requests.exceptions.ConnectionError("network disabled in tests")

    def refuse_socket(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(requests.Session, "send", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)
    monkeypatch.setattr(openml.config, "connection_n_retries", 1)


@pytest.fixture
def cache(tmp_path, monkeypatch, no_network) -> Path:
    """openml's cache directory (for the configured server) inside tmp_path."""
    # setattr to the current value records it, so the fixture restores it
    monkeypatch.setattr(openml.config, "_root_cache_directory",
                        openml.config._root_cache_directory)
    openml.config.set_root_cache_directory(tmp_path / "openml")
    return Path(openml.config.get_cache_directory())


def _description(did: int, name: str, target: str) -> str:
    return f"""<oml:data_set_description xmlns:oml="http://openml.org/openml">
  <oml:id>{did}</oml:id>
  <oml:name>{name}</oml:name>
  <oml:version>1</oml:version>
  <oml:description>synthetic test data</oml:description>
  <oml:format>ARFF</oml:format>
  <oml:upload_date>2024-01-01T00:00:00</oml:upload_date>
  <oml:licence>Public</oml:licence>
  <oml:url>https://unreachable.invalid/data/{did}.arff</oml:url>
  <oml:default_target_attribute>{target}</oml:default_target_attribute>
  <oml:visibility>public</oml:visibility>
  <oml:status>active</oml:status>
</oml:data_set_description>
"""


def _features(attributes) -> str:
    items = []
    for i, (name, kind) in enumerate(attributes):
        nominal = "".join(f"<oml:nominal_value>{v}</oml:nominal_value>"
                          for v in kind) if isinstance(kind, list) else ""
        items.append(f"""  <oml:feature>
    <oml:index>{i}</oml:index><oml:name>{name}</oml:name>
    <oml:data_type>{'nominal' if nominal else 'numeric'}</oml:data_type>{nominal}
    <oml:is_target>false</oml:is_target><oml:is_ignore>false</oml:is_ignore>
    <oml:is_row_identifier>false</oml:is_row_identifier>
    <oml:number_of_missing_values>0</oml:number_of_missing_values>
  </oml:feature>""")
    return ('<oml:data_features xmlns:oml="http://openml.org/openml">\n'
            + "\n".join(items) + "\n</oml:data_features>\n")


def _write_dataset(cache: Path, did: int, name: str, attributes, rows, target: str) -> None:
    import arff

    folder = cache / "datasets" / str(did)
    folder.mkdir(parents=True)
    (folder / "description.xml").write_text(_description(did, name, target))
    (folder / "features.xml").write_text(_features(attributes))
    (folder / "dataset.arff").write_text(arff.dumps(
        {"relation": name, "attributes": attributes, "data": rows}))


def _tabular_rows():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        label = "pos" if i % 3 == 0 else "neg"
        x1 = None if i == 5 else float(rng.normal() + (label == "pos"))
        rows.append([x1, float(rng.normal()), ["red", "green"][(i // 2) % 2], label])
    return rows


TABULAR = [("x1", "REAL"), ("x2", "REAL"), ("color", ["red", "green"]), ("class", ["neg", "pos"])]


def _write_task(cache: Path) -> None:
    folder = cache / "tasks" / str(TASK_ID)
    folder.mkdir(parents=True)
    (folder / "task.xml").write_text(f"""<oml:task xmlns:oml="http://openml.org/openml">
  <oml:task_id>{TASK_ID}</oml:task_id>
  <oml:task_name>Task {TASK_ID}</oml:task_name>
  <oml:task_type_id>1</oml:task_type_id>
  <oml:task_type>Supervised Classification</oml:task_type>
  <oml:input name="source_data">
    <oml:data_set>
      <oml:data_set_id>{DATASET_ID}</oml:data_set_id>
      <oml:target_feature>class</oml:target_feature>
    </oml:data_set>
  </oml:input>
  <oml:input name="estimation_procedure">
    <oml:estimation_procedure>
      <oml:id>1</oml:id>
      <oml:type>crossvalidation</oml:type>
      <oml:data_splits_url>https://unreachable.invalid/splits/{TASK_ID}.arff</oml:data_splits_url>
      <oml:parameter name="number_repeats">1</oml:parameter>
      <oml:parameter name="number_folds">2</oml:parameter>
      <oml:parameter name="stratified_sampling">true</oml:parameter>
    </oml:estimation_procedure>
  </oml:input>
</oml:task>
""")
    lines = ["@RELATION splits", "@ATTRIBUTE type {TRAIN,TEST}", "@ATTRIBUTE rowid INTEGER",
             "@ATTRIBUTE repeat INTEGER", "@ATTRIBUTE fold INTEGER", "@DATA"]
    for fold in (0, 1):
        for row in range(N):
            lines.append(f"{'TEST' if row % 2 == fold else 'TRAIN'},{row},0,{fold}")
    (folder / "datasplits.arff").write_text("\n".join(lines) + "\n")


@pytest.fixture
def populated(cache) -> Path:
    _write_dataset(cache, DATASET_ID, "toy-tabular", TABULAR, _tabular_rows(), "class")
    _write_task(cache)
    pixels = [(f"pixel{i + 1}", "INTEGER") for i in range(16)] + [("digit", ["a", "b"])]
    rows = [[(i * 7 + j) % 256 for j in range(16)] + [["a", "b"][i % 2]] for i in range(40)]
    _write_dataset(cache, IMAGE_ID, "tiny-mnist", pixels, rows, "digit")
    return cache


def test_dataset_loads_offline_from_openml_cache(populated):
    raw = openml_dataset(DATASET_ID)
    assert raw.name == "toy-tabular" and raw.image_shape is None and raw.splits is None
    assert list(raw.X.columns) == ["x1", "x2", "color"] and len(raw.X) == N
    assert raw.X["x1"].isna().sum() == 1 and str(raw.X["color"].dtype) == "category"
    assert sorted(set(raw.y)) == ["neg", "pos"] and raw.meta["target"] == "class"


def test_second_load_uses_the_array_cache(populated, monkeypatch):
    first = openml_dataset(DATASET_ID)
    assert (populated / "harness" / "datasets" / str(DATASET_ID) / "default.parquet").is_file()

    def never(*args, **kwargs):
        raise AssertionError("openml-python was called although the harness cache exists")

    monkeypatch.setattr(openml.datasets, "get_dataset", never)
    second = openml_dataset(DATASET_ID)
    assert second.name == first.name
    assert second.X.equals(first.X) and list(second.y) == list(first.y)


def test_named_target_and_missing_target(populated):
    raw = openml_dataset(DATASET_ID, target="color")
    assert "class" in raw.X.columns and sorted(set(raw.y)) == ["green", "red"]
    with pytest.raises(UserError, match=r"no column 'colour' \(did you mean 'color'\?\)"):
        openml_dataset(DATASET_ID, target="colour")


def test_image_shape_inferred_or_given(populated):
    raw = openml_dataset(IMAGE_ID)
    assert raw.image_shape == (1, 4, 4) and raw.X.shape == (40, 16)
    assert raw.X.dtype == np.float32
    assert openml_dataset(IMAGE_ID, shape=[2, 8]).image_shape == (1, 2, 8)
    with pytest.raises(UserError, match="does not fit its 16 features"):
        openml_dataset(IMAGE_ID, shape=[3, 32, 32])
    assert infer_image_shape("CIFAR_10", [f"a{i}" for i in range(3072)]) == (3, 32, 32)
    assert infer_image_shape("credit", ["age", "income"]) is None


def test_task_uses_its_predefined_split(populated, monkeypatch):
    raw = openml_task(TASK_ID, fold=1)
    train, test = raw.splits
    assert sorted(test.tolist()) == list(range(1, N, 2))
    assert sorted(train.tolist()) == list(range(0, N, 2))
    assert raw.meta["openml_task_id"] == TASK_ID and raw.meta["target"] == "class"
    assert (populated / "harness" / "tasks" / f"{TASK_ID}-r0-f1.npz").is_file()

    def never(*args, **kwargs):
        raise AssertionError("openml-python was called although the harness cache exists")

    monkeypatch.setattr(openml.tasks, "get_task", never)
    monkeypatch.setattr(openml.datasets, "get_dataset", never)
    again = openml_task(TASK_ID, fold=1)
    np.testing.assert_array_equal(again.splits[1], test)


def test_task_fold_out_of_range(populated):
    with pytest.raises(UserError, match="has 1 repeat.* of 2 folds; repeat 0, fold 5"):
        openml_task(TASK_ID, fold=5)


def test_task_prepares_with_val_from_its_train_part(populated):
    from harness.data import clear_cache
    from harness_plugins.classification.prepare import prepare_dataset

    clear_cache()
    entry = {"source": "openml_task", "params": {"task_id": TASK_ID}, "transforms": [],
             "split": {"val": 0.25, "test": 0.2}, "label": "toy"}
    data = prepare_dataset(entry, 0)
    clear_cache()
    assert data.meta["split"] == "predefined" and len(data.y_test) == N // 2
    assert len(data.y_val) == 15 and len(data.y_train) == 45
    # x1, x2 standardised + color one-hot (2 values); the missing x1 is imputed
    assert data.in_shape == (4,) and not np.isnan(data.X_train).any()
    assert data.classes == ["neg", "pos"]


def test_unavailable_dataset_is_one_line(cache):
    with pytest.raises(DatasetUnavailable) as err:
        openml_dataset(1464)
    msg = str(err.value)
    assert msg.startswith("openml dataset 1464 is unavailable: ") and "\n" not in msg
    assert "network disabled in tests" in msg


def test_unavailable_task_is_one_line(cache):
    with pytest.raises(DatasetUnavailable, match=r"^openml task 31 is unavailable: [^\n]+$"):
        openml_task(31)
