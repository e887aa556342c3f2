"""Task ``federated``: a train split shared among simulated clients, rounds of
local training and server aggregation by a ``federated_strategies`` plugin,
the global model scored per round.

A suite writes the partition in each dataset entry (``clients: 20``,
``partition: {name: dirichlet, alpha: 0.1}``; it is part of the dataset's
identity and label, so every method of the suite is compared on the same
clients) and the federation in the method config::

    model: {name: mlp, hidden: [64]}
    federated: {rounds: 30, clients_per_round: 10, local_epochs: 1,
                batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0}}
    methods:
      fedavg: {strategy: fedavg}
      fedprox: {strategy: {name: fedprox, mu: 0.01}}

Data preparation and models are the classification family's
(``prepare_dataset`` with float pixels, ``harness list models``).  Logged per
round (step = round): ``train/loss``, ``val/loss`` and ``val/<metric>`` of
the global model (the report's learning curves), ``round/test_accuracy``,
``round/test_loss``, ``comm/bytes``.  Final: the suite's metrics on the test
split, fed ``labels``/``probs``/``logits`` and ``round_accuracy``,
``client_accuracy``, ``bytes_per_round`` (``harness_plugins.federated.metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError
from harness.params import check_components, reject_boolean_numbers, validation_error
from harness_plugins.classification.entries import SplitAndTransforms

Spec = str | dict[str, Any]
#: A client's default optimizer: plain SGD, as in the papers of the strategies.
DEFAULT_OPTIMIZER = {"name": "sgd", "lr": 0.05, "momentum": 0.0}


class Federation(BaseModel):
    """The ``federated:`` section: rounds and the clients' local training."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(default=20, ge=1)
    #: Clients sampled each round (None: all of them).
    clients_per_round: int | None = Field(default=None, ge=1)
    local_epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=32, ge=1)
    optimizer: Spec = Field(default_factory=lambda: dict(DEFAULT_OPTIMIZER))
    server_lr: float = Field(default=1.0, gt=0)
    eval_every: int = Field(default=1, ge=1)
    eval_batch_size: int = Field(default=8192, ge=1)


class FederatedConfig(BaseModel):
    """The method config of the federated task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "mlp"
    loss: Spec = "cross_entropy"
    strategy: Spec = "fedavg"
    federated: Federation = Federation()


SECTIONS = {(): FederatedConfig, ("federated",): Federation}


@dataclass
class FederatedData:
    """The prepared splits and each client's rows of the train split."""

    prepared: Any
    parts: list
    shares: Any


def check_federation(entry: dict, cfg: dict) -> None:
    """Data-free checks of a dataset entry against a method config."""
    m = cfg["federated"]["clients_per_round"]
    if m is not None and m > entry["clients"]:
        raise ConfigError("federated.clients_per_round", m, f"more than the {entry['clients']} "
                          f"clients of dataset {entry['label']!r}")


class FederatedTask(SplitAndTransforms):
    """Federated learning: clients on a partition of the train split, a
    strategy's rounds, the global model's test metrics."""

    metric_inputs = ("labels", "probs", "logits", "round_accuracy", "client_accuracy",
                     "bytes_per_round")
    cost_keys = ("model", "strategy", "federated")

    def validate(self, config: dict, check) -> dict:
        """Check the config shape and every component spec."""
        reject_boolean_numbers(FederatedConfig, config)
        try:
            cfg = FederatedConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, SECTIONS, "the method config") from None
        return check_components(cfg, check, [("model", "models"), ("loss", "losses"),
                                             ("strategy", "federated_strategies"),
                                             ("federated.optimizer", "optimizers")])

    def dataset_entry(self, options: dict, registry) -> dict:
        """``clients`` (default 10) and ``partition`` (default iid), then the
        classification entry's split and transforms."""
        from harness_plugins.federated.partition import normalize_partition

        options = dict(options)
        clients = options.pop("clients", 10)
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ConfigError("clients", clients, "the number of clients is an integer >= 1")
        partition = normalize_partition(options.pop("partition", "iid"))
        return {**super().dataset_entry(options, registry), "clients": clients,
                "partition": partition}

    def dataset_label(self, base: str, entry: dict) -> str:
        """``digits+dirichlet=0.1+clients=20``."""
        from harness_plugins.federated.partition import partition_label

        return (f"{super().dataset_label(base, entry)}+{partition_label(entry['partition'])}"
                f"+clients={entry['clients']}")

    def prepare(self, entry: dict, seed: int, ctx) -> FederatedData:
        """The classification preparation (float pixels) and the partition."""
        return prepare_federated(entry, seed, ctx.registry)

    def run(self, ctx) -> dict[str, float]:
        """Simulate the rounds; return the final test metrics."""
        import numpy as np
        import torch

        from harness.metrics import compute_metrics
        from harness_plugins.classification.trainer import predict_logits, prediction_inputs
        from harness_plugins.federated.simulation import Simulation, client_accuracies

        check_federation(ctx.spec.dataset, ctx.config)
        data = ctx.data
        strategy = ctx.create("federated_strategies", ctx.config["strategy"])
        sim = Simulation(ctx, ctx.config, data, strategy)
        fns = ctx.metrics()
        hist = sim.run(fns)
        model = sim.global_model()
        X_test = torch.as_tensor(data.prepared.X_test, device=ctx.device)
        logits = predict_logits(model, X_test, ctx.config["federated"]["eval_batch_size"])
        offered = prediction_inputs(logits, data.prepared.y_test)
        offered.update(
            round_accuracy=np.array(hist.test_accuracy),
            client_accuracy=client_accuracies(offered["probs"], data.prepared.y_test,
                                              data.shares),
            bytes_per_round=np.array(hist.bytes, dtype=float))
        ctx.log_metrics({"time/train_s": hist.train_s,
                         "federated/model_bytes": float(sim.model_bytes)})
        return compute_metrics(fns, offered)


