"""Client partitions of a train split: IID, Dirichlet over labels, label shards,
and the source's natural groups.

A partition is written in a dataset entry (``partition:``, ``clients:``),
so it is part of the dataset's identity: every method of a suite sees the
same clients for a seed (paired comparisons), and the partition's only
randomness is a numpy Generator seeded from the run's split seed.

- ``iid``: a seeded permutation cut into ``clients`` near-equal parts.
- ``dirichlet`` (``alpha``): per class, proportions ``p ~ Dir(alpha)`` over
  the clients and the class's rows cut accordingly (Hsu et al. 2019, "Measuring
  the effects of non-identical data distribution"); small ``alpha`` is
  strongly non-IID.  A draw leaving a client with fewer than ``min_samples``
  rows is redrawn, up to ``MAX_DRAWS`` times.
- ``shards`` (``classes_per_client``): rows sorted by label, cut into
  ``clients * classes_per_client`` shards, each client gets that many
  shards at random (McMahan et al. 2017's pathological non-IID split).
- ``natural``: one client per group of ``meta["groups"]`` of the source
  (a per-row group id); needs exactly as many clients as groups.

Each client's indices are sorted, so one client holding everything sees the
rows in the split's order (FedAvg with one client is centralised training).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import ConfigError

#: Partition names and their parameters (name -> {param: default}).
PARTITIONS: dict[str, dict[str, Any]] = {
    "iid": {},
    "dirichlet": {"alpha": 0.5, "min_samples": 1},
    "shards": {"classes_per_client": 2},
    "natural": {},
}
#: Dirichlet draws tried before a partition that leaves a client short is an error.
MAX_DRAWS = 100


def normalize_partition(value: Any, path: str = "partition") -> dict:
    """``iid`` / ``{name: dirichlet, alpha: 0.1}`` -> the full spec with its
    defaults, checked (an error names the key and value)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(path, value, "a partition is a name (iid, dirichlet, shards, "
                          "natural) or a mapping with 'name' and its parameters")
    name = value["name"]
    if name not in PARTITIONS:
        raise ConfigError(f"{path}.name", name, f"unknown partition; one of "
                          f"{', '.join(PARTITIONS)}")
    params = {k: v for k, v in value.items() if k != "name"}
    unknown = set(params) - set(PARTITIONS[name])
    if unknown:
        key = sorted(unknown)[0]
        allowed = ", ".join(PARTITIONS[name]) or "none"
        raise ConfigError(f"{path}.{key}", params[key], f"partition {name!r} takes no "
                          f"{key!r}; its parameters: {allowed}")
    out = {"name": name, **PARTITIONS[name], **params}
    if name == "dirichlet":
        alpha = out["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ConfigError(f"{path}.alpha", alpha, "the Dirichlet concentration must be > 0")
        out["alpha"] = float(alpha)
        _positive_int(out, "min_samples", path)
    if name == "shards":
        _positive_int(out, "classes_per_client", path)
    return out


def _positive_int(spec: dict, key: str, path: str) -> None:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}.{key}", value, "must be an integer >= 1")


def partition_label(spec: dict) -> str:
    """``dirichlet=0.1``, ``shards=2``, ``iid``: the entry's label part."""
    name = spec["name"]
    if name == "dirichlet":
        return f"dirichlet={spec['alpha']:g}"
    if name == "shards":
        return f"shards={spec['classes_per_client']}"
    return name


def make_partition(spec: dict, clients: int, y: np.ndarray, seed: int,
                   groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices of each client (sorted), from labels ``y`` of the train
    split.  Raises ``ConfigError`` (path ``clients`` or ``partition...``)
    when the data cannot give every client a sample."""
    y = np.asarray(y)
    n = len(y)
    if clients > n:
        raise ConfigError("clients", clients, f"more clients than training samples ({n})")
    rng = np.random.default_rng([abs(int(seed)) % 2**32, 0])
    name = spec["name"]
    if name == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif name == "dirichlet":
        parts = _dirichlet(y, clients, spec["alpha"], spec["min_samples"], rng)
    elif name == "shards":
        parts = _shards(y, clients, spec["classes_per_client"], rng)
    else:
        parts = _natural(groups, clients)
    out = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    empty = [k for k, p in enumerate(out) if len(p) == 0]
    if empty:
        raise ConfigError("partition", partition_label(spec), f"leaves client {empty[0]} "
                          f"(and {len(empty) - 1} more) with no samples of the {n}")
    return out


def _dirichlet(y, clients: int, alpha: float, min_samples: int, rng) -> list:
    classes = np.unique(y)
    smallest = 0
    for _ in range(MAX_DRAWS):
        parts: list[list] = [[] for _ in range(clients)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(y == c))
            p = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(rows)).astype(int)
            for k, chunk in enumerate(np.split(rows, cuts)):
                parts[k].extend(chunk.tolist())
        smallest = min(len(p) for p in parts)
        if smallest >= min_samples:
            return parts
    raise ConfigError("partition.min_samples", min_samples, f"{MAX_DRAWS} Dirichlet draws "
                      f"over {clients} clients each left a client with {smallest} samples "
                      f"or fewer: use fewer clients, a larger alpha or a smaller min_samples")


def _shards(y, clients: int, per_client: int, rng) -> list:
    n_shards = clients * per_client
    if n_shards > len(y):
        raise ConfigError("partition.classes_per_client", per_client,
                          f"{clients} clients x {per_client} shards need {n_shards} "
                          f"samples; the train split has {len(y)}")
    order = np.argsort(y, kind="stable")
    shards = np.array_split(order, n_shards)
    pick = rng.permutation(n_shards).reshape(clients, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in pick]


def _natural(groups, clients: int) -> list:
    if groups is None:
        raise ConfigError("partition", "natural", "this dataset's source gives no natural "
                          "groups (meta['groups']); use iid, dirichlet or shards")
    ids = np.unique(groups)
    if len(ids) != clients:
        raise ConfigError("clients", clients, f"the natural partition has one client per "
                          f"group: this dataset has {len(ids)} groups")
    return [np.flatnonzero(groups == g) for g in ids]


def label_shares(y: np.ndarray, parts: list[np.ndarray], n_classes: int) -> np.ndarray:
    """``(clients, n_classes)`` share of each class in each client's data."""
    counts = np.stack([np.bincount(y[p], minlength=n_classes) for p in parts]).astype(float)
    return counts / counts.sum(axis=1, keepdims=True)
