"""The federated task: partitions (hand-checked, seeded, paired across
methods), errors that name the file, key and value, its metrics and a tiny
end-to-end ``harness run``."""

from __future__ import annotations

import numpy as np
import pytest

from harness import ConfigError
from harness.cli import main
from harness_plugins.federated.metrics import rounds_to_target
from harness_plugins.federated.partition import make_partition, normalize_partition

SUITE = """\
name: fedtiny
task: federated
seeds: 1
datasets:
  - sklearn: iris
    clients: {clients}
    partition: {partition}
model: {{name: mlp, hidden: [8]}}
federated: {{rounds: 2, clients_per_round: 2, local_epochs: 1, batch_size: 16}}
methods:
  fedavg: {{strategy: fedavg}}
  fedlex: {{strategy: {{name: fedlex, explore_epochs: 1}}}}
metrics: [accuracy, {{name: rounds_to_target, target: 0.5}}, client_accuracy_worst, bytes_total]
rank_by: accuracy
"""


def suite(tmp_path, clients=4, partition="{name: dirichlet, alpha: 0.5}"):
    path = tmp_path / "fed.yaml"
    path.write_text(SUITE.format(clients=clients, partition=partition))
    return str(path)


def test_iid_and_shards_partitions_by_hand():
    y = np.repeat(np.arange(4), 5)               # 4 classes x 5 rows
    parts = make_partition({"name": "iid"}, 3, y, seed=1)
    assert sorted(len(p) for p in parts) == [6, 7, 7]
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    y = np.repeat(np.arange(4), 6)               # 8 shards of 3 rows: one class each
    shards = make_partition({"name": "shards", "classes_per_client": 2}, 4, y, seed=1)
    assert all(len(p) == 6 and len(np.unique(y[p])) <= 2 for p in shards)
    assert sorted(np.concatenate(shards).tolist()) == list(range(24))


def test_dirichlet_is_seeded_and_the_same_for_every_method(tmp_path):
    y = np.repeat(np.arange(3), 40)
    spec = normalize_partition({"name": "dirichlet", "alpha": 0.1})
    a, b = (make_partition(spec, 6, y, seed=7) for _ in range(2))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = make_partition(spec, 6, y, seed=8)
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    assert sum(len(p) for p in a) == 120 and min(len(p) for p in a) >= 1
    # every method of a suite gets the same split seed, hence the same partition
    from harness.plan import expand_suite
    from harness.suite import load_suite

    runs = expand_suite(load_suite(suite(tmp_path)))
    assert {r.method for r in runs} == {"fedavg", "fedlex"}
    assert len({(repr(r.dataset), r.seeds["split"]) for r in runs}) == 1


def test_more_clients_than_samples_stops_at_run_start_naming_file_and_key(tmp_path, capsys):
    path = suite(tmp_path, clients=200, partition="iid")
    assert main(["run", path, "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert path in err[0] and "datasets[0].clients = 200" in err[0]
    assert "more clients than training samples" in err[0]


def test_empty_client_stops_at_run_start(tmp_path, capsys):
    path = suite(tmp_path, clients=40, partition="{name: dirichlet, alpha: 0.05, min_samples: 3}")
    assert main(["run", path, "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert path in err and "datasets[0].partition.min_samples = 3" in err


@pytest.mark.parametrize("clients, partition, key", [
    (0, "iid", "datasets[0].clients = 0"),
    (4, "{name: dirichlet, alpha: 0}", "datasets[0].partition.alpha = 0"),
    (4, "{name: shards, alpha: 2}", "datasets[0].partition.alpha = 2"),
    (4, "{name: dirichlet, classes_per_client: 2}", "datasets[0].partition.classes_per_client"),
])
def test_bad_partition_stops_at_plan(tmp_path, capsys, clients, partition, key):
    path = suite(tmp_path, clients=clients, partition=partition)
    assert main(["plan", path, "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert path in err and key in err


def test_unknown_federation_key_names_it(tmp_path, capsys):
    path = tmp_path / "fed.yaml"
    path.write_text(suite(tmp_path) and (tmp_path / "fed.yaml").read_text()
                    .replace("local_epochs: 1", "local_epoch: 1"))
    assert main(["plan", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert "federated.local_epoch" in err and "keys of federated" in err


def test_clients_per_round_above_clients_names_method_key(tmp_path, capsys):
    path = suite(tmp_path, clients=1, partition="iid")
    assert main(["run", path, "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert "methods.fedavg.federated.clients_per_round = 2" in err


def test_rounds_to_target_is_first_round_or_censored():
    fn = rounds_to_target(target=0.6)
    assert fn(np.array([0.2, np.nan, 0.65, 0.7])) == 3.0
    assert fn(np.array([0.2, 0.3])) == 3.0


def test_normalize_partition_fills_defaults():
    assert normalize_partition("dirichlet") == {"name": "dirichlet", "alpha": 0.5,
                                                "min_samples": 1}
    with pytest.raises(ConfigError, match="partition.name"):
        normalize_partition("random")


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path, tracking_uri):
    path = suite(tmp_path)
    assert main(["run", path]) == 0
    import mlflow
    from mlflow.tracking import MlflowClient

    df = mlflow.search_runs(experiment_names=["fedtiny"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert set(df.index) == {"fedavg", "fedlex"}
    for col in ("test/accuracy", "test/rounds_to_target:target-0.5",
                "test/client_accuracy_worst", "test/bytes_total"):
        assert df[f"metrics.{col}"].notna().all(), col
    # fedlex: 4 explorers x (down + up), then G once to each of the 2-4 clients sampled
    model_bytes = df.loc["fedavg", "metrics.federated/model_bytes"]
    extra = (df.loc["fedlex", "metrics.test/bytes_total"]
             - df.loc["fedavg", "metrics.test/bytes_total"]) / model_bytes
    assert extra in (10, 11, 12)
    hist = MlflowClient(tracking_uri).get_metric_history(df.loc["fedavg", "run_id"], "val/accuracy")
    assert [m.step for m in hist] == [0, 1]  # step = round index


def test_natural_partition_follows_the_source_groups_into_the_train_split(monkeypatch):
    from harness.data import RawDataset
    from harness_plugins.classification import prepare
    from harness_plugins.federated import task

    n = 60
    X = np.column_stack([np.arange(n, dtype=float), np.ones(n)])  # column 0 = row id
    raw = RawDataset("groups", X, np.arange(n) % 2,
                     meta={"groups": np.arange(n) // 20, "standardize": False})
    monkeypatch.setattr(prepare, "load_raw", lambda *a, **k: raw)
    monkeypatch.setattr("harness.data.load_raw", lambda *a, **k: raw)
    entry = {"source": "x", "params": {}, "transforms": [], "split": {"val": 0.2, "test": 0.2},
             "label": "groups", "clients": 3, "partition": {"name": "natural"}}
    data = task.prepare_federated(entry, 5, registry=None)
    rows = data.prepared.X_train[:, 0].astype(int)
    for k, part in enumerate(data.parts):
        assert (rows[part] // 20 == k).all() and len(part) > 0
    assert sum(len(p) for p in data.parts) == len(rows)
    with pytest.raises(ConfigError, match="one client per group"):
        task.prepare_federated({**entry, "clients": 4}, 5, registry=None)
