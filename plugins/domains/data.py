"""The domain generalization task's data: source domains split three ways,
target domains held out whole.

``prepare_domains(raw, split, seed)`` takes a ``RawDataset`` of a domain
source (``meta``: ``domains``, ``domain_names``, ``target``, ``sources``)
and splits each source domain at random (DomainBed's ``split_dataset``, not
stratified) into train / validation / test by the entry's ``split``
fractions: the validation rows select the epoch (training-domain
validation), the test rows measure source accuracy.  Every target-domain row
is a test row for target accuracy, never seen in training or selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import UserError


@dataclass
class DomainData:
    """Float32 arrays per split; ``d_*`` index ``source_names`` (train, val,
    source test) or ``target_names`` (target)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    d_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    d_val: np.ndarray
    X_source: np.ndarray
    y_source: np.ndarray
    d_source: np.ndarray
    X_target: np.ndarray
    y_target: np.ndarray
    d_target: np.ndarray
    source_names: list
    target_names: list
    classes: list
    #: each source-test / target row's position in the dataset: the same row has
    #: the same id under every seed (the step of its ``unit/`` metrics)
    i_source: np.ndarray | None = None
    i_target: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One sample's shape."""
        return tuple(self.X_train.shape[1:])


def prepare_domains(raw, split: dict, seed: int) -> DomainData:
    """Split ``raw`` (a domain source's ``RawDataset``) for one run."""
    meta = raw.meta or {}
    if "domains" not in meta:
        raise UserError(f"dataset {raw.name!r} has no domain per sample: the "
                        f"domain_generalization task needs a domain source "
                        f"(rotated_digits, colored_digits, domain_folders)")
    X = np.asarray(raw.X, dtype=np.float32)
    y = np.asarray(raw.y, dtype=np.int64)
    domains = np.asarray(meta["domains"])
    names = list(meta["domain_names"])
    sources, targets = list(meta["sources"]), list(meta["target"])
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for k, name in enumerate(sources):
        rows = np.flatnonzero(domains == names.index(name))
        rows = rows[rng.permutation(len(rows))]
        n_test = int(round(split["test"] * len(rows)))
        n_val = int(round(split["val"] * len(rows)))
        if len(rows) - n_test - n_val < 1 or n_val < 1:
            raise UserError(f"source domain {name!r} has {len(rows)} rows: too few for a "
                            f"validation and a training part")
        cuts = {"test": rows[:n_test], "val": rows[n_test:n_test + n_val],
                "train": rows[n_test + n_val:]}
        for part, idx in cuts.items():
            parts[part].append((idx, k))

    def rows_of(part):
        return np.concatenate([i for i, _ in parts[part]])

    def stack(part):
        idx = rows_of(part)
        dom = np.concatenate([np.full(len(i), k, dtype=np.int64) for i, k in parts[part]])
        return X[idx], y[idx], dom

    t_idx = [np.flatnonzero(domains == names.index(t)) for t in targets]
    i_target = np.concatenate(t_idx)
    X_target, y_target = X[i_target], y[i_target]
    d_target = np.concatenate([np.full(len(i), k, dtype=np.int64) for k, i in enumerate(t_idx)])
    classes = list(meta.get("target_names") or range(int(y.max()) + 1))
    return DomainData(raw.name, *stack("train"), *stack("val"), *stack("test"),
                      X_target, y_target, d_target, sources, targets, classes,
                      rows_of("test"), i_target)