def prepare_federated(entry: dict, seed: int, registry) -> FederatedData:
    """Prepare the splits and partition the train split among the clients."""
    from harness_plugins.classification.prepare import prepare_dataset
    from harness_plugins.federated.partition import label_shares, make_partition

    prepared = prepare_dataset(entry, seed, registry=registry, pixels="float")
    groups = None
    if entry["partition"]["name"] == "natural":
        groups = natural_groups(entry, seed, registry, len(prepared.y_train))
    parts = make_partition(entry["partition"], entry["clients"], prepared.y_train, seed, groups)
    return FederatedData(prepared, parts, label_shares(prepared.y_train, parts,
                                                       prepared.n_classes))


def natural_groups(entry: dict, seed: int, registry, n_train: int):
    """The source's per-row group ids (``meta["groups"]``) of the train split
    rows, in the split's order: the split is redone on row numbers with the
    same seed (``prepare_dataset`` keeps no row ids), so transforms, which
    may add or drop rows, cannot be combined with it."""
    import numpy as np

    from harness.data import load_raw
    from harness_plugins.classification.prepare import _split_parts, encode_labels

    raw = load_raw(entry["source"], dict(entry.get("params") or {}), registry,
                   entry.get("base_dir"))
    groups = (raw.meta or {}).get("groups")
    if groups is None:
        return None
    if entry.get("transforms"):
        raise ConfigError("partition", "natural", "the natural partition cannot follow "
                          "dataset transforms (they change the rows)")
    y, _, labelled = encode_labels(raw.y)
    rows = np.flatnonzero(labelled)[:, None]
    splits = raw.splits
    if splits is not None and not labelled.all():
        new_pos = np.cumsum(labelled) - 1
        splits = tuple(new_pos[s[labelled[s]]] for s in splits)
    split = {"val": 0.2, "test": 0.2, **(entry.get("split") or {})}
    (train_rows, _), _, _ = _split_parts(rows, y, splits, split, [],
                                         abs(int(seed)) % 2**32)
    out = np.asarray(groups)[train_rows[:, 0]]
    assert len(out) == n_train
    return out


def check_partitions(suite, runs, registry) -> None:
    """Before a suite runs: every (dataset entry, split seed) of its federated
    runs partitions without an empty client; the error names the suite file
    and the entry's key (``datasets[i].clients``)."""
    seen = set()
    for spec in runs:
        if spec.task != "federated":
            continue
        i = next((j for j, d in enumerate(suite.datasets) if d == spec.dataset), None)
        where = f"datasets[{i}]." if i is not None else ""
        try:
            check_federation(spec.dataset, spec.config)
        except ConfigError as exc:
            raise ConfigError(f"methods.{spec.method}.{exc.path}", exc.value, exc.message,
                              file=suite.file) from None
        key = (repr(spec.dataset), spec.seeds["split"])
        if key in seen:
            continue
        seen.add(key)
        try:
            prepare_federated(spec.dataset, spec.seeds["split"], registry)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc.path}", exc.value,
                              f"{exc.message} (dataset {spec.dataset_label!r}, seed "
                              f"{spec.seed})", file=suite.file) from None
        except Exception:  # noqa: BLE001 - data that cannot load fails its own runs
            continue
